"""Store-path references inside file contents: found, and blanked.

A Nix store path's hash (``/nix/store/<32 nix-base32 characters>-``) changes whenever anything
it depends on does, and every file that mentions the path changes with it. Blanking those hashes
before chunking shows how much dedup they cost (``what-if``, and hestia's store model, which
zeroes them).
"""

from __future__ import annotations

import re

__all__ = ["PLACEHOLDER", "STORE_PATH_HASH", "normalize_store_paths"]

STORE_PATH_HASH = re.compile(rb"/nix/store/[0123456789abcdfghijklmnpqrsvwxyz]{32}-")
"""A store path's hash part, in nix-base32 (which has no e, o, t or u)."""
PLACEHOLDER = b"/nix/store/" + b"e" * 32 + b"-"
"""Same length as a real one (offsets and sizes do not move), and never a real hash."""


def normalize_store_paths(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` with every ``/nix/store/<hash>-`` replaced by the placeholder.

    >>> normalize_store_paths(b"#!/nix/store/0c0njx0wxbvdbcfacnha7d9nsc9wwmcw-bash-5.2/bin/sh")
    b'#!/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-bash-5.2/bin/sh'
    """
    return STORE_PATH_HASH.sub(PLACEHOLDER, bytes(data))
