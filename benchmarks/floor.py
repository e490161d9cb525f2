"""The floor under any Python ingest of the benchmark corpus, beside b3sum and storelab.

    .venv/bin/python benchmarks/floor.py [--runs 5]

"floor" does the least that snix's layout asks of every file, and nothing else: walk the tree
(no stat), and per file BLAKE3 it whole, cut it with FastCDC (snix's 128/256/512 KiB) and
BLAKE3 each chunk — on one process per core, no tables, no directories, no errors handled.
Its wall time against b3sum's says how far a Python ingest can get before recording
anything; storelab's against the floor is what recording costs. Same corpus, warm cache,
taking turns, medians (as benchmarks/ingest.py).
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import add_corpus_arguments, regular_files, resolve_corpus
from ingest import compile_storelab, ensure_tools, timed

REPO = Path(__file__).resolve().parents[1]
MIN, AVG, MAX = 128 * 1024, 256 * 1024, 512 * 1024


def _walk(root: str) -> list[str]:
    found, stack = [], [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    found.append(entry.path)
    return found


def _hash_files(paths: list[str]) -> int:
    import blake3
    from pyfastcdc.cy import FastCDC

    cdc = FastCDC(avg_size=AVG, min_size=MIN, max_size=MAX, normalized_chunking=1)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size <= MIN:  # one chunk: the chunk is the blob
                blake3.blake3(os.read(fd, size + 1)).digest()
                continue
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                view = memoryview(mapped)
                blake3.blake3(view, max_threads=blake3.blake3.AUTO if size >= 64 << 20 else 1).digest()
                for chunk in cdc.cut_buf(view):
                    with view[chunk.offset : chunk.offset + chunk.length] as piece:
                        blake3.blake3(piece).digest()
                del chunk
                view.release()
        finally:
            os.close(fd)
    return len(paths)


def floor(root: str) -> int:
    """Hash and chunk every file under ``root`` on one process per core; returns the count."""
    paths = _walk(root)
    with get_context("fork").Pool(os.cpu_count()) as pool:
        return sum(pool.imap_unordered(_hash_files, [paths[i : i + 512] for i in range(0, len(paths), 512)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser, REPO)
    parser.add_argument("--floor-only", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_only:
        floor(args.floor_only)
        return
    args.corpus, files, total, described = resolve_corpus(args, REPO)
    compile_storelab()
    ensure_tools({"b3sum": "b3sum"})
    listing = REPO / "build" / "bench-floor-files.txt"
    listing.write_bytes(b"\0".join(os.fsencode(p) for p in regular_files(args.corpus)))
    dataset = REPO / "build" / "bench-floor-dataset"
    cases = {
        "floor (walk + BLAKE3 + FastCDC + chunk BLAKE3, no tables)": [sys.executable, __file__, "--floor-only", str(args.corpus)],
        "b3sum (all files, default threads)": ["sh", "-c", f"xargs -0 b3sum < {listing}"],
        "storelab ingest-dir (fastcdc2020 256 KiB, zstd off)": [
            "sh", "-c", f"rm -rf {dataset} && {sys.executable} -m storelab ingest-dir {args.corpus} -o {dataset} -q --zstd-level 0",
        ],  # fmt: skip
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, command in cases.items():
            times[name].append(timed(args.corpus, command))
    for name, values in times.items():
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in values)} s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\ncorpus: {files:,} files, {total / 1e6:,.0f} MB — {described}; median of {args.runs} warm runs; {os.cpu_count()} cores\n")
    print(f"| {'run':<60} | {'wall s':>7} | {'÷ b3sum':>8} |")
    print(f"|{'-' * 62}|{'-' * 9}|{'-' * 10}|")
    b3 = medians["b3sum (all files, default threads)"]
    for name, seconds in medians.items():
        print(f"| {name:<60} | {seconds:7.2f} | {seconds / b3:7.2f}× |")


if __name__ == "__main__":
    main()
