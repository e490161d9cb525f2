"""Nix's base-32 (the form of hashes in ``.narinfo`` files and store paths)."""

from __future__ import annotations

__all__ = ["nix_base32"]

_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # no e, o, u, t


def nix_base32(data: bytes) -> str:
    """Encode as Nix does: 5-bit groups taken from the end of the byte string.

    >>> import hashlib
    >>> nix_base32(hashlib.sha256(b"").digest())
    '0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73'
    """
    length = (len(data) * 8 - 1) // 5 + 1
    out = []
    for n in range(length - 1, -1, -1):
        bit = n * 5
        i, j = divmod(bit, 8)
        c = data[i] >> j
        if i + 1 < len(data):
            c |= data[i + 1] << (8 - j)
        out.append(_ALPHABET[c & 0x1F])
    return "".join(out)
