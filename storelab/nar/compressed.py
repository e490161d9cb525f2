"""How big a NAR is as a binary cache stores it: ``.nar.zst`` (zstd -3) and ``.nar.xz``
(xz -6, cache.nixos.org's choice), measured by compressing the NAR's bytes as they stream
past, never estimated.

>>> sizes = CompressedNarSizes(("zstd", "xz"))
>>> sizes.update(b"nix-archive-1" * 1000)
>>> result = sizes.finish()
>>> sorted(result), 0 < result["nar_zstd_size"] < 13000
(['nar_xz_size', 'nar_zstd_size'], True)
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable, Sequence

import zstandard

from storelab.errors import ConfigError

__all__ = ["NAR_CODECS", "CompressedNarSizes", "parse_nar_codecs"]

NAR_CODECS = {"zstd": "nar_zstd_size", "xz": "nar_xz_size"}
"""Codec name → the ``snapshots`` column that records the NAR's size under it."""
XZ_PRESET = 6
"""``xz -6``: what Nix's binary cache upload uses by default (``compression=xz``)."""
ZSTD_LEVEL = 3


def parse_nar_codecs(text: str) -> tuple[str, ...]:
    """``"zstd,xz"`` → ``("zstd", "xz")``; ``"none"`` or ``""`` → ``()``.

    >>> parse_nar_codecs("xz, zstd"), parse_nar_codecs("none")
    (('xz', 'zstd'), ())
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    for name in names:
        if name not in NAR_CODECS:
            raise ConfigError(f"unknown NAR compression {name!r}; choose from none, {', '.join(NAR_CODECS)}")
    return tuple(dict.fromkeys(names))


class CompressedNarSizes:
    """Compresses a stream with each codec asked for, keeping only the output sizes."""

    def __init__(self, codecs: Sequence[str]) -> None:
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj() if "zstd" in codecs else None
        self._xz = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=XZ_PRESET) if "xz" in codecs else None
        self._sizes = {"zstd": 0, "xz": 0}

    def update(self, block: bytes) -> None:
        if self._zstd is not None:
            self._sizes["zstd"] += len(self._zstd.compress(block))
        if self._xz is not None:
            self._sizes["xz"] += len(self._xz.compress(block))

    def feed(self, blocks: Iterable[bytes]) -> None:
        for block in blocks:
            self.update(block)

    def finish(self) -> dict[str, int]:
        """The ``snapshots`` columns of the codecs measured (call once, at the end)."""
        out = {}
        if self._zstd is not None:
            out[NAR_CODECS["zstd"]] = self._sizes["zstd"] + len(self._zstd.flush())
        if self._xz is not None:
            out[NAR_CODECS["xz"]] = self._sizes["xz"] + len(self._xz.flush())
        return out
