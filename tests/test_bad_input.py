"""Bad input: a clear one-line message naming the path, no traceback, and no half-written
dataset — whatever was committed before stays valid."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storelab.analysis import dedup_summary
from storelab.cli import main
from storelab.errors import InputError, OutputError
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.blobs import BlobHasher
from storelab.tables import Dataset
from tests.fixtures import REPO
from tests.helpers import build_tree, session_processes, snapshot_rows, wait_until_gone


def run_cli(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "storelab.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], stderr


def unprivileged() -> tuple[str, ...]:
    """Run a command without root's power to read anything (so chmod 000 means unreadable)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and util-linux's setpriv is absent: cannot make a file unreadable to root")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


@pytest.fixture
def dataset_with_one_snapshot(tmp_path: Path) -> Path:
    build_tree(tmp_path / "first", {b"keep": b"committed before"})
    ingest_dir(tmp_path / "first", tmp_path / "ds", "first", IngestOptions(workers=0))
    return tmp_path / "ds"


def assert_only_first_snapshot(dataset: Path) -> None:
    ds = Dataset.open(dataset)
    assert len(ds.snapshot_ids()) == 1
    assert [r["label"] for r in snapshot_rows(dataset, "snapshots")] == ["first"]
    assert not (dataset / "_staging").exists()
    assert ds.problems() == []
    for table in ("nodes", "blobs", "chunks", "directories", "snapshots"):
        assert set(ds.read_table(table).column("snapshot_id").to_pylist()) == set(ds.snapshot_ids()), table
    assert dedup_summary(dataset).loc["blob", "logical_bytes"] == len(b"committed before")


def test_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "ds")])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, str(tmp_path / "nope"), "no such file")
    assert not (tmp_path / "ds").exists()


def test_root_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    code = main(["ingest-dir", str(tmp_path / "loop_a"), "--out", str(tmp_path / "ds"), "--follow-root"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "loop_a", "symlink loop")
    assert main(["ingest-dir", str(tmp_path / "loop_a"), "--out", str(tmp_path / "ds"), "-q"]) == 0  # unfollowed: a symlink node


def test_symlink_loop_inside_the_tree_is_just_a_symlink(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"self": ("link", b"self"), b"a": ("link", b"b"), b"b": ("link", b"a")})
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(workers=0))
    assert result.symlinks == 3 and result.skipped == ()


def test_special_files_are_skipped_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"ok": b"data"})
    os.mkfifo(tmp_path / "t" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "t" / "sock"))
    expected = {b"fifo": "FIFO", b"sock": "socket"}
    if os.geteuid() == 0:
        os.mknod(tmp_path / "t" / "null", 0o600 | 0o020000, os.makedev(1, 3))
        expected[b"null"] = "character device"
    try:
        code = main(["ingest-dir", str(tmp_path / "t"), "--out", str(tmp_path / "ds"), "-q"])
    finally:
        sock.close()
    assert code == 0
    err = capsys.readouterr().err
    for name, kind in expected.items():
        assert f"{tmp_path / 't' / name.decode()}: is a {kind}" in err
    [snap] = snapshot_rows(tmp_path / "ds", "snapshots")
    assert snap["skipped_count"] == len(expected)
    assert {s["path"] for s in snap["skipped"]} == set(expected)
    assert snap["file_count"] == 1


def test_special_file_with_strict_fails_and_writes_nothing(dataset_with_one_snapshot: Path, tmp_path: Path, capsys) -> None:
    build_tree(tmp_path / "t", {b"ok": b"data"})
    os.mkfifo(tmp_path / "t" / "fifo")
    code = main(["ingest-dir", str(tmp_path / "t"), "--out", str(dataset_with_one_snapshot), "--strict"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "fifo", "FIFO")
    assert_only_first_snapshot(dataset_with_one_snapshot)


def test_unreadable_file_and_directory_are_skipped(tmp_path: Path) -> None:
    prefix = unprivileged()
    build_tree(tmp_path / "t", {b"ok": b"fine", b"secret": b"no", b"locked": {b"inner": b"x"}})
    os.chmod(tmp_path / "t" / "secret", 0)
    os.chmod(tmp_path / "t" / "locked", 0)
    try:
        done = run_cli("ingest-dir", str(tmp_path / "t"), "--out", str(tmp_path / "ds"), "-j", "0", prefix=prefix)
    finally:
        os.chmod(tmp_path / "t" / "locked", 0o755)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"skipped {tmp_path / 't' / 'secret'}: permission denied" in done.stderr
    assert f"skipped {tmp_path / 't' / 'locked'}: permission denied" in done.stderr
    [snap] = snapshot_rows(tmp_path / "ds", "snapshots")
    assert {s["path"] for s in snap["skipped"]} == {b"secret", b"locked"}
    assert {r["path"] for r in snapshot_rows(tmp_path / "ds", "nodes")} == {b"", b"ok"}


def test_unreadable_file_with_strict(dataset_with_one_snapshot: Path, tmp_path: Path) -> None:
    prefix = unprivileged()
    build_tree(tmp_path / "t", {b"ok": b"fine", b"secret": b"no"})
    os.chmod(tmp_path / "t" / "secret", 0)
    done = run_cli("ingest-dir", str(tmp_path / "t"), "--out", str(dataset_with_one_snapshot), "--strict", prefix=prefix)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "secret", "permission denied")
    assert_only_first_snapshot(dataset_with_one_snapshot)


