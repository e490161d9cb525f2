"""NAR ingest and render throughput beside sha256sum and b3sum on the same NAR.

    .venv/bin/python benchmarks/nar.py [--runs 5] [--baseline REV] [--usr | --corpus DIR]

Makes one NAR of the ingest benchmark's corpus (by default the pinned debian-cache slice's
trees, all 1,310 store paths in one NAR; ``--usr``: this machine's /usr) with `nix-store --dump`
when Nix is installed, or with storelab's own writer (byte-identical, tested) otherwise. Then,
with a warm page cache and tools taking turns: sha256sum and b3sum of the NAR file,
`storelab ingest-nar` (parse, sha256 of the NAR, BLAKE3 of every blob and chunk; zstd sizes
off, the NAR not compressed), the same with its default whole-NAR zstd -3 (the `.nar.zst` size
a binary cache would store), and `storelab render-nar` from a file:// store written
beforehand by `ingest-nar --store`. Prints medians, MB/s and the ratios. ``--baseline REV`` also
times `storelab ingest-nar` as it was at git revision REV, in the same rounds.
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
from corpus import add_corpus_arguments, baseline_checkout, baseline_env, resolve_corpus

REPO = Path(__file__).resolve().parents[1]
STORELAB = [sys.executable, "-m", "storelab"]  # as the `storelab` command starts


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        while f.readinto(buf):
            pass


def warm_tree(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            warm(Path(folder) / name)


def make_nar(corpus: Path, nar: Path) -> str:
    if nar.exists() and nar.stat().st_mtime > corpus.stat().st_mtime:
        return "cached"
    tmp = nar.with_suffix(".partial")
    if shutil.which("nix-store"):
        with open(tmp, "wb") as out:
            subprocess.run(["nix-store", "--dump", str(corpus)], stdout=out, check=True)
        how = "nix-store --dump"
    else:
        sys.path.insert(0, str(REPO))
        from storelab.nar import dump_path

        with open(tmp, "wb") as out:
            for piece in dump_path(corpus):
                out.write(piece)
        how = "storelab's writer"
    os.replace(tmp, nar)
    return how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser, REPO)
    parser.add_argument("--baseline", metavar="REV", default=None, help="also time ingest-nar at this git revision")
    args = parser.parse_args()
    args.corpus, _, _, described = resolve_corpus(args, REPO)
    nar = REPO / "build" / ("bench-corpus.nar" if args.usr else f"bench-{args.corpus.parent.name}-{args.corpus.name}.nar")
    how = make_nar(args.corpus, nar)
    size = nar.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="storelab-narbench-"))
    store = work / "store"
    stored = [*STORELAB, "ingest-nar", str(nar), "-o", str(work / "stored"), "-q", "--zstd-level", "0", "--store", f"file://{store}", "-l", "bench"]
    subprocess.run(stored, check=True, cwd=REPO)
    out = work / "rendered.nar"

    def fresh() -> None:
        shutil.rmtree(work / "ds", ignore_errors=True)

    cases: list[tuple[str, list[str], object, dict[str, str] | None]] = [
        ("sha256sum", ["sha256sum", str(nar)], None, None),
        ("b3sum", ["b3sum", str(nar)], None, None),
        ("storelab ingest-nar (sha256 + BLAKE3 + fastcdc2020, zstd off)",
         [*STORELAB, "ingest-nar", str(nar), "-o", str(work / "ds"), "-q", "--zstd-level", "0", "--nar-compression", "none"], fresh, None),
        ("storelab ingest-nar, its default .nar.zst size (zstd -3 of the NAR) too",
         [*STORELAB, "ingest-nar", str(nar), "-o", str(work / "ds"), "-q", "--zstd-level", "0"], fresh, None),
        ("storelab render-nar (file:// store, to stdout)",
         [*STORELAB, "render-nar", str(work / "stored"), "bench", "--store", f"file://{store}", "-o", "-"], None, None),
    ]
    if args.baseline:
        old = baseline_env(baseline_checkout(REPO, args.baseline))
        ingest = next(c for c in cases if "ingest-nar" in c[0])
        cases.append((ingest[0].replace("storelab", f"storelab@{args.baseline}", 1), ingest[1], ingest[2], old))
    cases = [c for c in cases if shutil.which(c[1][0]) or c[1][0] == sys.executable]
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for _ in range(args.runs):
        for name, command, setup, env in cases:
            if setup:
                setup()
            warm(nar)
            if "render" in name:
                warm_tree(store)  # a local store warm like the NAR the others read
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO, env=env)
            times[name].append(time.perf_counter() - start)
    # identity checked once, outside the timing (writing 1.3 GB to disk is the disk's speed, not ours)
    subprocess.run([*STORELAB, "render-nar", str(work / "stored"), "bench", "--store", f"file://{store}", "-o", str(out)], check=True, cwd=REPO)
    same = out.read_bytes() == nar.read_bytes()
    shutil.rmtree(work, ignore_errors=True)
    results = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in values)} s", file=sys.stderr)
    mb = size / 1e6
    print(f"\nNAR: {mb:,.0f} MB ({how}) of {described}; median of {args.runs} warm runs; {os.cpu_count()} cores; rendered NAR identical: {same}\n")
    print(f"| {'tool':<62} | {'wall s':>7} | {'MB/s':>7} |")
    print(f"|{'-' * 64}|{'-' * 9}|{'-' * 9}|")
    for name, seconds in results.items():
        print(f"| {name:<62} | {seconds:7.2f} | {mb / seconds:7.0f} |")
    ingest = next((v for k, v in results.items() if k.startswith("storelab ingest-nar (")), None)
    before = next((v for k, v in results.items() if k.startswith("storelab@")), None)
    if ingest and before:
        print(f"\ningest-nar ÷ the same at {args.baseline}: {before / ingest:.2f}× the throughput")
    if ingest and "sha256sum" in results:
        print(f"\ningest-nar ÷ sha256sum: {results['sha256sum'] / ingest:.2f}× the throughput")
    if ingest and "b3sum" in results:
        print(f"ingest-nar ÷ b3sum: {results['b3sum'] / ingest:.2f}× the throughput")


if __name__ == "__main__":
    main()
