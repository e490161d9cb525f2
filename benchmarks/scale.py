"""Scale: a million small files, a 20 GB file, bounded memory, and a local Dask cluster.

    .venv/bin/python benchmarks/scale.py [--files 1000000] [--big-gb 20] [--skip-dask]

Generates (once) build/bench-scale/many: FILES small files (100–4,000 bytes, 1,000 per
folder, content drawn so that about a third repeat), and build/bench-scale/big: one sparse
file of BIG_GB GB (holes read as zeros). Then, each in a fresh process:

1. `storelab ingest-dir many` — wall time, files/s, and the peak memory of the whole run: the
   resident memory of every process of it (driver, fork server, workers) summed, sampled every
   0.2 s; target < 1 GB;
2. `storelab ingest-dir big` — wall time, MB/s, peak memory;
3. `dedup_summary` over the million-file dataset — wall time and peak memory (DuckDB spills
   to disk past its 1 GB limit);
4. the same ingest of `many` on a local Dask cluster of 2 workers against the plain local
   ingest of the same tree, taking turns, each after reading the tree again (warm cache),
   medians of ROUNDS, as a ratio (target: ≤ 1.15× the wall time; the cluster's start-up is
   counted).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_RUN = """
import json, resource, sys, time
from storelab.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - started
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"code": code, "wall": wall, "driver_mib": me, "worker_mib": kids}))
"""

_SUMMARY = """
import json, resource, sys, time
from storelab.analysis import dedup_summary
started = time.perf_counter()
frame = dedup_summary(sys.argv[1])
print(json.dumps({"wall": time.perf_counter() - started, "driver_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "blob_dedup": float(frame.loc["blob", "dedup_ratio"])}))
"""


def make_many(root: Path, files: int) -> None:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(files):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(11)
    pool = [rng.randbytes(rng.randint(100, 4000)) for _ in range(files // 3)]
    for i in range(files):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
            print(f"  {i:,} files", file=sys.stderr, end="\r")
        data = rng.choice(pool) if rng.random() < 0.33 else rng.randbytes(rng.randint(100, 4000))
        (folder / f"f{i:07d}").write_bytes(data)
    marker.write_text(str(files))


def warm(root: Path) -> None:
    """Read every file once, so the next run finds them in the page cache."""
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb", buffering=0) as f:
                while f.read(1 << 24):  # in pieces: the big file is 20 GB
                    pass


def make_big(path: Path, gigabytes: int) -> None:
    size = gigabytes * 1_000_000_000
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        # a little real data at the start, the rest a hole that reads as zeros
        f.write(random.Random(5).randbytes(64 * 1024 * 1024))
        f.truncate(size)


def _tree_rss(root: int) -> int:
    """KiB resident in ``root`` and every process below it (workers, the fork server), now."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    total = 0
    for pid in family:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return total


def run(args: list[str], script: str = _RUN) -> dict:
    """Run one measured command; sample the resident memory of its whole process tree."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"failed: {' '.join(args)}\n{stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["tree_mib"] = peak / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--big-gb", type=int, default=20)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-only", action="store_true", help="only the Dask against local comparison")
    parser.add_argument(
        "--compare-big", action="store_true",
        help="compare on the big file instead of the million small ones (a run bound by bytes, not by paths)",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=REPO / "build" / "bench-scale")
    args = parser.parse_args()
    many, big = args.work / "many", args.work / "big" / "file.bin"
    started = time.perf_counter()
    make_many(many, args.files)
    make_big(big, args.big_gb)
    print(f"corpus ready in {time.perf_counter() - started:.0f} s: {args.files:,} files in {many}, {args.big_gb} GB sparse file {big}")
    out = args.work / "datasets"
    shutil.rmtree(out, ignore_errors=True)
    print(f"{'run':<44} {'wall s':>8} {'rate':>14} {'peak MiB':>9}")

    def show(name: str, result: dict, rate: str) -> None:
        print(f"{name:<44} {result['wall']:>8.1f} {rate:>14} {result['tree_mib']:>9.0f}")

    if args.compare_only or args.compare_big:
        compare(args, big.parent if args.compare_big else many, out, show)
        return
    warm(many)
    local = run(["ingest-dir", str(many), "-o", str(out / "many"), "-q", "--zstd-level", "0"])
    show("ingest-dir, 1M small files (local, 2 procs)", local, f"{args.files / local['wall']:,.0f} files/s")
    peak = local["tree_mib"]
    print(f"  peak memory of the whole run (every process, sampled): {peak:.0f} MiB; target < 1024 MiB: {'met' if peak < 1024 else 'NOT met'}")
    large = run(["ingest-dir", str(big.parent), "-o", str(out / "big"), "-q", "--zstd-level", "0"])
    show(f"ingest-dir, one {args.big_gb} GB file", large, f"{args.big_gb * 1000 / large['wall']:,.0f} MB/s")
    peak = large["tree_mib"]
    print(f"  peak memory of the whole run: {peak:.0f} MiB; target < 1024 MiB: {'met' if peak < 1024 else 'NOT met'}")
    summary = run([str(out / "many")], _SUMMARY)
    show("dedup_summary over the 1M-file dataset", summary, f"{summary['blob_dedup']:.2f}× blobs")
    if not args.skip_dask:
        compare(args, many, out, show)


def compare(args: argparse.Namespace, many: Path, out: Path, show) -> None:
    """Plain local ingest against a local Dask cluster of 2 workers on the tree ``many``, taking turns."""
    big = many.name == "big"
    what = f"one {args.big_gb} GB file" if big else "1M small files"
    # taking turns, each after reading the corpus again (the kernel here drops idle cache)
    walls: dict[str, list[float]] = {"local": [], "dask": []}
    for round_ in range(args.rounds):
        for kind in ("local", "dask"):
            warm(many)
            target = out / f"many-{kind}-{round_}"
            extra = ["--scheduler", "local", "--workers", "2"] if kind == "dask" else []
            result = run(["ingest-dir", str(many), "-o", str(target), "-q", "--zstd-level", "0", *extra])
            walls[kind].append(result["wall"])
            rate = f"{args.big_gb * 1000 / result['wall']:,.0f} MB/s" if big else f"{args.files / result['wall']:,.0f} files/s"
            show(f"ingest-dir, {what} ({'Dask, 2 workers' if kind == 'dask' else 'local, 2 procs'}), warm", result, rate)
            shutil.rmtree(target, ignore_errors=True)
    ratio = statistics.median(walls["dask"]) / statistics.median(walls["local"])
    print(f"  Dask ÷ local wall time (medians of {args.rounds}, warm): {ratio:.2f}× (target ≤ 1.15×: {'met' if ratio <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
