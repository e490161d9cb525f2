"""Scan a directory tree into castore's terms: directories, regular files and symlinks.

Symlinks are recorded (their target), never followed, so a symlink loop is just a symlink;
a root that is a symlink is a symlink node, as ``nix-store --dump`` writes it (unless the
caller asks to follow it). Anything
castore cannot hold (FIFOs, sockets, devices) and anything unreadable is skipped and listed.
"""

from __future__ import annotations

import errno
import importlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from storelab.castore import InvalidNodeError, validate_target
from storelab.errors import InputError, InputNotFoundError

__all__ = ["TreeEntry", "Skipped", "Listing", "SmallReads", "Tree", "open_tree", "scan_tree", "list_directory", "describe_os_error"]

Kind = Literal["file", "directory", "symlink"]


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One path of the tree, as found by the scan."""

    path: bytes
    """Path relative to the root, ``/``-separated; ``b""`` for the root itself."""
    kind: Kind
    size: int = 0
    """File length (files only)."""
    executable: bool = False
    """Owner-execute bit (files only)."""
    target: bytes | None = None
    """Symlink target (symlinks only)."""
    parent: int = -1
    """Index of the parent directory's entry; -1 for the root."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path left out of the snapshot, and why."""

    path: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Listing:
    """One directory read by the scan: its children, and which of them are files."""

    directory: int | None
    """Index of the directory's entry (None for a single-file tree)."""
    children: list[int]
    """Indices of every child entry kept, in name order."""
    files: list[int]
    """The children that are regular files, to be read."""
    read: list[int] = field(default_factory=list)
    """The children that are regular files read and hashed while listing (:class:`SmallReads`)."""
    digests: bytes = b""
    """The digests of the files in ``read``, 32 bytes each, in their order."""


@dataclass(frozen=True, slots=True)
class SmallReads:
    """Small files to read and hash while a directory is listed: one path lookup per file
    where listing it and then reading it by its full path made two (the compiled lister
    only; a directory listed in Python reads none).

    >>> import blake3, tempfile, pathlib
    >>> top = pathlib.Path(tempfile.mkdtemp()); _ = (top / "a").write_bytes(b"hi"); _ = (top / "b").write_bytes(b"x" * 9)
    >>> tree = open_tree(top)
    >>> listing = list_directory(tree, tree.root_bytes, 0, [], SmallReads(4, memoryview(bytearray(5)), blake3.blake3), budget=1 << 20)
    >>> listing.read, listing.files, listing.digests == blake3.blake3(b"hi").digest()
    ([1], [2], True)
    """

    limit: int
    """Files of at most this many bytes are read whole…"""
    buffer: memoryview
    """…into this (writable, longer than ``limit``)…"""
    hash_type: Callable[[memoryview], Any]
    """…and hashed with ``hash_type(view).digest()`` (32 bytes)."""


@dataclass(slots=True)
class Tree:
    """The scan's result: entries in pre-order (every directory before its contents)."""

    root: Path
    entries: list[TreeEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    root_bytes: bytes = b""
    """The root as bytes (filled in by :func:`open_tree`)."""

    def file_indices(self) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e.kind == "file"]

    def walk(self) -> Iterator[Listing]:
        """Scan below the root, yielding one :class:`Listing` per directory as it is read.

        A single-file tree yields one listing holding just that file. Entries stay in
        pre-order as they are added, and each directory's children in name order.
        """
        if self.entries and self.entries[0].kind == "file":
            yield Listing(None, [], [0])
            return
        if self.entries and self.entries[0].kind == "symlink":
            return  # nothing below a symlink
        yield from _scan_directory(self, os.fsencode(self.root))

    def absolute(self, entry: TreeEntry) -> bytes:
        root = self.root_bytes or os.fsencode(self.root)
        return root + b"/" + entry.path if entry.path else root


def describe_os_error(err: OSError) -> str:
    """A short reason: ``permission denied``, ``symlink loop``, …"""
    if err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    return (err.strerror or str(err)).lower()


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "unsupported file type"


