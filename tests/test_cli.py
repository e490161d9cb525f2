"""The command line: what a user types, what they see."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from storelab.cli import main
from tests.helpers import build_tree


def test_ingest_twice_then_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "v1", {b"a": b"A" * 1000, b"b": b"B" * 2000})
    build_tree(tmp_path / "v2", {b"a": b"A" * 1000, b"c": b"C" * 4000})
    assert main(["ingest-dir", str(tmp_path / "v1"), "--label", "v1", "--out", str(tmp_path / "ds")]) == 0
    assert main(["ingest-dir", str(tmp_path / "v2"), "-l", "v2", "-o", str(tmp_path / "ds"), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["label"] == "v2" and summary["files"] == 2 and summary["file_bytes"] == 5000

    assert main(["stats", str(tmp_path / "ds")]) == 0
    text = capsys.readouterr().out
    for word in ("blob", "chunk", "directory", "logical", "unique", "dedup", "savings", "v1", "v2", "new"):
        assert word in text

    assert main(["stats", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    blob = next(r for r in report["overall"] if r["level"] == "blob")
    assert (blob["logical_bytes"], blob["unique_bytes"]) == (8000, 7000)
    assert blob["dedup_ratio"] == pytest.approx(8000 / 7000)
    v2 = next(r for r in report["snapshots"] if r["label"] == "v2" and r["level"] == "blob")
    assert (v2["new_bytes"], v2["shared_bytes"]) == (4000, 1000)


def test_stats_for_one_snapshot_by_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "v1", {b"a": b"A" * 1000})
    build_tree(tmp_path / "v2", {b"c": b"C" * 4000})
    main(["ingest-dir", str(tmp_path / "v1"), "-l", "v1", "-o", str(tmp_path / "ds"), "-q"])
    main(["ingest-dir", str(tmp_path / "v2"), "-l", "v2", "-o", str(tmp_path / "ds"), "-q"])
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "ds"), "-s", "v2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["label"] for r in report["snapshots"]} == {"v2"}
    assert main(["stats", str(tmp_path / "ds"), "-s", "nope"]) == 1
    assert "no snapshot with id or label 'nope'" in capsys.readouterr().err


def test_chunker_options_reach_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"big": bytes(range(256)) * 1000})
    args = ["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q"]
    assert main([*args, "--chunker", "fixed", "--avg-chunk-size", "64KiB", "--zstd-level", "0"]) == 0
    assert main(["stats", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    chunk = next(r for r in report["overall"] if r["level"] == "chunk")
    assert chunk["chunker_id"] == "fixed/size=64KiB"
    assert chunk["logical_objects"] == 4  # 256000 bytes in 64 KiB blocks
    assert chunk["compressed_bytes"] is None


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--avg-chunk-size", "lots"], "not a byte size"),
        (["--chunker", "rabin"], "unknown chunker"),
        (["--avg-chunk-size", "64KiB", "--min-chunk-size", "128KiB"], "min ≤ avg ≤ max"),
        (["--zstd-level", "99"], "--zstd-level"),
        (["--chunker", "borg", "--min-chunk-size", "64KiB"], "--min-chunk-size does not apply to borg (its parameters: min_exp"),
        (["--chunker", "borg", "--chunker-params", "mask_bits"], "chunker parameters are key=value"),
        (["--chunker", "restic", "--chunker-params", "polynomial=0x3DA3358B4DC173"], "restic has no parameter 'polynomial'"),
        (["--chunker", "xet", "--avg-chunk-size", "100KiB"], "power of two"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    build_tree(tmp_path / "t", {b"a": b"x"})
    code = main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_peer_chunkers_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--chunker with --chunker-params (over the shorthands) names the chunking in the tables."""
    build_tree(tmp_path / "t", {b"a": bytes(range(256)) * 2000, b"b": b"small"})
    args = ["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q", "--json"]
    assert main([*args, "--chunker", "borg", "--chunker-params", "min_exp=10,max_exp=16,mask_bits=12", "-l", "borg"]) == 0
    assert main([*args, "--chunker", "casync", "--avg-chunk-size", "16KiB", "--max-chunk-size", "32KiB", "-l", "casync"]) == 0
    assert main([*args, "--chunker", "attic", "-l", "attic"]) == 0
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ids = {r["chunker_id"] for r in report["overall"] if r["level"] == "chunk"}
    assert ids == {
        "borg/min_exp=10,max_exp=16,mask_bits=12,window=4095,seed=0",
        "casync/min=4KiB,avg=16KiB,max=32KiB",
        "fastcdc2016/min=16KiB,avg=64KiB,max=256KiB",
    }
    assert main(["chunkers"]) == 0
    listing = capsys.readouterr().out
    for name in ("casync", "restic", "borg", "ncps", "xet", "zstd-chunked", "SHA-512/256"):
        assert name in listing


