"""FastCDC v2020, as fastcdc-rs cuts it and so as snix chunks blobs (via ``pyfastcdc``)."""

from __future__ import annotations

import pyfastcdc

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.errors import ConfigError
from storelab.units import format_bytes

__all__ = ["FastCDC2020"]

# fastcdc-rs's (and pyfastcdc's) accepted ranges
_MIN_RANGE = (64, 1024 * 1024)
_AVG_RANGE = (256, 4 * 1024 * 1024)
_MAX_RANGE = (1024, 16 * 1024 * 1024)


class FastCDC2020(RestartingChunker):
    """snix's chunker. Reproduces fastcdc-rs ``v2020`` chunk boundaries exactly.

    >>> spec = ChunkerSpec("fastcdc2020", 4096, 16384, 65535)
    >>> FastCDC2020(spec).split(memoryview(bytes(70000)), eof=True)
    [65535, 4465]
    """

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = spec
        for what, value, (low, high) in (
            ("min", spec.min_size, _MIN_RANGE),
            ("avg", spec.avg_size, _AVG_RANGE),
            ("max", spec.max_size, _MAX_RANGE),
        ):
            if not low <= value <= high:
                raise ConfigError(
                    f"fastcdc2020 {what} chunk size {format_bytes(value)} is outside "
                    f"{format_bytes(low)}–{format_bytes(high)} (fastcdc-rs's limits)"
                )
        try:
            self._cdc = pyfastcdc.FastCDC(
                spec.avg_size,
                min_size=spec.min_size,
                max_size=spec.max_size,
                normalized_chunking=spec.normalization,  # type: ignore[arg-type]
                seed=spec.seed,
            )
        except ValueError as err:
            raise ConfigError(f"fastcdc2020 cannot use {spec.id}: {err}") from None



    def split(self, buf: memoryview, eof: bool) -> list[int]:
        total = len(buf)
        lengths: list[int] = []
        for chunk in self._cdc.cut_buf(buf):
            # A cut is final only if the chunker could see max_size bytes past its start,
            # exactly as it would have reading the whole file.
            if not eof and total - chunk.offset < self.spec.max_size:
                break
            lengths.append(chunk.length)
        return lengths