def test_unreadable_root(tmp_path: Path) -> None:
    prefix = unprivileged()
    build_tree(tmp_path / "t", {b"a": b"x"})
    os.chmod(tmp_path / "t", 0)
    try:
        done = run_cli("ingest-dir", str(tmp_path / "t"), "--out", str(tmp_path / "ds"), prefix=prefix)
    finally:
        os.chmod(tmp_path / "t", 0o755)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, str(tmp_path / "t"), "permission denied")


def test_file_changing_while_read_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "t" / "growing"
    build_tree(tmp_path / "t", {b"growing": os.urandom(3 << 20), b"steady": b"s"})
    real_cut = BlobHasher._cut
    appended = []

    def cut_while_someone_writes(self, view, eof, whole=None):
        if not appended:
            with open(big, "ab") as f:
                f.write(b"more")
            appended.append(True)
        return real_cut(self, view, eof, whole)

    monkeypatch.setattr(BlobHasher, "_cut", cut_while_someone_writes)
    warnings: list[str] = []
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(workers=0, warn=warnings.append))
    assert appended
    assert [(s.path, s.reason) for s in result.skipped] == [(b"growing", "changed while being read")]
    assert warnings == [f"skipped {big}: changed while being read"]
    assert result.files == 1


def test_file_vanishing_after_scan_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storelab.ingest.subtrees as module

    build_tree(tmp_path / "t", {b"gone": b"soon", b"stays": b"here"})
    real_list = module.list_directory

    def list_then_delete(tree, root, index, stack, reads=None, budget=0):
        listing = real_list(tree, root, index, stack)  # the scan has seen it, not read it (no budget left)...
        os.unlink(tmp_path / "t" / "gone")  # ...then it goes before it is read
        return listing

    monkeypatch.setattr(module, "list_directory", list_then_delete)
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(workers=0, warn=lambda m: None))
    assert [(s.path, s.reason) for s in result.skipped] == [(b"gone", "no such file or directory")]


