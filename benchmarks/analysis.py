"""Analysis at scale: dedup_summary and the chunk-size distribution over ≥ 10 million chunk rows.

    .venv/bin/python benchmarks/analysis.py [--chunks 10000000] [--snapshots 10]

Writes (once) a synthetic dataset in the storelab layout to build/bench-analysis: SNAPSHOTS
snapshots of 100,000 files each, every file of 10 chunks drawn from overlapping pools (so
snapshots share chunks and blobs as versions do), log-normal chunk sizes around 64 KiB. Then
runs each analysis in a fresh process and prints its wall time and the process's peak memory
(ru_maxrss), against the targets: under 5 s and under 2 GB each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHUNKS_PER_FILE = 10


def build(dest: Path, chunks: int, snapshots: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from storelab.tables import SCHEMA_VERSION, SCHEMAS

    marker = dest / ".complete"
    if marker.exists() and marker.read_text() == f"{chunks} {snapshots}":
        return
    import shutil

    shutil.rmtree(dest, ignore_errors=True)
    for table in SCHEMAS:
        (dest / table).mkdir(parents=True)
    (dest / "_storelab.json").write_text(json.dumps({"format": "storelab-dataset", "schema_version": SCHEMA_VERSION}) + "\n")
    rng = np.random.default_rng(7)
    per_snapshot = chunks // snapshots
    files = per_snapshot // CHUNKS_PER_FILE
    # pools: each snapshot draws from a window that slides by 30 %: neighbours share 70 %
    step = int(per_snapshot * 0.3)
    chunk_pool = rng.integers(0, 256, size=(step * (snapshots - 1) + per_snapshot, 32), dtype=np.uint8)
    size_pool = np.clip(rng.lognormal(np.log(64 * 1024), 0.6, size=len(chunk_pool)), 16 * 1024, 256 * 1024).astype(np.uint32)
    chunker_id = "fastcdc2020/min=32KiB,avg=64KiB,max=128KiB,nc=1"
    for s in range(snapshots):
        sid = f"20260101T0000{s:02d}-bench{s:04d}"
        window = np.arange(s * step, s * step + per_snapshot)
        digests = chunk_pool[window]
        sizes = size_pool[window]
        compressed = (sizes * 0.45).astype(np.uint32)
        # a file's digest: its first chunk's digest with the last byte flipped (unique per chunk run)
        blob_digests = digests[::CHUNKS_PER_FILE].copy()
        blob_digests[:, 31] ^= 0xFF
        blob_sizes = sizes.reshape(files, CHUNKS_PER_FILE).sum(axis=1, dtype=np.uint64)
        ends = np.cumsum(sizes.reshape(files, CHUNKS_PER_FILE), axis=1, dtype=np.uint64)
        offsets = np.concatenate([np.zeros((files, 1), np.uint64), ends[:, :-1]], axis=1).ravel()

        def digest_array(rows: np.ndarray) -> pa.Array:
            return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(rows), [None, pa.py_buffer(rows.tobytes())])

        chunk_table = pa.table(
            {
                "snapshot_id": pa.array([sid] * len(window)).dictionary_encode().cast(pa.string()),
                "chunker_id": pa.array([chunker_id] * len(window)).dictionary_encode(),
                "blob_digest": digest_array(np.repeat(blob_digests, CHUNKS_PER_FILE, axis=0)),
                "index": pa.array(np.tile(np.arange(CHUNKS_PER_FILE, dtype=np.uint32), files)),
                "offset": pa.array(offsets),
                "size": pa.array(sizes),
                "digest": digest_array(digests),
                "compressed_size": pa.array(compressed),
            }
        )
        pq.write_table(chunk_table.cast(SCHEMAS["chunks"]), dest / "chunks" / f"{sid}.parquet")
        blob_table = pa.table(
            {
                "snapshot_id": pa.array([sid] * files),
                "chunker_id": pa.array([chunker_id] * files).dictionary_encode(),
                "digest": digest_array(blob_digests),
                "size": pa.array(blob_sizes),
                "chunk_count": pa.array(np.full(files, CHUNKS_PER_FILE, np.uint32)),
                "compressed_size": pa.array(compressed.reshape(files, CHUNKS_PER_FILE).sum(axis=1, dtype=np.uint64)),
                "index_size": pa.array(np.full(files, 400, np.uint32)),
            }
        )
        pq.write_table(blob_table.cast(SCHEMAS["blobs"]), dest / "blobs" / f"{sid}.parquet")
        node_table = pa.table(
            {
                "snapshot_id": pa.array([sid] * (files + 1)),
                "path": pa.array([b""] + [f"f{i:07d}".encode() for i in range(files)], pa.binary()),
                "kind": pa.array(["directory"] + ["file"] * files).dictionary_encode(),
                "size": pa.array(np.concatenate([[0], blob_sizes]).astype(np.uint64)),
                "executable": pa.array([None] + [False] * files, pa.bool_()),
                "digest": digest_array(np.concatenate([rng.integers(0, 256, (1, 32), dtype=np.uint8), blob_digests])),
                "symlink_target": pa.array([None] * (files + 1), pa.binary()),
            }
        )
        pq.write_table(node_table.cast(SCHEMAS["nodes"]), dest / "nodes" / f"{sid}.parquet")
        root = node_table.column("digest")[0].as_py()
        directory_table = pa.table(
            {
                "snapshot_id": [sid], "digest": pa.array([root], pa.binary(32)), "encoded_size": pa.array([files * 80], pa.uint32()),
                "directory_entries": pa.array([0], pa.uint32()), "file_entries": pa.array([files], pa.uint32()),
                "symlink_entries": pa.array([0], pa.uint32()), "size": pa.array([2 * files], pa.uint64()),
                "file_bytes": pa.array([int(blob_sizes.sum())], pa.uint64()),
            }
        )  # fmt: skip
        pq.write_table(directory_table.cast(SCHEMAS["directories"]), dest / "directories" / f"{sid}.parquet")
        row = {name: None for name in SCHEMAS["snapshots"].names}
        row.update(
            snapshot_id=sid, label=f"v{s}", source_kind="directory", source="synthetic", root_kind="directory", root_digest=root,
            root_size=2 * files, nar_size=int(blob_sizes.sum()) + files * 200,
            file_count=files, directory_count=1, symlink_count=0, file_bytes=int(blob_sizes.sum()), blob_count=files,
            skipped_count=0, skipped=[], wall_seconds=0.0, storelab_version="bench",
            schema_version=SCHEMA_VERSION, created_at=pa.scalar(1767225600000000 + s, pa.timestamp("us", tz="UTC")).as_py(),
        )  # fmt: skip
        chunking = {
            "snapshot_id": sid, "chunker_id": chunker_id, "chunker": "fastcdc2020", "chunk_min_size": 32768,
            "chunk_avg_size": 65536, "chunk_max_size": 131072, "chunk_normalization": 1, "zstd_level": 3, "chunk_count": len(window),
        }  # fmt: skip
        pq.write_table(pa.Table.from_pylist([chunking], SCHEMAS["chunkings"]), dest / "chunkings" / f"{sid}.parquet")
        pq.write_table(pa.Table.from_pylist([row], SCHEMAS["snapshots"]), dest / "snapshots" / f"{sid}.parquet")
        print(f"  snapshot {s + 1}/{snapshots}: {len(window):,} chunk rows", file=sys.stderr)
    marker.write_text(f"{chunks} {snapshots}")


_MEASURE = """
import json, resource, sys, time
from storelab.analysis import {function}
started = time.perf_counter()
frame = {function}(sys.argv[1])
wall = time.perf_counter() - started
print(json.dumps({{"wall": wall, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": len(frame)}}))
"""


def measure(function: str, dataset: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(function=function), str(dataset)], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000_000)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--dataset", type=Path, default=REPO / "build" / "bench-analysis")
    args = parser.parse_args()
    started = time.perf_counter()
    build(args.dataset, args.chunks, args.snapshots)
    print(f"dataset: {args.dataset} ({args.chunks:,} chunk rows in {args.snapshots} snapshots; built or reused in {time.perf_counter() - started:.0f} s)")
    print(f"{'analysis':<28} {'wall s':>8} {'peak MiB':>9}  target")
    for function in ("dedup_summary", "chunk_size_distribution"):
        result = measure(function, args.dataset)
        verdict = "met" if result["wall"] < 5 and result["rss_mib"] < 2048 else "NOT met"
        print(f"{function:<28} {result['wall']:>8.2f} {result['rss_mib']:>9.0f}  < 5 s and < 2 GB: {verdict}")


if __name__ == "__main__":
    main()
