"""Chunkers: snix's ``fastcdc2020``, attic's ``fastcdc2016``, ``fixed``, and every peer's exactly
(``casync``, ``restic``, ``borg``, ``ncps``, ``xet``, ``zstd-chunked``); see :mod:`.catalog`.

>>> chunker = make_chunker(default_spec("fastcdc2020"))
>>> chunker.spec.id
'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'
>>> sum(chunker.split(memoryview(bytes(1_000_000)), eof=True))
1000000
>>> chunk_lengths(make_spec("restic"), bytes(1_000_000))
[524288, 475712]
"""

from __future__ import annotations

from storelab.chunking.base import Chunker, ChunkerSpec
from storelab.chunking.catalog import (
    CATALOG,
    DEFAULT_AVG_SIZE,
    PRESETS,
    ChunkerInfo,
    default_spec,
    make_chunker,
    make_spec,
    parse_params,
    scaled_spec,
    spec_from_id,
)
from storelab.chunking.fastcdc2016 import FastCDC2016
from storelab.chunking.fastcdc2020 import FastCDC2020
from storelab.chunking.fixed import FixedSize

__all__ = [
    "CATALOG",
    "DEFAULT_AVG_SIZE",
    "PRESETS",
    "Chunker",
    "ChunkerInfo",
    "ChunkerSpec",
    "FastCDC2016",
    "FastCDC2020",
    "FixedSize",
    "chunk_lengths",
    "default_spec",
    "make_chunker",
    "make_spec",
    "parse_params",
    "scaled_spec",
    "spec_from_id",
]


def chunk_lengths(spec: ChunkerSpec, data: bytes | bytearray | memoryview) -> list[int]:
    """The lengths of the chunks ``spec`` cuts ``data`` into, held whole in memory."""
    chunker = make_chunker(spec)
    chunker.begin()
    return chunker.split(memoryview(data), eof=True)
