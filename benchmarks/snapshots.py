"""Snapshot count as a scale axis: does an append cost the same at 10,000 snapshots as at 0?

    .venv/bin/python benchmarks/snapshots.py [--nars 10000] [--small 600] [--cli 100] [--skip-separate]

The pinned corpus (made here, the same bytes on every machine: a seeded generator) is NARS
small NARs shaped like the versions of a package set: PACKAGES packages, each released in
successive versions that keep most files of the version before and change a few. Each NAR is
a store-path-like tree of 12–16 files of 1–24 KiB (≈ 110 KiB a NAR). The NARs are written to
build/bench-snapshots/nars/ once.

Measured, zstd on (level 3, the default):

1. **from-list**: one `ingest-nar --from-list` run of all NARS NARs (many snapshots a transaction).
   Per-NAR time = the gap between successive snapshots' ``created_at``; the mean over the last
   1,000 against the mean over the first 1,000 (target ≤ 1.2×).
2. **separate**: NARS appends, each its own `ingest_nar()` call (it opens the dataset, its
   index and its lake afresh, commits one transaction and compacts every 64, as a separate command
   does; the interpreter's start-up, the same for every command, is left out). Last 1,000
   against first 1,000 (target ≤ 1.2×).
3. **cli**: CLI `storelab ingest-nar` processes, CLI of them into an empty dataset, then CLI
   into the NARS-snapshot dataset of (2): mean wall time per command, and the ratio.
4. **queries**: `storelab stats` and `storelab report` on the NARS-snapshot dataset (from-list)
   and on a SMALL-snapshot one, each in a fresh process: wall time and peak memory (targets at
   10,000: stats ≤ 10 s, report ≤ 60 s, memory ≤ 1 GB), with the ratio to the SMALL run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "build" / "bench-snapshots"
PACKAGES = 500

_TIMED = """
import json, resource, sys, time
from storelab.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "wall": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)
"""


def _nar_string(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)


def _nar(files: dict[bytes, bytes]) -> bytes:
    """The NAR of a flat directory of regular files (entries sorted, as Nix writes them)."""
    out = [_nar_string(b"nix-archive-1"), _nar_string(b"("), _nar_string(b"type"), _nar_string(b"directory")]
    for name in sorted(files):
        out += [_nar_string(t) for t in (b"entry", b"(", b"name", name, b"node", b"(", b"type", b"regular", b"contents")]
        out += [_nar_string(files[name]), _nar_string(b")"), _nar_string(b")")]
    out.append(_nar_string(b")"))
    return b"".join(out)


def make_corpus(count: int) -> list[Path]:
    """``count`` NARs: package p's version v keeps most files of version v − 1."""
    folder = ROOT / "nars"
    marker = folder / ".complete"
    names = [folder / f"{i:06d}.nar" for i in range(count)]
    if marker.exists() and int(marker.read_text()) >= count:
        return names
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(20261201)
    packages: list[dict[bytes, bytes]] = []
    for i in range(count):
        p = i % PACKAGES
        if p == len(packages):
            files = {f"f{j:02d}".encode(): rng.randbytes(rng.randint(1024, 24 * 1024)) for j in range(rng.randint(12, 16))}
            packages.append(files)
        else:
            files = dict(packages[p])
            for name in rng.sample(sorted(files), 3):  # a new version: three files change
                files[name] = rng.randbytes(rng.randint(1024, 24 * 1024))
            packages[p] = files
        names[i].write_bytes(_nar(files))
    marker.write_text(str(count))
    return names


def gaps(dataset: Path) -> list[float]:
    """Seconds between successive snapshots' creation: the time each NAR took."""
    import pyarrow.compute as pc

    sys.path.insert(0, str(REPO))
    from storelab.tables import Dataset

    created = Dataset.open(dataset).snapshots().column("created_at")
    times = [t.timestamp() for t in created.to_pylist()]
    return [b - a for a, b in zip(times, times[1:])] if pc.count(created).as_py() else []