def test_a_sweep_takes_peer_chunkers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"a": bytes(range(256)) * 4000})
    args = ["sweep", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-j", "0", "-q", "--json"]
    assert main([*args, "--chunker", "restic,borg,xet,zstd-chunked", "--avg-chunk-size", "16KiB,64KiB"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["chunker"], r["avg_size"]) for r in rows} >= {("borg", 16384), ("xet", 65536), ("zstd-chunked", 16384)}
    assert len(rows) == 8


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest-dir", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--out", "--label", "--chunker", "--avg-chunk-size", "--zstd-level", "--workers", "--strict", "--quiet", "Example"):
        assert option in text
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("storelab 0.")


@pytest.mark.slow
def test_the_command_starts_its_workers_early_and_ingests(tmp_path: Path) -> None:
    """`python -m storelab` (as the `storelab` script) boots the fork server before its own
    imports; a tree of more than one batch then goes through worker processes."""
    import subprocess
    import sys

    from storelab.launch import wants_workers
    from storelab.tables import Dataset

    assert wants_workers(["ingest-dir", "t", "-o", "d"]) and not wants_workers(["ingest-dir", "t", "-o", "d", "--workers", "0"])
    build_tree(tmp_path / "t", {f"f{i:04}".encode(): str(i).encode() * 10 for i in range(1100)})  # three batches
    done = subprocess.run(
        [sys.executable, "-m", "storelab", "ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == 1100 and done.stderr == ""
    assert len(Dataset.open(tmp_path / "ds").read_table("nodes")) == 1101


def test_the_command_gives_arrow_the_system_allocator_and_blas_one_thread() -> None:
    """What configure_process sets is what Arrow and OpenBLAS read (a misspelt variable
    would leave mimalloc in place); a value the user set is kept."""
    import subprocess
    import sys

    probe = (
        "import os; from storelab.launch import configure_process; configure_process(); import pyarrow; "
        "print(pyarrow.default_memory_pool().backend_name, os.environ['OPENBLAS_NUM_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["system", "1"], done.stderr
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**env, "OPENBLAS_NUM_THREADS": "3"}, timeout=60)
    assert done.stdout.split() == ["system", "3"], done.stderr


def test_every_lazy_summary_is_its_commands_own() -> None:
    """``storelab --help`` lists summaries without importing the commands: they must not drift."""
    from storelab.cli import COMMANDS
    from storelab.cli.base import load_command

    for name, (where, summary) in COMMANDS.items():
        command = load_command(where)
        assert command.name == name
        assert command.get_short_help_str(limit=300) == summary, name


def test_help_loads_no_command_module() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from storelab.cli import main; main(['--help']); "
        "print(sorted(m for m in sys.modules if m.startswith('storelab.') and m.split('.')[1] not in ('cli', 'errors', 'units')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "storelab.cli.ingest" not in done.stdout.splitlines()[-1] and loaded == "[]", loaded


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from storelab.cli import COMMANDS

    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert "Usage: storelab " + name in capsys.readouterr().out