def open_tree(root: str | os.PathLike[str], follow_root: bool = False) -> Tree:
    """Check the root and return a :class:`Tree` holding only it; :meth:`Tree.walk` does the rest.

    A root that is a symlink is a tree of one symlink node, as Nix dumps it; with
    ``follow_root`` the tree is what it points to. Raises :class:`InputError` when the root
    itself cannot be used (problems below the root become :class:`Skipped` items during the walk).

    >>> import tempfile, os, pathlib
    >>> top = pathlib.Path(tempfile.mkdtemp()); os.symlink("elsewhere", top / "link")
    >>> [(e.kind, e.target) for e in open_tree(top / "link").entries]
    [('symlink', b'elsewhere')]
    """
    root_path = Path(root)
    if not follow_root and os.path.islink(root_path):
        try:
            target = os.readlink(os.fsencode(root_path))
            validate_target(target)
        except OSError as err:
            raise InputError(f"{root_path}: {describe_os_error(err)}") from None
        except InvalidNodeError as err:
            raise InputError(f"{root_path}: {err}") from None
        tree = Tree(root_path, root_bytes=os.fsencode(root_path))
        tree.entries.append(TreeEntry(b"", "symlink", target=target))
        return tree
    try:
        st = os.stat(root_path)
    except FileNotFoundError:
        dangling = os.path.islink(root_path)
        raise InputNotFoundError(
            f"{root_path}: {'dangling symlink' if dangling else 'no such file or directory'}"
        ) from None
    except OSError as err:
        raise InputError(f"{root_path}: {describe_os_error(err)}") from None
    if follow_root:  # the files are opened without following symlinks: open them where they are
        root_path = Path(os.path.realpath(root_path))
    tree = Tree(root_path, root_bytes=os.fsencode(root_path))
    if stat.S_ISREG(st.st_mode):
        tree.entries.append(TreeEntry(b"", "file", st.st_size, bool(st.st_mode & stat.S_IXUSR)))
        return tree
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{root_path}: is a {_special_kind(st.st_mode)}, not a directory or file")
    try:
        os.listdir(root_path)
    except OSError as err:
        raise InputError(f"{root_path}: {describe_os_error(err)}") from None
    tree.entries.append(TreeEntry(b"", "directory"))
    return tree


def scan_tree(root: str | os.PathLike[str]) -> Tree:
    """Walk ``root`` (a directory, or a single file) completely, without following inner symlinks.

    >>> import tempfile, pathlib
    >>> top = pathlib.Path(tempfile.mkdtemp()); (top / "a").write_bytes(b"x")
    1
    >>> [(e.path, e.kind) for e in scan_tree(top).entries]
    [(b'', 'directory'), (b'a', 'file')]
    """
    tree = open_tree(root)
    for _ in tree.walk():
        pass
    return tree


_by_name = attrgetter("name")


def _scan_directory(tree: Tree, root: bytes) -> Iterator[Listing]:
    stack: list[int] = [0]
    while stack:
        yield list_directory(tree, root, stack.pop(), stack)


def list_directory(tree: Tree, root: bytes, dir_index: int, stack: list[int], reads: SmallReads | None = None, budget: int = 0) -> Listing:
    """Read directory entry ``dir_index`` of ``tree`` (whose root is at ``root``): its
    children appended to the entries, its subdirectories pushed onto ``stack`` (the first
    by name on top), what could not be kept added to the tree's skipped paths. With
    ``reads``, small files are read and hashed on the way, in name order, while fewer than
    ``budget`` bytes have been read (:attr:`Listing.read`); a file that cannot be read as
    checked is left in :attr:`Listing.files`, for its reader to say why."""
    entries, skipped = tree.entries, tree.skipped
    rel = entries[dir_index].path
    abs_dir = root + b"/" + rel if rel else root
    listed = None
    if _listing is not None:
        if reads is None or budget <= 0:
            listed = _listing.list_directory(abs_dir)
        else:
            listed = _listing.list_directory(abs_dir, reads.limit, reads.buffer, reads.hash_type, budget)
    if listed is not None:  # listed in C: nothing in it to skip or report
        return _list_compiled(entries, dir_index, rel, listed, stack)
    children: list[os.DirEntry[Any]]
    try:
        if len(abs_dir) <= _PATH_PIECE:
            # listed by its bytes path: names come as bytes, nothing to encode or open first
            with os.scandir(abs_dir) as it:
                children = sorted(it, key=_by_name)
            return _list_children(tree, None, dir_index, rel, children, stack)
        # through a descriptor: a tree deeper than PATH_MAX is listed like any other
        fd = open_deep(abs_dir, _DIRECTORY_FLAGS)
        try:
            with os.scandir(fd) as it:  # names come as str (surrogate-escaped): sorted by their bytes
                children = sorted(it, key=_by_encoded_name)
            return _list_children(tree, fd, dir_index, rel, children, stack)
        finally:
            os.close(fd)
    except OSError as err:
        # Already listed in its parent: keep it as an empty directory, and say so.
        skipped.append(Skipped(rel, f"{describe_os_error(err)}; recorded as an empty directory"))
        return Listing(dir_index, [], [])