def ratio_last_first(values: list[float], window: int = 1000) -> tuple[float, float, float]:
    window = min(window, len(values) // 2)
    first, last = statistics.mean(values[:window]), statistics.mean(values[-window:])
    return first, last, last / first


def timed_cli(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", _TIMED, *args], capture_output=True, text=True, cwd=REPO)
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"storelab {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nars", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=600)
    parser.add_argument("--cli", type=int, default=100)
    parser.add_argument("--skip-separate", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    nars = make_corpus(args.nars)
    rows: list[tuple[str, str, str, str]] = []

    # 1. one --from-list run
    big = ROOT / "from-list"
    shutil.rmtree(big, ignore_errors=True)
    listing = ROOT / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in nars))
    started = time.perf_counter()
    timed_cli(["ingest-nar", "--from-list", str(listing), "-o", str(big), "-q"])
    wall = time.perf_counter() - started
    first, last, ratio = ratio_last_first(gaps(big))
    per_nar = f"first 1,000: {first * 1000:.1f} ms/NAR, last 1,000: {last * 1000:.1f} ms/NAR"
    rows.append(("from-list", f"{args.nars:,} NARs in {wall:.1f} s", per_nar, f"{ratio:.2f}×"))

    # 2. separate appends
    separate = ROOT / "separate"
    if not args.skip_separate:
        from storelab.ingest import IngestOptions
        from storelab.ingest.nar_source import ingest_nar

        shutil.rmtree(separate, ignore_errors=True)
        times = []
        for path in nars:
            t0 = time.perf_counter()
            ingest_nar(path, separate, options=IngestOptions(workers=0))
            times.append(time.perf_counter() - t0)
        first, last, ratio = ratio_last_first(times)
        from storelab.tables import Dataset

        files = Dataset.open(separate).live_files()
        rows.append(("separate appends", f"{args.nars:,} appends in {sum(times):.1f} s, {files} data files at the end",
                     f"first 1,000: {first * 1000:.1f} ms, last 1,000: {last * 1000:.1f} ms", f"{ratio:.2f}×"))  # fmt: skip

        # 3. CLI processes: into an empty dataset, then into the big one
        empty = ROOT / "cli-empty"
        shutil.rmtree(empty, ignore_errors=True)
        walls = {}
        for name, target in (("empty", empty), ("full", separate)):
            samples = [timed_cli(["ingest-nar", str(nars[i]), "-o", str(target), "-q", "-l", f"cli-{i}"])["wall"] for i in range(args.cli)]
            walls[name] = statistics.mean(samples)
        into = f"into 0 snapshots: {walls['empty'] * 1000:.0f} ms, into {args.nars:,}: {walls['full'] * 1000:.0f} ms"
        rows.append(("CLI ingest-nar", f"{args.cli} commands each", into,
                     f"{walls['full'] / walls['empty']:.2f}×"))  # fmt: skip

    # 4. queries at SMALL and at NARS snapshots
    small = ROOT / "small"
    shutil.rmtree(small, ignore_errors=True)
    small_list = ROOT / "small.txt"
    small_list.write_text("".join(f"{p}\n" for p in nars[: args.small]))
    timed_cli(["ingest-nar", "--from-list", str(small_list), "-o", str(small), "-q"])
    for command in (["stats"], ["report"]):
        measured = {}
        for name, target in (("small", small), ("big", big)):
            out = ["-o", str(ROOT / f"report-{name}.html")] if command == ["report"] else []
            measured[name] = timed_cli([*command, str(target), *out])
        rows.append((
            f"storelab {command[0]}",
            f"{args.small:,} snapshots: {measured['small']['wall']:.2f} s, {measured['small']['peak_mib']:.0f} MiB",
            f"{args.nars:,} snapshots: {measured['big']['wall']:.2f} s, {measured['big']['peak_mib']:.0f} MiB",
            f"{measured['big']['wall'] / measured['small']['wall']:.2f}×",
        ))  # fmt: skip

    width = [max(len(r[i]) for r in rows + [("what", "run", "measured", "ratio")]) for i in range(4)]
    for row in [("what", "run", "measured", "ratio"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width)))


if __name__ == "__main__":
    main()
