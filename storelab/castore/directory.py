"""castore ``Directory``: validation, canonical protobuf encoding, BLAKE3 digest and size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import blake3

from storelab.castore.nodes import (
    DirectoryNode,
    FileNode,
    InvalidNodeError,
    Node,
    SymlinkNode,
    validate_name,
)
from storelab.castore.protobuf import DecodeError, encode_varint, iter_fields

__all__ = ["Directory"]


@dataclass(frozen=True)
class Directory:
    """One directory level: its child directories, files and symlinks.

    Each list is sorted by name bytewise, and names are unique across the three lists.
    Build one from entries in any order with :meth:`from_nodes`:

    >>> from storelab.castore import FileNode, EMPTY_BLOB_DIGEST
    >>> d = Directory.from_nodes([FileNode(b".keep", EMPTY_BLOB_DIGEST, 0)])
    >>> d.digest.hex()[:16], d.size
    ('8b5b5d642b646bb8', 2)
    """

    directories: tuple[DirectoryNode, ...] = ()
    """Child directories, sorted by name."""
    files: tuple[FileNode, ...] = ()
    """Regular files, sorted by name."""
    symlinks: tuple[SymlinkNode, ...] = ()
    """Symbolic links, sorted by name."""

    def __post_init__(self) -> None:
        for kind, nodes in (
            ("directories", self.directories),
            ("files", self.files),
            ("symlinks", self.symlinks),
        ):
            names = [node.name for node in nodes]
            for name in names:
                validate_name(name)
            if any(a >= b for a, b in zip(names, names[1:])):
                raise InvalidNodeError(f"{kind} are not sorted by name or not unique")
        every: list[Node] = [*self.directories, *self.files, *self.symlinks]
        all_names = [n.name for n in every]
        if len(set(all_names)) != len(all_names):
            raise InvalidNodeError("an entry name occurs in more than one list")

    @classmethod
    def from_nodes(cls, nodes: Iterable[Node]) -> Directory:
        """Sort named nodes into the three lists (any input order)."""
        dirs: list[DirectoryNode] = []
        files: list[FileNode] = []
        links: list[SymlinkNode] = []
        for node in nodes:
            if isinstance(node, DirectoryNode):
                dirs.append(node)
            elif isinstance(node, FileNode):
                files.append(node)
            else:
                links.append(node)
        key = _by_name
        return cls(tuple(sorted(dirs, key=key)), tuple(sorted(files, key=key)), tuple(sorted(links, key=key)))

    @classmethod
    def trusted(
        cls, directories: tuple[DirectoryNode, ...], files: tuple[FileNode, ...], symlinks: tuple[SymlinkNode, ...]
    ) -> Directory:
        """Build without re-checking: for callers whose entries are already valid, sorted and
        unique (a directory listing sorted by name, each name checked once as it was read)."""
        directory = object.__new__(cls)
        object.__setattr__(directory, "directories", directories)
        object.__setattr__(directory, "files", files)
        object.__setattr__(directory, "symlinks", symlinks)
        return directory

    @cached_property
    def encoded(self) -> bytes:
        """The canonical protobuf bytes: fields 1, 2, 3 in order, default values omitted."""
        parts: list[bytes] = []
        for tag, nodes in ((b"\x0a", self.directories), (b"\x12", self.files), (b"\x1a", self.symlinks)):
            for node in nodes:
                body = node.encode()
                parts += (tag, encode_varint(len(body)), body)
        return b"".join(parts)

    @cached_property
    def digest(self) -> bytes:
        """BLAKE3 of :attr:`encoded` (32 bytes); the empty directory hashes the empty string."""
        return blake3.blake3(self.encoded).digest()

    @property
    def size(self) -> int:
        """Recursive size as snix computes it: ``2 × entries + Σ child directory sizes``.

        castore.proto's comment says ``entries + Σ child sizes``; snix's code (and so every
        digest it writes, since a child's size is part of its parent's encoding) counts each
        entry twice. We follow the code, so our digests equal snix's.
        """
        entries = len(self.directories) + len(self.files) + len(self.symlinks)
        return 2 * entries + sum(d.size for d in self.directories)

    def node(self, name: bytes = b"") -> DirectoryNode:
        """A :class:`DirectoryNode` pointing at this directory."""
        return DirectoryNode(name, self.digest, self.size)

    @classmethod
    def decode(cls, data: bytes) -> Directory:
        """Parse canonical bytes back; raises :class:`InvalidNodeError` on anything else."""
        try:
            nodes: list[Node] = []
            for number, value in iter_fields(data):
                if not isinstance(value, bytes) or number not in (1, 2, 3):
                    raise InvalidNodeError(f"unexpected field {number} in Directory")
                fields = dict(_node_fields(value))
                name, second = _bytes(fields.get(1, b"")), _bytes(fields.get(2, b""))
                if number == 1:
                    nodes.append(DirectoryNode(name, second, _int(fields.get(3, 0))))
                elif number == 2:
                    nodes.append(FileNode(name, second, _int(fields.get(3, 0)), bool(fields.get(4, 0))))
                else:
                    nodes.append(SymlinkNode(name, second))
        except DecodeError as err:
            raise InvalidNodeError(f"malformed Directory message: {err}") from None
        directory = cls.from_nodes(nodes)
        if directory.encoded != data:
            raise InvalidNodeError("Directory message is not in canonical form")
        return directory


def _by_name(node: Node) -> bytes:
    return node.name


def _node_fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    seen: set[int] = set()
    for number, value in iter_fields(data):
        if number in seen:
            raise InvalidNodeError(f"field {number} repeated in a node")
        seen.add(number)
        yield number, value


def _bytes(value: int | bytes) -> bytes:
    """A length-delimited field's value; a varint where bytes belong is malformed."""
    if not isinstance(value, bytes):
        raise InvalidNodeError("a varint where a Directory field holds bytes")
    return value


def _int(value: int | bytes) -> int:
    """A varint field's value; bytes where a varint belongs are malformed."""
    if not isinstance(value, int):
        raise InvalidNodeError("bytes where a Directory field holds a number")
    return value
