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
not part of the NAR (the last event, :class:`NarEnd`, says where it ended) and are not
parsed (of a buffered stream, the reader takes what its buffer holds; of any other, at most
one read of 256 KiB past the end).

A consumer that needs only the BLAKE3 digest of small files (``digest_files_upto``) may get
runs of consecutive entries as one :class:`NarRun`, read in C (``_scan.c``) from the buffer:
the same events, fewer of them. The C road takes only entries it holds whole and well formed;
everything else, and every error, is this module's.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO

import blake3

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
    "NarRun",
    "NarEvent",
    "RUN_FILE",
    "RUN_EXECUTABLE",
    "RUN_SYMLINK",
    "RUN_DIRECTORY",
    "RUN_END",
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


RUN_FILE, RUN_EXECUTABLE, RUN_SYMLINK, RUN_DIRECTORY, RUN_END = b"fxlde"
"""The codes of :attr:`NarRun.kinds`: a file, an executable file, a symlink, a directory's
start, a directory's end."""


@dataclass(frozen=True, slots=True)
class NarRun:
    """Consecutive events read in one step (only with ``read_nar(digest_files_upto=…)``): one
    code of ``kinds`` per event, in order, with its path (a directory's end: the directory's).
    Files come with their size and the BLAKE3 digest of their contents (32 bytes each in
    ``digests``, in order) instead of the contents; symlinks with their target.

    >>> import io, os, tempfile
    >>> from storelab.nar.writer import dump_path
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(f"{root}/b"); _ = open(f"{root}/a", "w").write("hi"); _ = open(f"{root}/b/c", "w").write("!")
    >>> nar = b"".join(dump_path(root))
    >>> [e.kinds for e in read_nar(io.BytesIO(nar), digest_files_upto=1024) if isinstance(e, NarRun)]
    [b'fdfee']
    """

    kinds: bytes
    paths: list[bytes]
    sizes: list[int]
    """One per file (``f`` or ``x``)."""
    targets: list[bytes]
    """One per symlink."""
    digests: bytes

    def events(self) -> Iterator[NarDirectoryStart | NarDirectoryEnd | NarSymlink | NarFile]:
        """The run as the single events it stands for, files without their contents
        (``pieces`` empty): what :func:`read_nar` yields without ``digest_files_upto``."""
        sizes, targets = iter(self.sizes), iter(self.targets)
        for kind, path in zip(self.kinds, self.paths, strict=True):
            if kind in (RUN_FILE, RUN_EXECUTABLE):
                yield NarFile(path, next(sizes), kind == RUN_EXECUTABLE, iter(()))
            elif kind == RUN_SYMLINK:
                yield NarSymlink(path, next(targets))
            elif kind == RUN_DIRECTORY:
                yield NarDirectoryStart(path)
            else:
                yield NarDirectoryEnd(path)


NarEvent = NarDirectoryStart | NarDirectoryEnd | NarSymlink | NarFile | NarRun | NarEnd


def _compiled_scanner() -> ModuleType | None:
    """The run reader in C (``_scan.c``); None in a checkout where it is not built (every
    event then comes singly)."""
    try:
        return importlib.import_module("storelab.nar._scan")
    except ImportError:
        return None


_scan = _compiled_scanner()


