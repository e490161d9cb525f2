"""Line-by-line Python transcriptions of the chunkers no packaged binary runs here (ncps's
kalbasit/fastcdc and containers/storage's zstd:chunked reader), with their own buffering.

Slow (≈ 1 MB/s) and deliberately close to the Go, names included: the C loops in
storelab/chunking/_cdc.c restate the rules per chunk; these keep the tools' own control flow
(kalbasit's 512 KiB refill buffer, containers/storage's byte-at-a-time hole finder and 4 KiB
reads), so agreement on random inputs shows the restatement lost nothing.
"""

from __future__ import annotations

import io

from storelab.chunking.ncps import ncps_masks
from storelab.chunking.tables import KALBASIT_GEAR

_U64 = (1 << 64) - 1


def _find_boundary(available: bytes, table: list[int], min_size: int, norm_size: int, max_size: int, mask_s: int, mask_l: int) -> tuple[int, bool]:
    """``ChunkerCore.FindBoundary`` from position 0 with fingerprint 0 (it is Reset after every chunk)."""
    fp, pos = 0, 0
    data_left = available
    if pos < min_size:
        skip = min(min_size - pos, len(data_left))
        pos += skip
        data_left = data_left[skip:]
    if pos < norm_size and data_left:
        end = min(norm_size - pos, len(data_left))
        for i in range(end):
            fp = ((fp << 1) + table[data_left[i]]) & _U64
            if fp & mask_s == 0:
                return pos + i + 1, True
        pos += end
        data_left = data_left[end:]
    if pos < max_size and data_left:
        end = min(max_size - pos, len(data_left))
        for i in range(end):
            fp = ((fp << 1) + table[data_left[i]]) & _U64
            if fp & mask_l == 0:
                return pos + i + 1, True
        pos += end
    if pos >= max_size:
        return pos, True
    return pos, False


def kalbasit_fastcdc(data: bytes, min_size: int, target: int, max_size: int, norm_level: int = 2, seed: int = 0) -> list[int]:
    """kalbasit/fastcdc v1.0.0 ``Chunker.Next`` until EOF: the chunk lengths (chunker.go, core.go)."""
    table = [v ^ seed for v in KALBASIT_GEAR]
    mask_s, mask_l, norm_size = ncps_masks(min_size, target, norm_level)
    reader = io.BytesIO(data)
    buffer_size = max(512 * 1024, max_size)
    buf = b""
    cursor = 0
    eof = False
    lengths = []
    while True:
        # fillBuffer
        n = len(buf) - cursor
        if not (n >= max_size):
            buf = buf[cursor:]
            cursor = 0
            if not eof:
                got = reader.read(buffer_size - n)
                if len(got) < buffer_size - n:
                    eof = True
                buf += got
        if len(buf) - cursor == 0 and eof:
            return lengths
        available = buf[cursor:]
        boundary, found = _find_boundary(available, table, min_size, norm_size, max_size, mask_s, mask_l)
        if not found:  # only at EOF: the rest is the last chunk
            boundary = len(available)
        lengths.append(boundary)
        cursor += boundary


class _HolesFinder:
    """containers/storage ``holesFinder``: runs of ≥ threshold zeros come back as one hole."""

    READ, ACCUMULATE, FOUND, EOF = range(4)

    def __init__(self, data: bytes, threshold: int) -> None:
        self.data, self.at, self.zeros, self.threshold, self.state = data, 0, 0, threshold, self.READ

    def _read_byte(self) -> int | None:
        if self.at >= len(self.data):
            return None
        self.at += 1
        return self.data[self.at - 1]

    def read_byte(self) -> tuple[int, int] | None:
        """(hole length, byte); None at EOF."""
        while True:
            if self.state == self.READ:
                if self.zeros > 0:
                    self.zeros -= 1
                    return 0, 0
                b = self._read_byte()
                if b is None:
                    return None
                if b != 0:
                    return 0, b
                self.zeros = 1
                self.state = self.FOUND if self.zeros == self.threshold else self.ACCUMULATE
            elif self.state == self.ACCUMULATE:
                b = self._read_byte()
                if b is None:
                    self.state = self.EOF
                    continue
                if b == 0:
                    self.zeros += 1
                    if self.zeros == self.threshold:
                        self.state = self.FOUND
                else:
                    self.at -= 1  # UnreadByte
                    self.state = self.READ
            elif self.state == self.FOUND:
                b = self._read_byte()
                if b is None:
                    self.state = self.EOF
                    hole, self.zeros = self.zeros, 0
                    return hole, 0
                if b != 0:
                    self.at -= 1
                    self.state = self.READ
                    hole, self.zeros = self.zeros, 0
                    return hole, 0
                self.zeros += 1
            else:  # EOF: flush pending zeros as ordinary bytes
                if self.zeros > 0:
                    self.zeros -= 1
                    return 0, 0
                return None


class _RollSum:
    """bup's rollsum as containers/storage ``rollsum.go`` has it."""

    def __init__(self) -> None:
        self.s1, self.s2, self.window, self.wofs = 64 * 31, 64 * 63 * 31, [0] * 64, 0

    def roll(self, ch: int) -> None:
        drop = self.window[self.wofs]
        self.s1 = (self.s1 + ch - drop) & 0xFFFFFFFF
        self.s2 = (self.s2 + self.s1 - 64 * (drop + 31)) & 0xFFFFFFFF
        self.window[self.wofs] = ch
        self.wofs = (self.wofs + 1) & 63

    def on_split(self, bits: int) -> bool:
        mask = (1 << bits) - 1
        return self.s2 & mask == mask


def zstd_chunked(data: bytes, bits: int = 16, hole_threshold: int = 1024) -> list[int]:
    """One file's chunk sizes as ``writeZstdChunkedStream`` records them (compressor.go)."""
    holes = _HolesFinder(data, hole_threshold)
    rollsum = _RollSum()
    pending_hole = 0
    closed = False
    written_out = 0
    last_chunk_offset = 0
    started = False
    sizes = []

    def read(size: int) -> tuple[bool, int, bool]:
        """rollingChecksumReader.Read: (mustSplit, bytes read, EOF)."""
        nonlocal pending_hole, closed, written_out
        if pending_hole > 0:
            to_copy = min(pending_hole, size)
            pending_hole -= to_copy
            written_out += to_copy
            return pending_hole == 0, to_copy, False
        if closed:
            return False, 0, True
        for i in range(size):
            got = holes.read_byte()
            if got is None:
                closed = True
                return (False, 0, True) if i == 0 else (False, i, False)
            hole, b = got
            if hole > 0:
                for _ in range(hole):
                    rollsum.roll(0)
                pending_hole = hole
                return True, i, False
            written_out += 1
            rollsum.roll(b)
            if rollsum.on_split(bits):
                return True, i + 1, False
        return False, size, False

    while True:
        must_split, n, at_eof = read(4096)
        if n > 0:
            started = True
        if (must_split or at_eof) and started:
            if written_out - last_chunk_offset > 0:
                sizes.append(written_out - last_chunk_offset)
            last_chunk_offset = written_out
        if at_eof:
            return sizes