def _entry_setters() -> tuple[Callable[[TreeEntry, Any], None], ...]:
    names = ("path", "kind", "size", "executable", "target", "parent")
    assert tuple(f.name for f in fields(TreeEntry)) == names, "_new_entry sets every field of TreeEntry"
    return tuple(vars(TreeEntry)[name].__set__ for name in names)


_set_path, _set_kind, _set_size, _set_executable, _set_target, _set_parent = _entry_setters()


def _new_entry(path: bytes, kind: Kind, size: int, executable: bool, target: bytes | None, parent: int) -> TreeEntry:
    """``TreeEntry(path, kind, size, executable, target, parent)`` without the frozen
    dataclass's ``__init__``, which sets each field through ``object.__setattr__``: a third of
    the time, once per path of every tree listed in C.

    >>> _new_entry(b"a/b", "file", 3, True, None, 0) == TreeEntry(b"a/b", "file", 3, True, None, 0)
    True
    """
    entry = _new_object(TreeEntry)
    _set_path(entry, path)
    _set_kind(entry, kind)
    _set_size(entry, size)
    _set_executable(entry, executable)
    _set_target(entry, target)
    _set_parent(entry, parent)
    return entry


_new_object = object.__new__


def _list_compiled(entries: list[TreeEntry], dir_index: int, rel: bytes, listed: tuple, stack: list[int]) -> Listing:
    """The listing the C lister made (``_listing.c``): its entries appended, its
    subdirectories pushed onto ``stack``, as :func:`_list_children` does."""
    names, kinds, sizes, executables, targets, digests = listed
    prefix = rel + b"/" if rel else b""
    first_child = len(entries)
    files: list[int] = []
    read: list[int] = []
    subdirs: list[int] = []
    link_targets = iter(targets)
    for index, (name, kind, size, executable) in enumerate(zip(names, kinds, sizes, executables), first_child):
        if kind == _READ:
            read.append(index)
            entries.append(_new_entry(prefix + name, "file", size, executable == 1, None, dir_index))
        elif kind == _FILE:
            files.append(index)
            entries.append(_new_entry(prefix + name, "file", size, executable == 1, None, dir_index))
        elif kind == _DIRECTORY:
            subdirs.append(index)
            entries.append(_new_entry(prefix + name, "directory", 0, False, None, dir_index))
        else:
            entries.append(_new_entry(prefix + name, "symlink", 0, False, next(link_targets), dir_index))
    stack.extend(reversed(subdirs))
    return Listing(dir_index, list(range(first_child, len(entries))), files, read, digests)


_FILE, _READ, _DIRECTORY = b"frd"


def _compiled_lister() -> ModuleType | None:
    """The directory lister in C (``_listing.c``); None in a checkout where it is not built
    (every directory is then listed in Python)."""
    try:
        return importlib.import_module("storelab.ingest._listing")
    except ImportError:
        return None


_listing = _compiled_lister()


def _by_encoded_name(entry: os.DirEntry[str]) -> bytes:
    return os.fsencode(entry.name)


