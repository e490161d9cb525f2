"""What comparing every store model costs, beside one plain ``ingest-nar`` of the same NARs.

    .venv/bin/python benchmarks/models.py [--runs 3]                       # the debian-cache slice
    .venv/bin/python benchmarks/models.py --usr [--corpus-bytes 2000000000] [--with-xz]

By default the NARs are the project's pinned binary-cache slice (``storelab datasets fetch
debian-cache``, fetched into ``build/datasets/debian-cache`` if missing: 1,310 ``.nar.xz``
with their narinfos, 2.12 GB of NARs). With ``--usr``: the corpus of real files
``benchmarks/corpus.py`` makes (a sorted walk of /usr), packed into uncompressed NARs under
``build/bench-nars/`` — one per folder, folders over 64 MB split. Then, round by round:

- ``plain``: ``storelab ingest-nar --from-list`` of every NAR (snix's chunking, zstd sizes of
  chunks and of the NAR: the default);
- ``models``: the same with ``--models`` (every model's per-file and stream chunkings, each
  distinct chunk's zstd size under each) followed by ``storelab compare``.

The goal is models ≤ 3× plain. On the slice every model is compared (a ``.nar.xz`` is its own
xz size); on ``--usr`` NARs ``nix-cache-xz`` would have to compress every NAR with xz -6 (a few
MB/s on one core), so it is left out unless ``--with-xz``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import add_corpus_arguments, resolve_corpus, slice_folder, warm

REPO = Path(__file__).resolve().parents[1]
STORELAB = [sys.executable, "-m", "storelab"]
MODELS_WITHOUT_XZ = "nix-cache-zstd,snix,attic,nix-casync,ncps,restic,borg"


def _folders(root: Path, largest: int) -> list[Path]:
    """``root``'s entries as store paths: a folder larger than ``largest`` bytes is split into its own entries."""
    out = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file() and not p.is_symlink())
            out.extend(_folders(entry, largest) if size > largest else [entry])
        else:
            out.append(entry)
    return out


def make_nars(corpus: Path, dest: Path, largest: int = 64 * 1024 * 1024) -> list[Path]:
    """One NAR per store-path-like entry of the corpus (folders over 64 MB split; made once)."""
    marker = dest / ".complete"
    if marker.exists():
        return sorted(dest.glob("*.nar"))
    from storelab.nar import dump_path

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for number, entry in enumerate(_folders(corpus, largest)):
        with open(dest / f"{number:05d}-{entry.name}.nar", "wb") as out:
            for piece in dump_path(entry):
                out.write(piece)
    marker.write_text("ok\n")
    return sorted(dest.glob("*.nar"))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser, REPO)
    parser.set_defaults(corpus_bytes=2_000_000_000, runs=3)
    parser.add_argument("--with-xz", action="store_true", help="also measure .nar.xz (nix-cache-xz): xz -6 runs at ≈ 5 MB/s")
    args = parser.parse_args()
    listing = REPO / "build" / "bench-nars.txt"
    if args.usr:
        args.corpus, files, total, _ = resolve_corpus(args, REPO)
        nars = make_nars(args.corpus, REPO / "build" / "bench-nars")
        nar_bytes = sum(p.stat().st_size for p in nars)
        listing.write_text("".join(f"{p}\n" for p in nars))
        warm_folder = REPO / "build" / "bench-nars"
        print(f"corpus: {args.corpus} — {files:,} files, {total / 1e6:,.0f} MB; {len(nars):,} NARs, {nar_bytes / 1e6:,.0f} MB; {args.runs} rounds")
    else:
        folder = slice_folder(REPO)
        listing = folder / "narinfos.txt"
        from storelab.ingest.fetch import read_source_list
        from storelab.nar.narinfo import load_narinfo

        infos = [load_narinfo(line) for line in read_source_list(listing)]
        nar_bytes = sum(info.nar_size or 0 for info in infos)
        warm_folder = folder / "nar"
        print(f"corpus: the debian-cache slice — {len(infos):,} store paths, {nar_bytes / 1e6:,.0f} MB of NARs (.nar.xz); {args.runs} rounds")
    models = "all" if args.with_xz or not args.usr else MODELS_WITHOUT_XZ
    plain, compared = [], []
    scratch = REPO / "build" / "bench-models"
    for _ in range(args.runs):
        for what in ("plain", "models"):
            shutil.rmtree(scratch, ignore_errors=True)
            warm(warm_folder)
            ingest = [*STORELAB, "ingest-nar", "--from-list", str(listing), "-o", str(scratch), "-q"]
            if what == "plain":
                plain.append(timed(ingest))
            else:
                seconds = timed([*ingest, "--models", models])
                seconds += timed([*STORELAB, "compare", str(scratch), "--models", models, "--json"])
                compared.append(seconds)
    shutil.rmtree(scratch, ignore_errors=True)
    a, b = statistics.median(plain), statistics.median(compared)
    print(f"{'run':<34} {'median s':>9} {'(min–max)':>16} {'MB/s':>8}")
    print(f"{'plain ingest-nar':<34} {a:>9.1f} {f'({min(plain):.1f}–{max(plain):.1f})':>16} {nar_bytes / 1e6 / a:>8.0f}")
    print(f"{'ingest-nar --models + compare':<34} {b:>9.1f} {f'({min(compared):.1f}–{max(compared):.1f})':>16} {nar_bytes / 1e6 / b:>8.0f}")
    print(f"models / plain: {b / a:.2f}× (goal ≤ 3×; models: {models})")


if __name__ == "__main__":
    main()
