"""Chunkers: ``fastcdc2020`` (snix), ``fastcdc2016`` (attic) and ``fixed``.

>>> chunker = make_chunker(default_spec("fastcdc2020"))
>>> chunker.spec.id
'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'
>>> sum(chunker.split(memoryview(bytes(1_000_000)), eof=True))
1000000
"""

from __future__ import annotations

from collections.abc import Callable

from storelab.chunking.base import Chunker, ChunkerSpec
from storelab.chunking.fastcdc2016 import FastCDC2016
from storelab.chunking.fastcdc2020 import FastCDC2020
from storelab.chunking.fixed import FixedSize
from storelab.errors import ConfigError

__all__ = [
    "CHUNKERS",
    "DEFAULT_AVG_SIZE",
    "Chunker",
    "ChunkerSpec",
    "FastCDC2016",
    "FastCDC2020",
    "FixedSize",
    "default_spec",
    "make_chunker",
]

CHUNKERS: dict[str, Callable[[ChunkerSpec], Chunker]] = {"fastcdc2020": FastCDC2020, "fastcdc2016": FastCDC2016, "fixed": FixedSize}
DEFAULT_AVG_SIZE = 256 * 1024
"""snix's average chunk size."""


def default_spec(
    name: str = "fastcdc2020",
    avg_size: int = DEFAULT_AVG_SIZE,
    min_size: int | None = None,
    max_size: int | None = None,
    normalization: int = 1,
    seed: int = 0,
) -> ChunkerSpec:
    """A spec with snix's rule for what is not given: min = avg/2, max = 2·avg."""
    if name not in CHUNKERS:
        raise ConfigError(f"unknown chunker {name!r}; choose one of {', '.join(CHUNKERS)}")
    if seed and name != "fastcdc2020":
        raise ConfigError(f"a seed is a fastcdc2020 parameter; {name} has none")
    if not 0 <= seed < 1 << 64:
        raise ConfigError(f"the seed is a 64-bit unsigned integer (got {seed})")
    if name == "fixed":
        return ChunkerSpec(name, avg_size, avg_size, avg_size, 0)
    min_size = avg_size // 2 if min_size is None else min_size
    max_size = avg_size * 2 if max_size is None else max_size
    if not min_size <= avg_size <= max_size:
        raise ConfigError(f"chunk sizes must satisfy min ≤ avg ≤ max (got {min_size}, {avg_size}, {max_size})")
    return ChunkerSpec(name, min_size, avg_size, max_size, normalization if name == "fastcdc2020" else 0, seed)


def make_chunker(spec: ChunkerSpec) -> Chunker:
    """Build the chunker a spec names; raises :class:`ConfigError` for sizes it cannot use."""
    try:
        return CHUNKERS[spec.name](spec)
    except KeyError:
        raise ConfigError(f"unknown chunker {spec.name!r}; choose one of {', '.join(CHUNKERS)}") from None
