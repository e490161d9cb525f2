"""Ingest throughput beside b3sum and restic on the same ≥ 1 GB corpus of real files.

    .venv/bin/python benchmarks/ingest.py [--runs 5] [--baseline REV] [--usr | --corpus DIR]

The corpus is pinned: the unpacked trees of the debian-cache slice (fetched once into
build/datasets/debian-cache; ``--usr`` copies this machine's /usr instead, as earlier figures
did). Installs b3sum and restic with apt-get
when they are missing and we are root, then times each tool on the same corpus with a warm
page cache (the corpus is read again right before every timed run: this kernel drops idle
cache after about a minute), tools taking turns round by round. Prints wall-clock medians,
MB/s, and storelab's ratio to each peer. storelab's modules are byte-compiled first, as an
installed package's are. ``--baseline REV`` also times storelab as it was at the git revision
REV (a worktree under build/), in the same rounds: a change's before and after, also as the
median of the rounds' own ratios (each round's pair ran minutes apart at most, so the
machine's drift cancels). ``--storelab-only`` leaves the peers out, for more rounds of a
before-and-after in the same time: ``--baseline REV --storelab-only --runs 15``.
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
from corpus import (
    add_corpus_arguments,
    baseline_checkout,
    baseline_env,
    busy_cpu_seconds,
    regular_files,
    resolve_corpus,
    warm,
)

REPO = Path(__file__).resolve().parents[1]
STORELAB = [sys.executable, "-m", "storelab"]  # as the `storelab` command starts


def compile_storelab() -> None:
    """Byte-compile storelab's modules before timing, as pip does when it installs a wheel:
    under PYTHONDONTWRITEBYTECODE (set on some machines, this one included) an editable
    checkout would otherwise be compiled again by every timed run (≈ 0.1 s each)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "storelab")], check=True, stdout=subprocess.DEVNULL)


def ensure_tools(names: dict[str, str]) -> dict[str, bool]:
    missing = [pkg for tool, pkg in names.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get …", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True)
    return {tool: shutil.which(tool) is not None for tool in names}


def timed(corpus: Path, command: list[str], setup=None, env=None, cpu: list[float] | None = None) -> float:
    """Wall seconds of one warm run; with ``cpu``, the machine's busy CPU-seconds during it are
    appended there (every process of the run, the kernel's share included)."""
    if setup:
        setup()
    warm(corpus)
    busy = busy_cpu_seconds()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    after = busy_cpu_seconds()
    if cpu is not None and busy is not None and after is not None:
        cpu.append(after - busy)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser, REPO)
    parser.add_argument("--baseline", metavar="REV", default=None, help="also time storelab at this git revision")
    parser.add_argument("--storelab-only", action="store_true", help="time storelab (and --baseline) only, no peers")
    args = parser.parse_args()

    args.corpus, files, total, described = resolve_corpus(args, REPO)
    compile_storelab()
    have = {"b3sum": False, "restic": False} if args.storelab_only else ensure_tools({"b3sum": "b3sum", "restic": "restic"})
    work = Path(tempfile.mkdtemp(prefix="storelab-bench-"))
    listing = work / "files.txt"
    listing.write_bytes(b"\0".join(os.fsencode(p) for p in regular_files(args.corpus)))
    dataset = work / "dataset"
    restic_repo = work / "restic"
    restic_env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(restic_repo), "RESTIC_CACHE_DIR": str(work / "rcache")}

    def fresh_dataset() -> None:
        shutil.rmtree(dataset, ignore_errors=True)

    def fresh_restic() -> None:
        shutil.rmtree(restic_repo, ignore_errors=True)
        shutil.rmtree(work / "rcache", ignore_errors=True)
        subprocess.run(["restic", "init"], env=restic_env, check=True, capture_output=True)

    cases: list[tuple[str, list[str], object, dict | None]] = [
        (
            "storelab ingest-dir (fastcdc2020 256 KiB, zstd off)",
            [*STORELAB, "ingest-dir", str(args.corpus), "-o", str(dataset), "-q", "--zstd-level", "0"],
            fresh_dataset,
            None,
        ),
        (
            "storelab ingest-dir (fastcdc2020 256 KiB, zstd 3 sizes)",
            [*STORELAB, "ingest-dir", str(args.corpus), "-o", str(dataset), "-q", "--zstd-level", "3"],
            fresh_dataset,
            None,
        ),
    ]
    if args.baseline:
        old = baseline_env(baseline_checkout(REPO, args.baseline))
        for name, command, setup, _ in list(cases):
            cases.append((name.replace("storelab", f"storelab@{args.baseline}", 1), command, setup, old))
    if have["b3sum"]:
        cases.append(("b3sum (all files, default threads)", ["sh", "-c", f"xargs -0 b3sum < {listing}"], None, None))
        # the form DESIGN.md's peer figures were taken with (b3sum -t1)
        cases.append(("b3sum --num-threads 1", ["sh", "-c", f"xargs -0 b3sum --num-threads 1 < {listing}"], None, None))
    if have["restic"]:
        cases.append(("restic backup (fresh repository)", ["restic", "backup", "-q", str(args.corpus)], fresh_restic, restic_env))

    # Round-robin (every tool once per round) so drift in a shared machine's speed hits all alike.
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    cpu: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for _ in range(args.runs):
        for name, command, setup, env in cases:
            times[name].append(timed(args.corpus, command, setup, env, cpu[name]))
    results = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in values)} s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)

    mb = total / 1e6
    print(f"\ncorpus: {files:,} files, {mb:,.0f} MB — {described}; median of {args.runs} warm runs; {os.cpu_count()} cores\n")
    print(f"| {'tool':<56} | {'wall s':>7} | {'MB/s':>7} | {'CPU s':>6} |")
    print(f"|{'-' * 58}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for name, seconds in results.items():
        busy = f"{statistics.median(cpu[name]):6.2f}" if cpu[name] else "     –"
        print(f"| {name:<56} | {seconds:7.2f} | {mb / seconds:7.0f} | {busy} |")
    print("(CPU s: the machine's busy CPU-seconds during a run, median — every process of the run and its kernel time)")
    print()
    peers = [n for n in results if not n.startswith("storelab")]
    for mine in [n for n in results if n.startswith("storelab ")]:
        before = mine.replace("storelab", f"storelab@{args.baseline}", 1) if args.baseline else None
        if before in results:
            print(f"{mine} ÷ the same at {args.baseline}: {results[before] / results[mine]:.2f}× the throughput")
            print_rounds(times[before], times[mine])
        for peer in peers:
            print(f"{mine} ÷ {peer.split(' (')[0]}: {results[peer] / results[mine]:.2f}× the throughput")
            print_rounds(times[peer], times[mine])


def print_rounds(theirs: list[float], mine: list[float]) -> None:
    """The ratio round by round: each round's pair ran minutes apart at most, so a drift of the
    shared machine's speed (which moves a 30-second peer run as much as ±15 %) cancels."""
    rounds = sorted(then / now for then, now in zip(theirs, mine))
    print(f"  round by round: median {statistics.median(rounds):.2f}× (rounds {rounds[0]:.2f}–{rounds[-1]:.2f}×)")


if __name__ == "__main__":
    main()
