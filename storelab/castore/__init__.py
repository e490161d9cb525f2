"""The castore model: nodes, ``Directory`` messages, digests and sizes as snix has them.

>>> from storelab.castore import Directory, FileNode, blob_digest
>>> hello = FileNode(b"hello", blob_digest(b"Hello World!"), 12)
>>> Directory.from_nodes([hello]).size
2
"""

from __future__ import annotations

import blake3

from storelab.castore.directory import Directory
from storelab.castore.nodes import (
    DIGEST_LEN,
    DirectoryNode,
    FileNode,
    InvalidNodeError,
    Node,
    SymlinkNode,
    validate_name,
    validate_target,
)

__all__ = [
    "DIGEST_LEN",
    "EMPTY_BLOB_DIGEST",
    "Directory",
    "DirectoryNode",
    "FileNode",
    "InvalidNodeError",
    "Node",
    "SymlinkNode",
    "blob_digest",
    "validate_name",
    "validate_target",
]


def blob_digest(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3 of a blob's bytes, as castore addresses blobs (32 bytes)."""
    return blake3.blake3(data).digest()


EMPTY_BLOB_DIGEST = blob_digest(b"")
"""The digest of the empty blob (also the digest of the empty directory)."""