class _FullDisk:
    """A file that accepts ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path: Path, room: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 — closed by close(), as the file it stands in for
        self._room = room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.mark.parametrize("room", [0, 2000])
def test_full_disk_injected(dataset_with_one_snapshot: Path, tmp_path: Path, monkeypatch, capsys, room: int) -> None:
    import storelab.tables.rows as rows_module

    monkeypatch.setattr(rows_module, "_open_sink", lambda path: _FullDisk(path, room))
    monkeypatch.setattr(rows_module, "ROW_GROUP_ROWS", 64)  # the rows spill to the staging file, which fills the disk
    build_tree(tmp_path / "t", {f"f{i}".encode(): os.urandom(100) for i in range(200)})
    code = main(["ingest-dir", str(tmp_path / "t"), "--out", str(dataset_with_one_snapshot), "-j", "0"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "no space left on device", str(dataset_with_one_snapshot))
    monkeypatch.undo()
    assert_only_first_snapshot(dataset_with_one_snapshot)


@pytest.mark.slow
def test_full_disk_real_tmpfs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        build_tree(tmp_path / "first", {b"keep": b"committed before"})
        ingest_dir(tmp_path / "first", mount / "ds", "first", IngestOptions(workers=0))
        # ~30k files with random names and contents: tables far larger than 1 MiB
        many = {os.urandom(16).hex().encode(): os.urandom(8) for _ in range(30_000)}
        build_tree(tmp_path / "many", many)
        done = run_cli("ingest-dir", str(tmp_path / "many"), "--out", str(mount / "ds"))
        assert done.returncode == 1, done.stderr
        assert_one_line_error(done.stderr, "no space left on device", str(mount / "ds"))
        assert_only_first_snapshot(mount / "ds")
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.mark.slow
def test_ctrl_c_halfway_commits_nothing(dataset_with_one_snapshot: Path, tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {f"f{i}".encode(): os.urandom(50_000) for i in range(400)})
    # Slow the run down where the parent process reports progress, so the signal lands mid-way.
    script = (
        "import sys, time\n"
        "import storelab.ingest.progress as p\n"
        "real = p.ByteProgress.advance\n"
        "def slow(self, files, nbytes):\n"
        "    print('progress', flush=True); time.sleep(0.2); real(self, files, nbytes)\n"
        "p.ByteProgress.advance = slow\n"
        "import storelab.ingest.hashing as h, storelab.ingest.subtrees as s\n"
        "h.BATCH_FILES, s.TASK_BYTES = 10, 1 << 16\n"
        "from storelab.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "ingest-dir", str(tmp_path / "t"), "--out", str(dataset_with_one_snapshot), "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "progress"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group gets SIGINT
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert_one_line_error(stderr, "interrupted", "nothing was added")
    assert_only_first_snapshot(dataset_with_one_snapshot)
    time.sleep(0.5)
    group = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)], capture_output=True, text=True)
    alive = [line for line in group.stdout.splitlines() if line.split()[1][0] != "Z"]  # zombies have exited
    assert alive == [], "worker processes outlived the interrupted ingest"


def test_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    build_tree(tmp_path / "t", {b"a": b"x"})
    code = main(["ingest-dir", str(tmp_path / "t"), "--out", str(tmp_path / "notes")])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "not empty and not a storelab dataset")
    assert os.listdir(tmp_path / "notes") == ["todo.txt"]


def test_leftovers_of_a_killed_writer_are_cleaned(dataset_with_one_snapshot: Path, tmp_path: Path) -> None:
    """A writer killed before its commit leaves its staging folder (removed by the next write)
    and perhaps data files no version names (removed by compaction once older than ORPHAN_AGE)."""
    from storelab.tables.dataset import ORPHAN_AGE

    ds = Dataset.open(dataset_with_one_snapshot)
    dead = dataset_with_one_snapshot / "_staging" / "20200101T000000-deadbeef"
    dead.mkdir(parents=True)
    (dead / "owner").write_text(f"{socket.gethostname()} 999999999\n")
    folder = dataset_with_one_snapshot / "data" / "main" / "nodes"
    folder.mkdir(parents=True, exist_ok=True)
    orphan = folder / "ducklake-orphan-of-a-dead-writer.parquet"
    pq.write_table(ds.read_table("nodes"), orphan)
    old = time.time() - ORPHAN_AGE.total_seconds() - 60
    os.utime(orphan, (old, old))
    assert len(ds.read_table("nodes")) == 2  # the root and its file: readers never see the orphan
    assert ds.remove_dead_staging() == ["20200101T000000-deadbeef"]
    assert ds.compact().deleted == 1 and not orphan.exists()
    assert_only_first_snapshot(dataset_with_one_snapshot)


def test_errors_from_library_are_storelab_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        ingest_dir(tmp_path / "missing", tmp_path / "ds")
    with pytest.raises(FileNotFoundError):  # not-found errors also subclass the builtin
        ingest_dir(tmp_path / "missing", tmp_path / "ds")
    assert issubclass(OutputError, Exception)


@pytest.mark.slow
def test_outputs_never_write_through_a_planted_symlink(tmp_path: Path) -> None:
    """A symlink planted where a temporary would go is never written through: temporaries
    are fresh names made with O_EXCL beside the output (storelab.outputs)."""
    from storelab.nar import dump_path

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    build_tree(tmp_path / "t", {b"a": b"hello", b"d": {b"b": b"x" * 5000}})
    store = f"file://{tmp_path / 'store'}"
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q", "-j", "0", "--store", store, "-l", "t"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    for planted in ("t.nar.partial", ".t.nar.tmp", ".R.html.tmp", "R.html.partial"):
        os.symlink(victim, out / planted)
    assert main(["render-nar", str(tmp_path / "ds"), "t", "--store", store, "-o", str(out / "t.nar")]) == 0
    assert main(["report", str(tmp_path / "ds"), "-o", str(out / "R.html")]) == 0
    assert victim.read_bytes() == b"precious"
    assert (out / "t.nar").read_bytes() == b"".join(dump_path(tmp_path / "t"))
    assert (out / "R.html").read_bytes().startswith(b"<!DOCTYPE html>") or b"<html" in (out / "R.html").read_bytes()[:500]
    assert sorted(p.name for p in out.iterdir()) == sorted(["t.nar", "R.html", "t.nar.partial", ".t.nar.tmp", ".R.html.tmp", "R.html.partial"])


def test_more_bad_options_and_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"a": b"x"})
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--chunker", "fixed", "--avg-chunk-size", "5GiB"]) == 2
    assert_one_line_error(capsys.readouterr().err, "between 1 byte and 64 MiB")
    assert not (tmp_path / "ds").exists()
    (tmp_path / "closure.json").write_bytes(b"\xff\xfe{}")
    assert main(["layers", "plan", str(tmp_path / "closure.json")]) == 1
    assert_one_line_error(capsys.readouterr().err, "closure.json", "not UTF-8")


def test_ctrl_c_while_the_command_loads_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import builtins

    from storelab import launch

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "storelab.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    monkeypatch.setattr(launch.sys, "argv", ["storelab", "stats", "ds"])
    with pytest.raises(SystemExit) as exit_:
        launch.run()
    monkeypatch.undo()
    assert exit_.value.code == 130
    assert_one_line_error(capsys.readouterr().err, "storelab: interrupted")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_ingest_leaves_no_process_and_no_snapshot(tmp_path: Path, how: signal.Signals) -> None:
    """kill -9 (or SIGTERM to the command alone) while workers hash: the fork server, the
    workers and the resource tracker all end within seconds, and the dataset gains nothing."""
    rng = random.Random(7)
    build_tree(tmp_path / "tree", {f"f{i:03}".encode(): rng.randbytes(150_000) for i in range(400)})
    build_tree(tmp_path / "first", {b"a": b"a"})
    assert run_cli("ingest-dir", str(tmp_path / "first"), "-o", str(tmp_path / "ds"), "-q").returncode == 0
    command = subprocess.Popen(
        [sys.executable, "-m", "storelab", "ingest-dir", str(tmp_path / "tree"), "-o", str(tmp_path / "ds"), "-q", "--zstd-level", "19", "-j", "2"],
        cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sid = command.pid
    deadline = time.monotonic() + 60
    while len(session_processes(sid)) < 4 and command.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the command, its fork server, the resource tracker and the workers
    assert command.poll() is None, "the ingest ended before it could be killed: make the tree bigger"
    time.sleep(0.5)  # the workers are hashing
    os.kill(command.pid, how)
    command.wait()
    assert wait_until_gone(sid) == []
    assert [r["label"] for r in snapshot_rows(tmp_path / "ds", "snapshots")] == ["first"]  # readers see what was committed
    assert run_cli("ingest-dir", str(tmp_path / "first"), "-o", str(tmp_path / "ds"), "-q", "-l", "again").returncode == 0
    assert not (tmp_path / "ds" / "_staging").exists()  # the next writer cleared the dead one's staging


@pytest.mark.parametrize("sweep", [False, True])
def test_a_file_truncated_while_hashed_is_skipped_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweep: bool) -> None:
    """The file shrinks after its first window was read: a short read, so the file is skipped
    as changed (a memory map would have died of SIGBUS)."""
    from storelab.chunking import default_spec
    from storelab.ingest import blobs, sweep_dir

    big = random.Random(3).randbytes(3 * blobs.READ_BUFFER if not sweep else blobs.WHOLE_READ + blobs.READ_BUFFER)
    build_tree(tmp_path / "tree", {b"big": big, b"small": b"small"})
    real = blobs._pread_exactly
    calls = []

    def then_truncate(fd: int, into: memoryview, offset: int) -> None:
        real(fd, into, offset)
        if not calls:
            os.truncate(tmp_path / "tree" / "big", 1000)
        calls.append(offset)

    monkeypatch.setattr(blobs, "_pread_exactly", then_truncate)
    warnings: list[str] = []
    options = IngestOptions(workers=0, zstd_level=0, warn=warnings.append)
    if sweep:
        result = sweep_dir(tmp_path / "tree", tmp_path / "ds", [default_spec("fixed", 65536), default_spec()], "t", options)
    else:
        result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", options)
    assert [(s.path, s.reason) for s in result.skipped] == [(b"big", "changed while being read")]
    assert any("big: changed while being read" in w for w in warnings)
    assert result.files == 1


@pytest.mark.slow
def test_a_file_truncated_under_the_workers_is_no_crash(tmp_path: Path) -> None:
    """With worker processes, a file truncated while they read it: exit 0, no 'worker died'."""
    import threading

    path = tmp_path / "tree" / "big"
    build_tree(tmp_path / "tree", {b"big": random.Random(5).randbytes(80_000_000), b"other": b"x"})
    timer = threading.Timer(1.5, lambda: os.truncate(path, 5))  # zstd -19 of random data: seconds per window
    timer.start()
    done = run_cli("ingest-dir", str(tmp_path / "tree"), "-o", str(tmp_path / "ds"), "-j", "2", "-q", "--zstd-level", "19")
    timer.join()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "worker process died" not in done.stderr
    assert "big: changed while being read" in done.stderr  # it was cut mid-read, and skipped


HOSTILE_CLOSURES = {
    "infinity": b'[{"path": "/nix/store/a-a", "narSize": Infinity, "references": []}]',
    "nan": b'[{"path": "/nix/store/a-a", "narSize": NaN, "references": []}]',
    "fraction": b'[{"path": "/nix/store/a-a", "narSize": 10.5, "references": []}]',
    "string size": b'[{"path": "/nix/store/a-a", "narSize": "10", "references": []}]',
    "list references": b'[{"path": "/nix/store/a-a", "narSize": 1, "references": [["/nix/store/b-b"]]}]',
    "number path": b'[{"path": 7, "narSize": 1, "references": []}]',
    "entry not an object": b'[["/nix/store/a-a", 1]]',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b'\xff\xfe[{"path": "a"}]',
    "dangling reference": b'[{"path": "/nix/store/a-a", "narSize": 1, "references": ["/nix/store/z-z"]}]',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CLOSURES))
def test_hostile_closure_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    (tmp_path / "closure.json").write_bytes(HOSTILE_CLOSURES[case])
    assert main(["layers", "plan", str(tmp_path / "closure.json")]) == 1
    assert_one_line_error(capsys.readouterr().err, "closure.json")


def test_a_reference_loop_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Debian's dependencies go round loops (libc6 ↔ libgcc-s1): every closure of the loop is
    the whole loop, and every algorithm plans it."""
    loop = [
        {"path": "/nix/store/a-app", "narSize": 10, "references": ["/nix/store/b-lib"]},
        {"path": "/nix/store/b-lib", "narSize": 20, "references": ["/nix/store/c-libc"]},
        {"path": "/nix/store/c-libc", "narSize": 40, "references": ["/nix/store/b-lib"]},
    ]
    (tmp_path / "closure.json").write_text(json.dumps(loop))
    from storelab.layers import load_graph

    graph = load_graph(tmp_path / "closure.json")
    assert [graph.closure_size(p) for p in ("/nix/store/a-app", "/nix/store/b-lib", "/nix/store/c-libc")] == [70, 60, 60]
    for algorithm in ("popularity", "size-first", "per-path", "single"):
        assert main(["layers", "plan", str(tmp_path / "closure.json"), "-a", algorithm, "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert sorted(m for layer in plan["layers"] for m in layer["members"]) == sorted(n["path"] for n in loop)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_tree_deeper_than_path_max_is_ingested_whole(tmp_path: Path, workers: int) -> None:
    """Paths past PATH_MAX (4096 bytes) are listed and read through descriptors (openat), not
    dropped as 'permission denied'."""
    import blake3

    os.mkdir(tmp_path / "tree")
    fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    depth = len(os.fsencode(tmp_path / "tree"))
    for level in range(20):  # made relative to each directory: the full path is past PATH_MAX
        name = bytes([0x61 + level % 26]) * 250
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, depth = inner, depth + 251
    content = b"at the bottom " * 10_000
    out = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, content)
    os.close(out)
    os.close(fd)
    assert depth > 4096
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "deep", IngestOptions(workers=workers, zstd_level=0))
    assert result.skipped == () and result.files == 1 and result.directories == 21
    [blob] = [r for r in snapshot_rows(tmp_path / "ds", "blobs")]
    assert blob["digest"] == blake3.blake3(content).digest()

