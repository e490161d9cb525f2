"""The compiled directory lister (storelab/ingest/_listing.c) is only a faster road: a tree
scanned through it gives the same entries, in the same order, as the Python listing, and every
directory holding something the Python listing skips or reports is left to it. The small files
it reads on the way are read as the small-file reader reads them: whole, checked, hashed by
blake3, or left unread."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storelab.ingest.tree as tree_module
from storelab.ingest.tree import SmallReads, list_directory, open_tree, scan_tree
from storelab.testing.trees import TreeSpec, build_tree, trees
from tests.test_bad_input import unprivileged

_listing = tree_module._listing


def _scan_both(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple]:
    compiled = scan_tree(root)
    with monkeypatch.context() as m:
        m.setattr(tree_module, "_listing", None)
        python = scan_tree(root)
    return (compiled.entries, compiled.skipped), (python.entries, python.skipped)


def test_the_compiled_lister_is_built() -> None:
    """`make test` installs storelab with its extensions: a suite that silently ran the
    Python road would test less than it says."""
    assert _listing is not None


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees)
def test_a_tree_scans_the_same_on_both_roads(spec: TreeSpec, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random trees (names of any bytes, executables, symlinks, empty directories): the same
    entries, in the same order, with the same parents, sizes, bits and targets."""
    root = tmp_path_factory.mktemp("t")
    build_tree(root, spec)
    compiled, python = _scan_both(root, monkeypatch)
    assert compiled == python


def test_names_sort_by_their_bytes(tmp_path: Path) -> None:
    names = [b"a", b"a.b", b"ab", b"a\xff", b"B", b"\xc3\xa9", b"a-", b"aa" * 60]
    for name in names:
        (Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + name))).write_bytes(name)
    listed = _listing.list_directory(os.fsencode(tmp_path))
    assert listed is not None
    assert listed[0] == sorted(names)
    assert listed[1] == b"f" * len(names)
    assert listed[2] == [len(n) for n in sorted(names)]


def test_what_the_lister_reports(tmp_path: Path) -> None:
    (tmp_path / "run").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "run").chmod(0o755)
    (tmp_path / "d").mkdir()
    os.symlink("x" * 4095, tmp_path / "long")  # the longest target castore holds
    os.symlink("nowhere", tmp_path / "dangling")
    names, kinds, sizes, executables, targets, digests = _listing.list_directory(os.fsencode(tmp_path))
    assert names == [b"d", b"dangling", b"long", b"run"]
    assert kinds == b"dllf" and sizes == [0, 0, 0, 10] and executables == b"\0\0\0\1"
    assert targets == [b"nowhere", b"x" * 4095] and digests == b""


