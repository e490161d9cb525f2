"""Every chunker's speed on one core, beside casync, restic and borg on the same bytes.

    .venv/bin/python benchmarks/chunkers.py [--runs 5] [--no-tools] [--usr [--corpus-bytes 1000000000] | --corpus DIR]

Takes the corpus ``benchmarks/corpus.py`` resolves (the pinned debian-cache slice's trees by
default; ``--usr``: a sorted walk of this machine's /usr, 1 GB), reads its regular files into memory, then times each chunker cutting every file (at its
tool's defaults, on the calling thread: one core), round by round, chunkers taking turns.
Reports the median MB/s with the spread, and the goal (≥ 250 MB/s) met or not.

The peer tools are then timed end to end on the same files (their whole job: read, chunk, hash,
compress where they cannot be told not to, write): ``casync make`` of the corpus folder,
``restic backup`` into a new repository, ``borg create -e none --compression none``. Their
MB/s bound the chunking they do from below; a storelab chunker at k× a tool is k× that tool's
end-to-end speed, not k× its chunker alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import add_corpus_arguments, regular_files, resolve_corpus, warm

REPO = Path(__file__).resolve().parents[1]
GOAL_MBPS = 250


def load(corpus: Path) -> list[bytes]:
    return [Path(path).read_bytes() for path in regular_files(corpus) if not os.path.basename(path).startswith(".corpus")]


def time_chunker(name: str, files: list[bytes]) -> float:
    from storelab.chunking import make_chunker, make_spec

    chunker = make_chunker(make_spec(name))
    start = time.perf_counter()
    for data in files:
        chunker.begin()
        chunker.split(memoryview(data), True)
    return time.perf_counter() - start


def tool_commands(corpus: Path, scratch: Path) -> dict[str, tuple[list[str], dict[str, str], object]]:
    """Each available tool's command, environment and per-run setup (a fresh target)."""
    tools: dict[str, tuple[list[str], dict[str, str], object]] = {}
    if shutil.which("casync"):
        def fresh_casync() -> None:
            shutil.rmtree(scratch / "casync", ignore_errors=True)
            (scratch / "casync").mkdir()

        command = ["casync", "make", f"--store={scratch / 'casync' / 'store'}", str(scratch / "casync" / "corpus.caidx"), str(corpus)]
        tools["casync make"] = (command, dict(os.environ), fresh_casync)
    if shutil.which("restic"):
        restic_env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(scratch / "restic"),
                      "RESTIC_CACHE_DIR": str(scratch / "restic-cache")}  # fmt: skip

        def fresh_restic() -> None:
            shutil.rmtree(scratch / "restic", ignore_errors=True)
            subprocess.run(["restic", "init", "-q"], env=restic_env, check=True, capture_output=True)

        tools["restic backup"] = (["restic", "backup", "-q", str(corpus)], restic_env, fresh_restic)
    if shutil.which("borg"):
        borg_env = {**os.environ, "BORG_REPO": str(scratch / "borg"), "BORG_BASE_DIR": str(scratch / "borg-base"),
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}  # fmt: skip

        def fresh_borg() -> None:
            shutil.rmtree(scratch / "borg", ignore_errors=True)
            subprocess.run(["borg", "init", "-e", "none"], env=borg_env, check=True, capture_output=True)

        tools["borg create"] = (["borg", "create", "--compression", "none", "::a", str(corpus)], borg_env, fresh_borg)
    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser, REPO)
    parser.set_defaults(corpus_bytes=1_000_000_000)
    parser.add_argument("--no-tools", dest="tools", action="store_false", help="time storelab's chunkers only")
    args = parser.parse_args()

    from storelab.chunking import CATALOG

    args.corpus, file_count, total, described = resolve_corpus(args, REPO)
    files = load(args.corpus)
    mb = total / 1e6
    print(f"corpus: {file_count:,} files, {mb:,.0f} MB — {described}; {args.runs} rounds; one core")
    times: dict[str, list[float]] = {name: [] for name in CATALOG}
    for _ in range(args.runs):
        for name in CATALOG:
            times[name].append(time_chunker(name, files))
    del files
    tool_times: dict[str, list[float]] = {}
    if args.tools:
        with tempfile.TemporaryDirectory(prefix="storelab-bench-chunkers-", dir=REPO / "build") as scratch_dir:
            tools = tool_commands(args.corpus, Path(scratch_dir))
            for label in tools:
                tool_times[label] = []
            for _ in range(args.runs):
                for label, (command, env, setup) in tools.items():
                    setup()  # type: ignore[operator]
                    warm(args.corpus)
                    start = time.perf_counter()
                    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    tool_times[label].append(time.perf_counter() - start)
    fastest_tool = {label: mb / statistics.median(t) for label, t in tool_times.items()}
    header = f"{'chunker':<14} {'MB/s median':>12} {'(min–max)':>16} {'goal ≥250':>10}" + "".join(f" {'× ' + label:>17}" for label in fastest_tool)
    print(header)
    for name, runs in times.items():
        speeds = sorted(mb / t for t in runs)
        median = statistics.median(speeds)
        line = f"{name:<14} {median:>12,.0f} {f'({speeds[0]:,.0f}–{speeds[-1]:,.0f})':>16} {'yes' if median >= GOAL_MBPS else 'NO':>10}"
        line += "".join(f" {median / tool:>17.1f}" for tool in fastest_tool.values())
        print(line)
    for label, runs in tool_times.items():
        speeds = sorted(mb / t for t in runs)
        print(f"{label:<14} {statistics.median(speeds):>12,.0f} {f'({speeds[0]:,.0f}–{speeds[-1]:,.0f})':>16}   (end to end: read, chunk, hash, write)")


if __name__ == "__main__":
    main()
