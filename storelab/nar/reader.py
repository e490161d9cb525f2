"""A streaming, strict NAR reader: Nix's grammar and rules, one pass, bounded memory.

    nar       = "nix-archive-1" node
    node      = "(" "type" (regular | symlink | directory) ")"
    regular   = "regular" ["executable" ""] "contents" CONTENTS
    symlink   = "symlink" "target" TARGET
    directory = "directory" { "entry" "(" "name" NAME "node" node ")" }

Every string is a little-endian u64 length, the bytes, and zero padding to a multiple of 8.
Entries are strictly increasing by name (bytewise); names are non-empty, not ``.``/``..``,
without ``/`` or NUL, at most 255 bytes; symlink targets at most 4095 bytes; directories nest
at most 63 deep below the root (Nix 2.34: "NAR directory nesting exceeds maximum depth of
64"). Anything else is a :class:`NarError` naming the NAR and the byte offset where the
mistake is. As Nix does, reading stops at the root node's closing ``)``: bytes after it are
not part of the NAR (the last event, :class:`NarEnd`, says where it ended) and are not read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from storelab.castore import InvalidNodeError, validate_name
from storelab.castore.nodes import MAX_TARGET_LEN
from storelab.errors import (
    NarError,
)

__all__ = [
    "NarError",
    "NarDirectoryStart",
    "NarDirectoryEnd",
    "NarFile",
    "NarSymlink",
    "NarEnd",
    "NarEvent",
    "read_nar",
    "MAGIC",
]

MAGIC = b"nix-archive-1"
_U64 = struct.Struct("<Q")
_ZEROS = [bytes(i) for i in range(8)]


def _encode(token: bytes) -> bytes:
    return _U64.pack(len(token)) + token + bytes((-len(token)) % 8)


_ENCODED = {t: _encode(t) for t in (b"(", b")", b"type", b"contents", b"target", b"name", b"node", b"entry")}
_TOKEN_MAX = 64  # longest keyword ("nix-archive-1", "directory", …) with room to spare
_NAME_MAX = 255
MAX_DEPTH = 64
"""Nix 2.34's nesting limit: a directory at this depth (the root at depth 1) is refused."""
CONTENT_PIECE = 1 << 20


@dataclass(frozen=True, slots=True)
class NarDirectoryStart:
    path: bytes
    """Path inside the NAR (``b""`` for the root), ``/``-separated."""


@dataclass(frozen=True, slots=True)
class NarDirectoryEnd:
    path: bytes


@dataclass(frozen=True, slots=True)
class NarSymlink:
    path: bytes
    target: bytes


@dataclass(frozen=True, slots=True)
class NarFile:
    """A regular file; ``pieces`` yields its contents and must be consumed before the next
    event is asked for (what is not consumed is skipped)."""

    path: bytes
    size: int
    executable: bool
    pieces: Iterator[bytes]


@dataclass(frozen=True, slots=True)
class NarEnd:
    """The NAR is complete: ``size`` bytes, up to and including the root's closing ``)``."""

    size: int


NarEvent = NarDirectoryStart | NarDirectoryEnd | NarSymlink | NarFile | NarEnd


class _Reader:
    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.offset = 0

    def fail(self, reason: str, at: int | None = None) -> NarError:
        return NarError(f"{self.name}: byte {self.offset if at is None else at}: {reason}")

    def exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) == n:
            self.offset += n
            return data
        while len(data) < n:
            more = self.stream.read(n - len(data))
            if not more:
                self.offset += len(data)
                raise self.fail("truncated NAR (unexpected end of input)")
            data += more
        self.offset += n
        return data

    def length(self) -> int:
        return _U64.unpack(self.exact(8))[0]

    def padding(self, n: int) -> None:
        pad = (-n) % 8
        if pad:
            at = self.offset
            if self.exact(pad) != _ZEROS[pad]:
                raise self.fail("non-zero padding", at)

    def string(self, limit: int, what: str = "string") -> bytes:
        at = self.offset
        n = self.length()
        if n > limit:
            raise self.fail(f"{what} too long ({n} bytes)", at)
        pad = (-n) % 8
        data = self.exact(n + pad)  # the string and its padding in one read
        if pad and data[n:] != _ZEROS[pad]:
            raise self.fail("non-zero padding", at + 8 + n)
        return data[:n] if pad else data

    def expect(self, token: bytes) -> None:
        encoded = _ENCODED.get(token) or _encode(token)
        at = self.offset
        data = self.stream.read(len(encoded))
        if data == encoded:  # the usual case: one read, one comparison
            self.offset += len(encoded)
            return
        # not the token: read the whole string that is there, for a precise error
        if len(data) < 8:
            self.offset = at + len(data)
            raise self.fail("truncated NAR (unexpected end of input)")
        n = _U64.unpack(data[:8])[0]
        if n > _TOKEN_MAX:
            raise self.fail(f"token too long ({n} bytes)", at)
        pad = (-n) % 8
        missing = 8 + n + pad - len(data)
        if missing > 0:
            data += self.stream.read(missing)
        if len(data) < 8 + n + pad:
            self.offset = at + len(data)
            raise self.fail("truncated NAR (unexpected end of input)")
        if data[8 + n : 8 + n + pad] != _ZEROS[pad]:
            raise self.fail("non-zero padding", at + 8 + n)
        raise self.fail(f"expected {token.decode()!r}, found {data[8 : 8 + n][:32]!r}", at)

    def contents(self, size: int) -> Iterator[bytes]:
        left = size
        while left:
            piece = self.stream.read(min(left, CONTENT_PIECE))
            if not piece:
                raise self.fail("truncated NAR (file contents cut short)")
            self.offset += len(piece)
            left -= len(piece)
            yield piece
        self.padding(size)


