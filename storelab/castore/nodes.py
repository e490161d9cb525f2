"""castore's three node kinds as frozen values, and the rules names and targets obey."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from storelab.castore.protobuf import bytes_field, encode_varint, varint_field
from storelab.errors import InvalidNodeError

__all__ = [
    "encode_file_entry",
    "encode_file_entries",
    "DIGEST_LEN",
    "MAX_NAME_LEN",
    "MAX_TARGET_LEN",
    "FileNode",
    "DirectoryNode",
    "SymlinkNode",
    "Node",
    "InvalidNodeError",
    "validate_name",
    "validate_target",
    "encode_file_node",
    "encode_directory_node",
    "encode_symlink_node",
]

DIGEST_LEN = 32
_DIGEST_TAG = b"\x12\x20"  # field 2, length-delimited, 32 bytes
MAX_NAME_LEN = 255
MAX_TARGET_LEN = 4095


def validate_name(name: bytes) -> None:
    """Raise :class:`InvalidNodeError` unless ``name`` may name a directory entry.

    >>> validate_name(b"hello.txt")
    >>> validate_name(b"..")
    Traceback (most recent call last):
    ...
    storelab.errors.InvalidNodeError: invalid name b'..'
    """
    if (
        not name
        or name in (b".", b"..")
        or b"/" in name
        or b"\0" in name
        or len(name) > MAX_NAME_LEN
    ):
        raise InvalidNodeError(f"invalid name {name!r}")


def validate_target(target: bytes) -> None:
    """Raise :class:`InvalidNodeError` unless ``target`` may be a symlink target."""
    if not target or b"\0" in target or len(target) > MAX_TARGET_LEN:
        raise InvalidNodeError(f"invalid symlink target {target[:64]!r}")


def encode_file_node(name: bytes, digest: bytes, size: int, executable: bool) -> bytes:
    """A ``FileNode`` message from trusted values (no node object: the recorder encodes every
    file of a tree this way).

    >>> encode_file_node(b"a", bytes(32), 5, True) == FileNode(b"a", bytes(32), 5, True).encode()
    True
    """
    # written out (not via bytes_field) as this runs once per file of every tree
    return b"".join(
        (
            bytes_field(1, name), _DIGEST_TAG, digest,
            b"\x18" + encode_varint(size) if size else b"", b"\x20\x01" if executable else b"",
        )
    )  # fmt: skip


def encode_file_entry(name: bytes, digest: bytes, size: int, executable: bool) -> bytes:
    """A ``FileNode`` as the ``files`` field (2) of its directory's message — what the
    recorder joins into a directory, once per file of every tree, so in one piece.

    >>> from storelab.castore.protobuf import bytes_field
    >>> encode_file_entry(b"a", bytes(32), 300, True) == bytes_field(2, encode_file_node(b"a", bytes(32), 300, True))
    True
    """
    inner = b"".join(
        (
            b"\x0a", encode_varint(len(name)), name, _DIGEST_TAG, digest,
            b"\x18" + encode_varint(size) if size else b"", b"\x20\x01" if executable else b"",
        )
    )  # fmt: skip
    return b"\x12" + encode_varint(len(inner)) + inner


def encode_file_entries(names: list[bytes], digests: bytes, sizes: Sequence[int], executables: Sequence[bool]) -> list[bytes]:
    """:func:`encode_file_entry` of many files at once — ``digests`` holds 32 bytes per name —
    in one call to the compiled encoder (``_encode.c``) where it is built.

    >>> fields = encode_file_entries([b"a", b"bc"], bytes(64), [0, 300], [False, True])
    >>> fields == [encode_file_entry(b"a", bytes(32), 0, False), encode_file_entry(b"bc", bytes(32), 300, True)]
    True
    """
    if _encode is not None:
        return _encode.file_entries(names, digests, sizes, executables)
    rows = enumerate(zip(names, sizes, executables))
    return [encode_file_entry(name, digests[32 * k : 32 * k + 32], size, bool(executable)) for k, (name, size, executable) in rows]


def _compiled_encoder() -> ModuleType | None:
    """The batch encoder in C (``_encode.c``); None in a checkout where it is not built."""
    try:
        return importlib.import_module("storelab.castore._encode")
    except ImportError:
        return None


_encode = _compiled_encoder()


def encode_directory_node(name: bytes, digest: bytes, size: int) -> bytes:
    """A ``DirectoryNode`` message from trusted values."""
    return bytes_field(1, name) + _DIGEST_TAG + digest + varint_field(3, size)


def encode_symlink_node(name: bytes, target: bytes) -> bytes:
    """A ``SymlinkNode`` message from trusted values."""
    return bytes_field(1, name) + bytes_field(2, target)


def _validate_digest(digest: bytes, name: bytes) -> None:
    if len(digest) != DIGEST_LEN:
        raise InvalidNodeError(f"digest of {name!r} is {len(digest)} bytes, not {DIGEST_LEN}")


@dataclass(frozen=True, slots=True)
class FileNode:
    """A regular file: its contents are the blob ``digest``."""

    name: bytes
    """Entry name inside its directory (empty for a root node)."""
    digest: bytes
    """BLAKE3 of the file's bytes (32 bytes)."""
    size: int
    """Length of the file in bytes."""
    executable: bool = False
    """Whether the owner-execute bit is set (the only mode bit castore and NAR keep)."""

    def __post_init__(self) -> None:
        _validate_digest(self.digest, self.name)

    def encode(self) -> bytes:
        """castore ``FileNode`` {name 1, digest 2, size 3, executable 4}."""
        return encode_file_node(self.name, self.digest, self.size, self.executable)


@dataclass(frozen=True, slots=True)
class DirectoryNode:
    """A directory: points to a :class:`~storelab.castore.directory.Directory` by digest."""

    name: bytes
    """Entry name inside its parent (empty for a root node)."""
    digest: bytes
    """BLAKE3 of the child directory's canonical encoding."""
    size: int
    """The child's recursive size as snix computes it (see ``Directory.size``)."""

    def __post_init__(self) -> None:
        _validate_digest(self.digest, self.name)

    def encode(self) -> bytes:
        """castore ``DirectoryNode`` {name 1, digest 2, size 3}."""
        return encode_directory_node(self.name, self.digest, self.size)


@dataclass(frozen=True, slots=True)
class SymlinkNode:
    """A symbolic link; castore records the target, never what it points to."""

    name: bytes
    """Entry name inside its directory (empty for a root node)."""
    target: bytes
    """The link's target, as bytes, exactly as ``readlink`` gives it."""

    def __post_init__(self) -> None:
        validate_target(self.target)

    def encode(self) -> bytes:
        """castore ``SymlinkNode`` {name 1, target 2}."""
        return encode_symlink_node(self.name, self.target)


Node = FileNode | DirectoryNode | SymlinkNode
"""Any one of castore's three node kinds."""