class _Reader:
    """The NAR's bytes through a buffer of our own: the grammar's small reads are slices of it,
    its tokens compared in place. It asks the stream for more (``read1``: at most one read of
    the raw stream under a buffered one) only when the grammar needs a byte it does not hold, so
    every raw block but the last lies wholly inside the NAR; file contents past the buffer are
    read from the stream directly."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream = stream
        self._read1 = getattr(stream, "read1", stream.read)
        self.name = name
        self.buf = b""
        self.pos = 0  # the next byte to parse, in buf
        self.base = 0  # the NAR offset of buf[0]

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def fail(self, reason: str, at: int | None = None) -> NarError:
        return NarError(f"{self.name}: byte {self.offset if at is None else at}: {reason}")

    def _fill(self, n: int) -> bool:
        """Hold at least ``n`` unparsed bytes; False (holding all there is) at the end of input."""
        held = self.buf[self.pos :]
        self.base += self.pos
        self.pos = 0
        while len(held) < n:
            more = self._read1(max(_BLOCK, n - len(held)))
            if not more:
                self.buf = held
                return False
            held += more
        self.buf = held
        return True

    def exact(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.buf):
            if not self._fill(n):
                self.pos = len(self.buf)
                raise self.fail("truncated NAR (unexpected end of input)")
            pos, end = 0, n
        self.pos = end
        return self.buf[pos:end]

    def upto(self, n: int) -> bytes:
        """The next ``n`` bytes, or as many as are left before the input ends."""
        if self.pos + n > len(self.buf):
            self._fill(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += len(data)
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
        if self.buf.startswith(encoded, self.pos):  # the usual case: one comparison in place
            self.pos += len(encoded)
            return
        at = self.offset
        data = self.upto(len(encoded))
        if data == encoded:  # it straddled the buffer's end
            return
        # not the token: read the whole string that is there, for a precise error
        if len(data) < 8:
            raise self.fail("truncated NAR (unexpected end of input)")
        n = _U64.unpack(data[:8])[0]
        if n > _TOKEN_MAX:
            raise self.fail(f"token too long ({n} bytes)", at)
        pad = (-n) % 8
        missing = 8 + n + pad - len(data)
        if missing > 0:
            data += self.upto(missing)
        if len(data) < 8 + n + pad:
            raise self.fail("truncated NAR (unexpected end of input)")
        if data[8 + n : 8 + n + pad] != _ZEROS[pad]:
            raise self.fail("non-zero padding", at + 8 + n)
        raise self.fail(f"expected {token.decode()!r}, found {data[8 : 8 + n][:32]!r}", at)

    def contents(self, size: int) -> Iterator[bytes]:
        left = size
        held = len(self.buf) - self.pos
        if left and held:  # what the buffer holds already (a small file: all of it)
            take = min(held, left)
            yield self.buf[self.pos : self.pos + take]
            self.pos += take
            left -= take
        if left:  # the rest straight from the stream, the buffer left empty
            self.base += len(self.buf)
            self.buf, self.pos = b"", 0
        while left:
            piece = self.stream.read(min(left, CONTENT_PIECE))
            if not piece:
                raise self.fail("truncated NAR (file contents cut short)")
            self.base += len(piece)
            left -= len(piece)
            yield piece
        self.padding(size)

    def held_contents(self, size: int) -> Iterator[bytes] | None:
        """A file's contents as one piece, consumed with their padding, when the buffer holds
        them (valid); None (nothing consumed) otherwise: :meth:`contents` reads them."""
        start = self.pos
        end = start + size
        pad = (-size) % 8
        buf = self.buf
        if end + pad > len(buf) or (pad and buf[end : end + pad] != _ZEROS[pad]):
            return None
        self.pos = end + pad
        return iter((buf[start:end],) if size else ())

    def entry_head(self, closing: bool) -> tuple[bytes, int] | None:
        """The common case of what follows a directory's last node, taken in one step when the
        buffer holds all of it, well formed: [``)``] ``entry ( name`` NAME ``node ( type`` — the
        entry's name and the offset of its string, consumed. None (nothing consumed) for
        anything else: the grammar's own steps read it and name any mistake."""
        buf, pos = self.buf, self.pos
        if closing:
            if not buf.startswith(_CLOSE, pos):
                return None
            pos += len(_CLOSE)
        if not buf.startswith(_ENTRY_HEAD, pos):
            return None
        name_at = pos + len(_ENTRY_HEAD)
        if name_at + 8 > len(buf):
            return None
        n = _U64.unpack_from(buf, name_at)[0]
        if n > _NAME_MAX:
            return None
        pad = (-n) % 8
        end = name_at + 8 + n + pad
        if not buf.startswith(_NODE_HEAD, end) or (pad and buf[end - pad : end] != _ZEROS[pad]):
            return None
        self.pos = end + len(_NODE_HEAD)
        return buf[name_at + 8 : name_at + 8 + n], self.base + name_at

    def regular_head(self) -> tuple[bool, int] | None:
        """``regular`` [``executable ""``] ``contents`` SIZE in one step when the buffer holds it:
        (executable, size), consumed; None (nothing consumed) otherwise."""
        buf, pos = self.buf, self.pos
        if buf.startswith(_PLAIN_HEAD, pos):
            at, executable = pos + len(_PLAIN_HEAD), False
        elif buf.startswith(_EXECUTABLE_HEAD, pos):
            at, executable = pos + len(_EXECUTABLE_HEAD), True
        else:
            return None
        if at + 8 > len(buf):
            return None
        self.pos = at + 8
        return executable, _U64.unpack_from(buf, at)[0]


_BLOCK = 256 * 1024
"""How much the reader asks its stream for when it needs more than it holds."""
_CLOSE = _encode(b")")
_ENTRY_HEAD = _encode(b"entry") + _encode(b"(") + _encode(b"name")
_NODE_HEAD = _encode(b"node") + _encode(b"(") + _encode(b"type")
_PLAIN_HEAD = _encode(b"regular") + _encode(b"contents")
_EXECUTABLE_HEAD = _encode(b"regular") + _encode(b"executable") + _encode(b"") + _encode(b"contents")


def read_nar(stream: BinaryIO, name: str = "NAR", digest_files_upto: int | None = None) -> Iterator[NarEvent]:
    """Parse a NAR from ``stream``, yielding its nodes in order (parents before children),
    then :class:`NarEnd`. Nothing after the NAR is parsed.

    With ``digest_files_upto`` (bytes), runs of entries — directories, symlinks and files of
    at most that size — may come as one :class:`NarRun` each, the files' BLAKE3 digests in
    place of their contents (when the C reader is built; else never): the same NAR, the same
    errors at the same bytes, fewer events.

    >>> import io
    >>> from storelab.nar.writer import nar_bytes_of_file
    >>> [type(e).__name__ for e in read_nar(io.BytesIO(nar_bytes_of_file(b"hi") + b"more"))]
    ['NarFile', 'NarEnd']
    """
    r = _Reader(stream, name)
    expected = _encode(MAGIC)
    head = r.upto(len(expected))
    if head != expected:
        if expected.startswith(head):
            raise r.fail("truncated NAR (unexpected end of input)", len(head))
        raise r.fail(f"not a NAR (it does not start with the {MAGIC.decode()} magic)", 0)
    runs = None if digest_files_upto is None or _scan is None else (_scan.scan, digest_files_upto)
    yield from _node(r, b"", runs)
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


def _node(r: _Reader, path: bytes, runs: tuple[Callable[..., tuple | None], int] | None = None) -> Iterator[NarEvent]:
    # An explicit stack of open directories, so deep trees cannot exhaust Python's recursion.
    stack: list[list] = []  # [directory path, last entry name]; the C run reader shares it
    r.expect(b"(")
    r.expect(b"type")
    while True:
        # the body of the node at `path`, just after "(" "type"
        head = r.regular_head()
        if head is not None:  # the usual case, in one step
            kind = b"regular"
        else:
            at = r.offset
            kind = r.string(_TOKEN_MAX, "token")
        if kind == b"regular":
            executable, size = head or _regular_header(r)
            held = r.held_contents(size)
            if held is not None:  # the usual case: read already, nothing left to skip
                yield NarFile(path, size, executable, held)
            else:
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
            if finished and not stack:
                return
            taken = _take_run(r, stack, finished, runs)
            if taken is not None:
                run, finished = taken
                yield run
                continue  # (the next run is empty: what stopped this one is read below, one step)
            dir_path, last = stack[-1]
            entry = r.entry_head(closing=finished)
            if entry is not None:  # the usual case, in one step
                name, name_at = entry
                _check_name(r, name, name_at, last)
                path = _next_entry(stack, name)
                break
            named = _entry_or_end(r, finished, last)
            if named is None:
                stack.pop()
                yield NarDirectoryEnd(dir_path)
                finished = True
                continue
            path = _next_entry(stack, named)
            break


def _entry_or_end(r: _Reader, finished: bool, last: bytes | None) -> bytes | None:
    """What follows a node in a directory, token by token (the buffer does not hold it all, or
    it is not the usual sequence): [``)``] then the directory's ``)`` (None) or an entry's head
    up to its node's ``type`` (the entry's name, checked)."""
    if finished:
        r.expect(b")")  # closes the entry that held the finished node
    at = r.offset
    token = r.string(_TOKEN_MAX, "token")
    if token == b")":
        return None
    if token != b"entry":
        raise r.fail(f"expected 'entry' or ')', found {token[:32]!r}", at)
    r.expect(b"(")
    r.expect(b"name")
    name_at = r.offset
    name = r.string(_NAME_MAX, "string")
    _check_name(r, name, name_at, last)
    r.expect(b"node")
    r.expect(b"(")
    r.expect(b"type")
    return name


def _take_run(r: _Reader, stack: list[list], finished: bool, runs: tuple[Callable[..., tuple | None], int] | None) -> tuple[NarRun, bool] | None:
    """As many whole, well-formed entries as the buffer holds, read in C: the run and whether
    the node before the reader's new position is finished; None when none was taken."""
    if runs is None:
        return None
    scan, digest_max = runs
    run = scan(r.buf, r.pos, stack, finished, MAX_DEPTH, digest_max, blake3.blake3)
    if run is None:
        return None
    r.pos = run[0]
    return NarRun(*run[2:]), run[1]


def _check_name(r: _Reader, name: bytes, name_at: int, last: bytes | None) -> None:
    try:
        validate_name(name)
    except InvalidNodeError as err:
        raise r.fail(str(err), name_at) from None
    if last is not None and name <= last:
        raise r.fail("NAR directory is not sorted (or has a duplicate entry)", name_at)


def _next_entry(stack: list[list], name: bytes) -> bytes:
    """The path of the open directory's entry ``name``, now its last."""
    top = stack[-1]
    top[1] = name
    dir_path = top[0]
    return dir_path + b"/" + name if dir_path else name