def read_nar(stream: BinaryIO, name: str = "NAR") -> Iterator[NarEvent]:
    """Parse a NAR from ``stream``, yielding its nodes in order (parents before children),
    then :class:`NarEnd`. Nothing after the NAR is read.

    >>> import io
    >>> from storelab.nar.writer import nar_bytes_of_file
    >>> [type(e).__name__ for e in read_nar(io.BytesIO(nar_bytes_of_file(b"hi") + b"more"))]
    ['NarFile', 'NarEnd']
    """
    r = _Reader(stream, name)
    expected = _encode(MAGIC)
    head = stream.read(len(expected))
    if head != expected:
        if expected.startswith(head):
            raise r.fail("truncated NAR (unexpected end of input)", len(head))
        raise r.fail(f"not a NAR (it does not start with the {MAGIC.decode()} magic)", 0)
    r.offset = len(head)
    yield from _node(r, b"")
    yield NarEnd(r.offset)


def _regular_header(r: _Reader) -> tuple[bool, int]:
    """A regular file's header, after ``type regular``: whether it is executable, and its size."""
    at = r.offset
    token = r.string(_TOKEN_MAX, "token")
    executable = False
    if token == b"executable":
        marker_at = r.offset
        if r.string(_TOKEN_MAX, "executable marker") != b"":
            raise r.fail("executable marker has non-empty value", marker_at)
        executable = True
        at = r.offset
        token = r.string(_TOKEN_MAX, "token")
    if token != b"contents":
        raise r.fail(f"expected 'contents', found {token[:32]!r}", at)
    return executable, r.length()


def _symlink_target(r: _Reader) -> bytes:
    """A symlink's target, after ``type symlink``, and the node's closing parenthesis."""
    r.expect(b"target")
    at = r.offset
    target = r.string(MAX_TARGET_LEN, "symlink target")
    if not target or b"\0" in target:
        raise r.fail(f"invalid symlink target {target[:64]!r}", at)
    r.expect(b")")
    return target


def _node(r: _Reader, path: bytes) -> Iterator[NarEvent]:
    # An explicit stack of open directories, so deep trees cannot exhaust Python's recursion.
    stack: list[list] = []  # [directory path, last entry name]
    r.expect(b"(")
    r.expect(b"type")
    while True:
        # the body of the node at `path`, just after "(" "type"
        at = r.offset
        kind = r.string(_TOKEN_MAX, "token")
        if kind == b"regular":
            executable, size = _regular_header(r)
            pieces = r.contents(size)
            yield NarFile(path, size, executable, pieces)
            for _ in pieces:  # whatever the consumer left unread
                pass
            r.expect(b")")
            finished = True
        elif kind == b"symlink":
            yield NarSymlink(path, _symlink_target(r))
            finished = True
        elif kind == b"directory":
            if len(stack) + 1 >= MAX_DEPTH:
                raise r.fail(f"NAR directory nesting exceeds maximum depth of {MAX_DEPTH}", at)
            yield NarDirectoryStart(path)
            stack.append([path, None])
            finished = False
        else:
            raise r.fail(f"unknown node type {kind[:32]!r}", at)
        # find the next node: close finished entries and directories on the way
        while True:
            if finished:
                if not stack:
                    return
                r.expect(b")")  # closes the entry that held the finished node
            dir_path, last = stack[-1]
            at = r.offset
            token = r.string(_TOKEN_MAX, "token")
            if token == b")":
                stack.pop()
                yield NarDirectoryEnd(dir_path)
                finished = True
                continue
            if token != b"entry":
                raise r.fail(f"expected 'entry' or ')', found {token[:32]!r}", at)
            r.expect(b"(")
            r.expect(b"name")
            name_at = r.offset
            name = r.string(_NAME_MAX, "string")
            try:
                validate_name(name)
            except InvalidNodeError as err:
                raise r.fail(str(err), name_at) from None
            if last is not None and name <= last:
                raise r.fail("NAR directory is not sorted (or has a duplicate entry)", name_at)
            stack[-1][1] = name
            r.expect(b"node")
            r.expect(b"(")
            r.expect(b"type")
            path = dir_path + b"/" + name if dir_path else name
            break
