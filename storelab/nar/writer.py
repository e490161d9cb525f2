"""Write NARs exactly as Nix does (``nix-store --dump``): from a directory tree or from parts."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator

from storelab.nar.reader import MAX_DEPTH, NarError

__all__ = ["TOKENS", "nar_string", "dump_path", "nar_bytes_of_file", "nar_node_size", "nar_entry_size", "nar_file_entry_size", "NAR_HEADER_SIZE"]

_PIECE = 1 << 20


def nar_string(data: bytes) -> bytes:
    """One NAR string: u64 little-endian length, the bytes, zero padding to 8.

    >>> nar_string(b"(")
    b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00(\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    """
    return struct.pack("<Q", len(data)) + data + bytes((-len(data)) % 8)


TOKENS = {
    t: nar_string(t)
    for t in (b"nix-archive-1", b"(", b")", b"type", b"regular", b"executable", b"", b"contents", b"symlink", b"target", b"directory",
              b"entry", b"name", b"node")
}  # fmt: skip
"""The NAR grammar's fixed strings, encoded."""
_S = TOKENS

NAR_HEADER_SIZE = len(_S[b"nix-archive-1"])
_FILE = sum(len(_S[t]) for t in (b"(", b"type", b"regular", b"contents", b")")) + 8
_EXECUTABLE = len(_S[b"executable"]) + len(_S[b""])
_SYMLINK = sum(len(_S[t]) for t in (b"(", b"type", b"symlink", b"target", b")"))
_DIRECTORY = sum(len(_S[t]) for t in (b"(", b"type", b"directory", b")"))
_ENTRY = sum(len(_S[t]) for t in (b"entry", b"(", b"name", b"node", b")"))


def _string_size(length: int) -> int:
    return 8 + length + (-length % 8)


def nar_node_size(kind: str, size: int = 0, executable: bool = False, target: bytes = b"", entries: int = 0) -> int:
    """Bytes of one node's NAR serialisation (without the ``nix-archive-1`` header).

    For a directory, ``entries`` is the sum of :func:`nar_entry_size` over its children.

    >>> NAR_HEADER_SIZE + nar_node_size("file", 12) == len(nar_bytes_of_file(b"Hello World!"))
    True
    """
    if kind == "file":
        return _FILE + (_EXECUTABLE if executable else 0) + size + (-size % 8)
    if kind == "symlink":
        return _SYMLINK + _string_size(len(target))
    return _DIRECTORY + entries


def nar_entry_size(name: bytes, child: int) -> int:
    """Bytes of a directory entry named ``name`` whose node serialises to ``child`` bytes."""
    return _ENTRY + _string_size(len(name)) + child


def nar_file_entry_size(name_length: int, size: int, executable: bool) -> int:
    """:func:`nar_entry_size` of a file's node, in one step (the recorder's, for every file).

    >>> nar_file_entry_size(3, 100, True) == nar_entry_size(b"abc", nar_node_size("file", 100, True))
    True
    """
    return _ENTRY + 8 + name_length + (-name_length % 8) + _FILE + (_EXECUTABLE if executable else 0) + size + (-size % 8)


def nar_bytes_of_file(contents: bytes, executable: bool = False) -> bytes:
    """The NAR of a single regular file."""
    return b"".join(
        [_S[b"nix-archive-1"], _S[b"("], _S[b"type"], _S[b"regular"]]
        + ([_S[b"executable"], _S[b""]] if executable else [])
        + [_S[b"contents"], nar_string(contents), _S[b")"]]
    )


def dump_path(path: str | os.PathLike[str] | bytes) -> Iterator[bytes]:
    """Stream the NAR of a file, symlink or directory tree, as ``nix-store --dump`` writes it.

    Entries are sorted bytewise; only the owner-execute bit of files is kept. A tree whose
    directories nest 64 deep (the root counting as one) is refused with :class:`NarError`, as
    Nix 2.34 refuses to read such a NAR.
    """
    yield _S[b"nix-archive-1"]
    yield from _dump(os.fsencode(path), 1)


def _dump(path: bytes, depth: int) -> Iterator[bytes]:
    st = os.lstat(path)
    yield _S[b"("]
    yield _S[b"type"]
    if stat.S_ISREG(st.st_mode):
        yield _S[b"regular"]
        if st.st_mode & stat.S_IXUSR:
            yield _S[b"executable"]
            yield _S[b""]
        yield _S[b"contents"]
        yield struct.pack("<Q", st.st_size)
        written = 0
        with open(path, "rb") as f:
            while piece := f.read(_PIECE):
                written += len(piece)
                yield piece
        if written != st.st_size:
            raise OSError(f"{os.fsdecode(path)} changed while being written to a NAR")
        yield bytes((-st.st_size) % 8)
    elif stat.S_ISLNK(st.st_mode):
        yield _S[b"symlink"]
        yield _S[b"target"]
        yield nar_string(os.readlink(path))
    elif stat.S_ISDIR(st.st_mode):
        if depth >= MAX_DEPTH:
            raise NarError(
                f"{os.fsdecode(path)}: directories nest {depth} deep here; Nix 2.34 refuses a NAR nested "
                f"{MAX_DEPTH} deep (NAR directory nesting exceeds maximum depth of {MAX_DEPTH})"
            )
        yield _S[b"directory"]
        for name in sorted(os.listdir(path)):
            yield _S[b"entry"]
            yield _S[b"("]
            yield _S[b"name"]
            yield nar_string(name)
            yield _S[b"node"]
            yield from _dump(path + b"/" + name, depth + 1)
            yield _S[b")"]
    else:
        raise OSError(f"{os.fsdecode(path)}: a NAR holds only files, directories and symlinks")
    yield _S[b")"]