@pytest.mark.parametrize("case", ["fifo", "socket", "missing", "a file", "NUL in the path", "path too long"])
def test_what_the_lister_leaves_to_python(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory holding anything castore cannot hold, or that cannot be listed at all, is not
    listed in C; the Python listing says what it skipped, the same on both roads."""
    (tmp_path / "ok").write_bytes(b"fine")
    path = os.fsencode(tmp_path)
    if case == "fifo":
        os.mkfifo(tmp_path / "pipe")
    elif case == "socket":
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(tmp_path / "sock"))
    elif case == "missing":
        path += b"/gone"
    elif case == "a file":
        path += b"/ok"
    elif case == "NUL in the path":
        path += b"\0/ok"
    else:
        path = b"/" + b"/".join([b"."] * 1100) + path
    assert _listing.list_directory(path) is None
    if case in ("fifo", "socket"):
        compiled, python = _scan_both(tmp_path, monkeypatch)
        assert compiled == python and len(python[1]) == 1


def test_a_directory_root_may_not_enter_is_left_to_python(tmp_path: Path) -> None:
    """Without root's power over permissions (or as a user), a subdirectory it may not enter
    makes its parent's listing the Python road's, which skips it with the reason."""
    prefix = unprivileged()
    (tmp_path / "locked").mkdir()
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "locked", 0)
    try:
        script = (
            "import sys; from storelab.ingest import _listing; "
            "print(_listing.list_directory(sys.argv[1].encode()) is None, _listing.list_directory(sys.argv[2].encode()) is not None)"
        )
        out = subprocess.run([*prefix, sys.executable, "-c", script, str(tmp_path), str(tmp_path / "open")], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["True", "True"]
    finally:
        os.chmod(tmp_path / "locked", 0o755)


# Reading small files while listing ---------------------------------------------------------

_LIMIT = 64


def _reads() -> SmallReads:
    return SmallReads(_LIMIT, memoryview(bytearray(_LIMIT + 1)), blake3.blake3)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees, budget=st.integers(1, 400))
def test_reading_while_listing_changes_nothing_but_who_reads(
    spec: TreeSpec, budget: int, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random trees, any budget: the same entries as the Python listing; every file read is
    small, read in name order while the budget lasted, and its digest is its bytes' BLAKE3."""
    root = tmp_path_factory.mktemp("t")
    build_tree(root, spec)
    tree = open_tree(root)
    listings, stack = [], [0]
    while stack:
        listings.append(list_directory(tree, tree.root_bytes, stack.pop(), stack, _reads(), budget))
    with monkeypatch.context() as m:
        m.setattr(tree_module, "_listing", None)
        python = scan_tree(root)
    assert (tree.entries, tree.skipped) == (python.entries, python.skipped)
    for listing in listings:
        files = [i for i in listing.children if tree.entries[i].kind == "file"]
        assert sorted(listing.read + listing.files) == files
        assert len(listing.digests) == 32 * len(listing.read)
        spent = 0
        for i in files:
            entry = tree.entries[i]
            if i in listing.read:
                assert entry.size <= _LIMIT and spent < budget
                k = listing.read.index(i)
                assert listing.digests[32 * k : 32 * k + 32] == blake3.blake3((root / os.fsdecode(entry.path)).read_bytes()).digest()
                spent += entry.size
            else:  # too large, or the budget was spent
                assert entry.size > _LIMIT or spent >= budget


def test_the_budget_and_the_limit(tmp_path: Path) -> None:
    for name, size in [(b"a", 10), (b"b", _LIMIT + 1), (b"c", _LIMIT), (b"d", 1), (b"e", 0)]:
        (tmp_path / os.fsdecode(name)).write_bytes(name * size)
    listed = _listing.list_directory(os.fsencode(tmp_path), _LIMIT, bytearray(_LIMIT + 1), blake3.blake3, 20)
    assert listed is not None
    names, kinds, sizes, _, _, digests = listed
    # a: 10 bytes read (10 left), b: too large, c: read whole though it crosses the budget, then none
    assert kinds == b"rfrff"
    assert digests == blake3.blake3(b"a" * 10).digest() + blake3.blake3(b"c" * _LIMIT).digest()
    assert _listing.list_directory(os.fsencode(tmp_path), _LIMIT, bytearray(_LIMIT + 1), blake3.blake3, 0)[1] == b"fffff"


def test_an_empty_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    listed = _listing.list_directory(os.fsencode(tmp_path), _LIMIT, bytearray(_LIMIT + 1), blake3.blake3, 1)
    assert listed[1] == b"r" and listed[5] == blake3.blake3(b"").digest()


@pytest.mark.parametrize("bad", ["short buffer", "no hash type", "hash type fails", "digest not 32 bytes"])
def test_reading_needs_what_it_reads_with(bad: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    path = os.fsencode(tmp_path)
    if bad == "short buffer":
        with pytest.raises(ValueError, match="longer than limit"):
            _listing.list_directory(path, _LIMIT, bytearray(_LIMIT), blake3.blake3, 100)
    elif bad == "no hash type":
        with pytest.raises(ValueError, match="hash type"):
            _listing.list_directory(path, _LIMIT, bytearray(_LIMIT + 1), None, 100)
    elif bad == "hash type fails":
        with pytest.raises(ZeroDivisionError):
            _listing.list_directory(path, _LIMIT, bytearray(_LIMIT + 1), lambda view: 1 / 0, 100)
    else:
        with pytest.raises(TypeError, match="32 bytes"):
            _listing.list_directory(path, _LIMIT, bytearray(_LIMIT + 1), hashlib.md5, 100)


def test_a_file_it_may_not_read_is_listed_unread(tmp_path: Path) -> None:
    """Without root's power over permissions, an unreadable file is listed by its lstat, not
    read: its reader says why it cannot be read (the Python road's 'permission denied')."""
    prefix = unprivileged()
    (tmp_path / "locked").write_bytes(b"secret")
    (tmp_path / "open").write_bytes(b"fine")
    os.chmod(tmp_path / "locked", 0)
    script = (
        "import sys, blake3; from storelab.ingest import _listing; "
        "listed = _listing.list_directory(sys.argv[1].encode(), 64, bytearray(65), blake3.blake3, 100); "
        "print(listed[0], listed[1], listed[2])"
    )
    out = subprocess.run([*prefix, sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[b'locked', b'open'] b'fr' [6, 4]"
