"""Xet's object names: keyed BLAKE3 of each chunk, and a file's hash from its chunks' hashes.

From huggingface/xet-core ``xet_core_structures/src/merklehash`` (``data_hash.rs``,
``aggregated_hashes.rs``): a chunk's hash is BLAKE3 keyed with ``DATA_KEY``; a file's hash is
the root of a tree whose nodes group 2 to 9 children, a group ending after a child (from the
third on) whose hash is 0 mod 4, each node the BLAKE3 keyed with ``INTERNAL_NODE_HASH`` of its
children's lines ``"<hash hex> : <size>\\n"``; the root is then keyed-hashed once more with a
zero salt. Hashes print as four little-endian 64-bit words in hex, as xet-core prints them.

With :class:`~storelab.chunking.xet.XetChunker`'s cut points this reproduces
``hf_xet.hash_files`` (the test suite checks it), which proves the cut points end to end.

>>> xet_file_hash(b"", [])
'0000000000000000000000000000000000000000000000000000000000000000'
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import blake3

__all__ = ["DATA_KEY", "INTERNAL_NODE_KEY", "xet_chunk_hash", "xet_file_hash", "xet_hex"]

DATA_KEY = bytes([
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155, 235, 43, 88, 180,
    208, 176, 75, 147, 173, 242, 41,
])  # fmt: skip
"""xet-core's key for chunk (leaf) hashes."""
INTERNAL_NODE_KEY = bytes([
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55, 199, 109, 210, 248,
    99, 82, 230, 74, 83, 113, 63,
])  # fmt: skip
"""xet-core's key for interior nodes of the hash tree."""
_BRANCHING = 4


def xet_chunk_hash(chunk: bytes | memoryview) -> bytes:
    """A chunk's 32-byte Xet hash (BLAKE3 keyed with ``DATA_KEY``)."""
    return blake3.blake3(chunk, key=DATA_KEY).digest()


def xet_hex(digest: bytes) -> str:
    """A hash as xet-core prints it: each of its four little-endian u64 words in hex.

    >>> xet_hex(bytes(range(32)))[:16]
    '0706050403020100'
    """
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", digest))


def _merge_cut(hashes: Sequence[tuple[bytes, int]]) -> int:
    if len(hashes) <= 2:
        return len(hashes)
    end = min(2 * _BRANCHING + 1, len(hashes))
    for i in range(2, end):
        if struct.unpack_from("<Q", hashes[i][0], 24)[0] % _BRANCHING == 0:
            return i + 1
    return end


def _merged(group: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{xet_hex(h)} : {size}\n" for h, size in group)
    return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in group)


def xet_file_hash(data: bytes | memoryview, lengths: Sequence[int]) -> str:
    """The Xet hash of a file cut into ``lengths``, printed as ``hf_xet`` prints it."""
    view = memoryview(data)
    level: list[tuple[bytes, int]] = []
    offset = 0
    for length in lengths:
        level.append((xet_chunk_hash(view[offset : offset + length]), length))
        offset += length
    if not level:
        return "0" * 64
    while len(level) > 1:
        merged: list[tuple[bytes, int]] = []
        at = 0
        while at < len(level):
            cut = at + _merge_cut(level[at:])
            merged.append(_merged(level[at:cut]))
            at = cut
        level = merged
    return xet_hex(blake3.blake3(level[0][0], key=bytes(32)).digest())
