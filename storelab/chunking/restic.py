"""restic's chunker: a Rabin fingerprint over a 64-byte window, with the repository's polynomial.

The rule, from restic/chunker ``chunker.go`` (v0.4, the one restic 0.14 and later link):

* each chunk's first ``min − 64`` bytes are skipped unhashed; the window then starts as one
  ``1`` byte and 63 zeros, so from ``min`` bytes on the digest is the fingerprint of the last 64
  bytes: the bytes as a polynomial over GF(2), reduced modulo the repository's polynomial;
* a chunk ends after the first byte, ``min`` bytes in or later, whose digest has its low
  ``avg_bits`` bits zero (20: ≈ 1 MiB), or at ``max`` bytes.

Every restic repository draws its own random irreducible polynomial of degree 53 at ``restic
init`` (``restic cat config`` shows it as ``chunker_polynomial``), so two repositories chunk the
same file differently. The default here is restic/chunker's test polynomial; give a
repository's own as ``pol=0x…`` to reproduce its chunks. Chunk ids are SHA-256 of the chunk.

>>> spec = restic_spec({})
>>> spec.id
'restic/min=512KiB,max=8MiB,avg_bits=20,pol=0x3da3358b4dc173'
>>> lengths = ResticChunker(spec).split(memoryview(bytes(9_000_000)), eof=True)
>>> lengths[0], len(lengths), lengths[-1]  # zeros fingerprint to 0: a cut at every min
(524288, 18, 87104)
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.chunking.native import native, table_bytes
from storelab.errors import ConfigError
from storelab.units import format_bytes

__all__ = ["RESTIC_DEFAULTS", "ResticChunker", "rabin_tables", "restic_scaled", "restic_spec"]

RESTIC_DEFAULTS = {"min": 512 * 1024, "max": 8 * 1024 * 1024, "avg_bits": 20, "pol": 0x3DA3358B4DC173}
"""restic's MinSize, MaxSize and split mask; the polynomial is restic/chunker's ``testPol``."""
_WINDOW = 64


def _degree(pol: int) -> int:
    return pol.bit_length() - 1


def _mod(x: int, pol: int) -> int:
    """``x`` modulo ``pol``, both polynomials over GF(2) written as bits."""
    degree = _degree(pol)
    while x and _degree(x) >= degree:
        x ^= pol << (_degree(x) - degree)
    return x


@lru_cache(maxsize=8)
def rabin_tables(pol: int) -> tuple[bytes, bytes]:
    """restic's ``out`` and ``mod`` tables for ``pol``, as 256 native 64-bit integers each.

    ``out[b]`` is the fingerprint of ``b`` followed by 63 zero bytes (XORing it in removes ``b``
    as it leaves the window); ``mod[b]`` reduces the 8 bits shifted above the polynomial's degree.
    """
    out = []
    for b in range(256):
        h = _mod(b, pol)
        for _ in range(_WINDOW - 1):
            h = _mod(h << 8, pol)
        out.append(h)
    degree = _degree(pol)
    mod = [_mod(b << degree, pol) | (b << degree) for b in range(256)]
    return table_bytes(out, 8), table_bytes(mod, 8)


def restic_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """A restic spec from ``min``, ``max``, ``avg_bits`` and ``pol`` (restic's defaults where not given)."""
    merged = {**RESTIC_DEFAULTS, **params}
    low, high, bits, pol = merged["min"], merged["max"], merged["avg_bits"], merged["pol"]
    if not _WINDOW <= low <= high:
        raise ConfigError(f"restic chunk sizes must satisfy 64 B ≤ min ≤ max (got {format_bytes(low)}, {format_bytes(high)})")
    if not 1 <= bits <= 40:
        raise ConfigError(f"restic's avg_bits must be between 1 and 40 (got {bits})")
    if not 9 <= _degree(pol) <= 53:
        raise ConfigError(f"restic's polynomial must have a degree between 9 and 53 (got {pol:#x}, degree {_degree(pol)})")
    avg = min(max(low + (1 << bits), low), high)  # what restic aims at: min plus the expected wait
    return ChunkerSpec("restic", low, avg, high, 0, 0, (("min", low), ("max", high), ("avg_bits", bits), ("pol", pol)))


def restic_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg`` (a power of two) in restic's ratios (min avg/2, max 8·avg)."""
    if avg < 128 or avg & (avg - 1):
        raise ConfigError(f"restic's average is a power of two (its avg_bits) of at least 128 B; got {format_bytes(avg)}")
    return {"avg_bits": avg.bit_length() - 1, "min": avg // 2, "max": avg * 8}


class ResticChunker(RestartingChunker):
    """restic's cut points, exactly (checked against ``restic backup`` by the test suite)."""

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = restic_spec(dict(spec.params))
        params = dict(self.spec.params)
        self._mask = (1 << params["avg_bits"]) - 1
        self._shift = _degree(params["pol"]) - 8
        self._out, self._mod = rabin_tables(params["pol"])
        self._cut = native("restic").restic



    def split(self, buf: memoryview, eof: bool) -> list[int]:
        s = self.spec
        lengths: list[int] = self._cut(buf, s.min_size, s.max_size, self._mask, self._shift, self._out, self._mod, eof)
        return lengths