def _list_children(
    tree: Tree, fd: int | None, dir_index: int, rel: bytes, children: list[os.DirEntry[Any]], stack: list[int]
) -> Listing:
    """The listing of one directory (open as ``fd``, or listed by its bytes path when ``fd`` is
    None): its entries appended, its subdirectories pushed onto ``stack``."""
    entries, skipped = tree.entries, tree.skipped
    subdirs: list[int] = []
    files: list[int] = []
    first_child = len(entries)
    prefix = rel + b"/" if rel else b""
    for child in children:
        name = child.name if fd is None else os.fsencode(child.name)
        path = prefix + name
        # where the entry is for the system calls below: by descriptor, or by its own path
        at, where = (None, child.path) if fd is None else (fd, child.name)
        # No name check: a directory listing never holds "", ".", "..", "/" or NUL, and
        # Linux names are at most 255 bytes — castore's rules hold by construction.
        # The listing's file types (d_type) say what each entry is; only regular files
        # need a stat of their own, for their size and execute bit.
        try:
            if child.is_file(follow_symlinks=False):
                st = child.stat(follow_symlinks=False)
                files.append(len(entries))
                entries.append(TreeEntry(path, "file", st.st_size, bool(st.st_mode & stat.S_IXUSR), parent=dir_index))
                continue
            is_dir = child.is_dir(follow_symlinks=False)
            is_link = not is_dir and child.is_symlink()
            mode = 0 if is_dir or is_link else child.stat(follow_symlinks=False).st_mode
        except OSError as err:
            skipped.append(Skipped(path, describe_os_error(err)))
            continue
        if is_dir:
            if not os.access(where, os.R_OK | os.X_OK, dir_fd=at, follow_symlinks=False):
                skipped.append(Skipped(path, "permission denied"))
                continue
            subdirs.append(len(entries))
            entries.append(TreeEntry(path, "directory", parent=dir_index))
        elif is_link:
            try:
                target = os.fsencode(os.readlink(where, dir_fd=at))
                validate_target(target)
            except OSError as err:
                skipped.append(Skipped(path, describe_os_error(err)))
                continue
            except InvalidNodeError as err:
                skipped.append(Skipped(path, str(err)))
                continue
            entries.append(TreeEntry(path, "symlink", target=target, parent=dir_index))
        else:
            skipped.append(Skipped(path, f"is a {_special_kind(mode)}; castore holds only files, directories and symlinks"))
    # pre-order, depth first: push in reverse so the first subdirectory is scanned next
    stack.extend(reversed(subdirs))
    return Listing(dir_index, list(range(first_child, len(entries))), files)


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_PIECE = 2048
"""Paths longer than this are opened piece by piece (``openat``), each piece shorter than PATH_MAX."""


def open_deep(path: bytes, flags: int) -> int:
    """``os.open(path, flags)`` for a path of any length: past PATH_MAX (4096 bytes on Linux)
    the directories on the way are opened a few components at a time, each relative to the
    last, and the final name relative to its directory.

    >>> fd = open_deep(b"/" + b"/".join([b"."] * 3000) + b"/tmp", _DIRECTORY_FLAGS)  # 6,000 bytes long
    >>> os.path.samestat(os.fstat(fd), os.stat("/tmp")); os.close(fd)
    True
    """
    if len(path) <= _PATH_PIECE:
        return os.open(path, flags)
    head, _, last = path.rpartition(b"/")
    parts = head.split(b"/")
    directory = os.open(b"/" if path.startswith(b"/") else b".", _DIRECTORY_FLAGS)
    try:
        piece: list[bytes] = []
        for part in parts:
            if not part:
                continue
            if piece and sum(len(p) + 1 for p in piece) + len(part) > _PATH_PIECE:
                directory = _open_at(directory, b"/".join(piece))
                piece = []
            piece.append(part)
        if piece:
            directory = _open_at(directory, b"/".join(piece))
        return os.open(last, flags, dir_fd=directory)
    finally:
        os.close(directory)


def _open_at(directory: int, relative: bytes) -> int:
    """Open ``relative`` below the open ``directory`` as a directory, closing ``directory``."""
    try:
        return os.open(relative, _DIRECTORY_FLAGS, dir_fd=directory)
    finally:
        os.close(directory)
