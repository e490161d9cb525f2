"""castore's three node kinds as frozen values, and the rules names and targets obey."""

from __future__ import annotations

from dataclasses import dataclass

from storelab.castore.protobuf import bytes_field, encode_varint, varint_field

__all__ = [
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
]

DIGEST_LEN = 32
_DIGEST_TAG = b"\x12\x20"  # field 2, length-delimited, 32 bytes
MAX_NAME_LEN = 255
MAX_TARGET_LEN = 4095


class InvalidNodeError(ValueError):
    """A node or directory breaks a castore rule (name, target, digest, order)."""


def validate_name(name: bytes) -> None:
    """Raise :class:`InvalidNodeError` unless ``name`` may name a directory entry.

    >>> validate_name(b"hello.txt")
    >>> validate_name(b"..")
    Traceback (most recent call last):
    ...
    storelab.castore.nodes.InvalidNodeError: invalid name b'..'
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
        # written out (not via bytes_field) as this runs once per file of every tree
        return (
            bytes_field(1, self.name)
            + _DIGEST_TAG
            + self.digest
            + (b"\x18" + encode_varint(self.size) if self.size else b"")
            + (b"\x20\x01" if self.executable else b"")
        )


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
        return bytes_field(1, self.name) + _DIGEST_TAG + self.digest + varint_field(3, self.size)


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
        return bytes_field(1, self.name) + bytes_field(2, self.target)


Node = FileNode | DirectoryNode | SymlinkNode
"""Any one of castore's three node kinds."""
