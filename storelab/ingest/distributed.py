"""Ingest on a Dask distributed cluster.

The driver (this process) walks the tree, partitions the files, and builds nodes and
directories; each partition is a task that reads, hashes and chunks its files on a worker and
writes the ``blobs`` and ``chunks`` rows itself, as Parquet parts, into the snapshot's staging
folder in the dataset (which must be a path every worker sees). Part files are named by
partition, written to a temporary name and renamed: a task that dies and is run again
replaces its part, never adds to it. When every part is in, a blob that more than one
partition met is kept only in the first (so the tables equal a local ingest's, row for row),
and the driver commits the snapshot — parts first, its ``snapshots`` row last.

NARs: each NAR is a task that ingests it into staging; the driver commits each snapshot as
its task finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import ConfigError, InputError, OutputError, StorelabError
from storelab.ingest.batch import BlobBatch
from storelab.ingest.columns import blob_columns, chunk_columns
from storelab.ingest.record import SnapshotRecorder
from storelab.ingest.snapshot import IngestOptions, IngestResult, snapshot_row, stderr_warning
from storelab.ingest.tree import Skipped, open_tree
from storelab.ingest.workers import FileJob, batch_jobs
from storelab.tables import SCHEMAS, Dataset

__all__ = ["StartingClient", "cluster", "ingest_dir_on_cluster", "ingest_nars_on_cluster", "PARTITION_BYTES", "PARTITION_FILES"]

PARTITION_BYTES = 64 * 1024 * 1024
PARTITION_FILES = 4096


class StartingClient:
    """A Dask client being started in the background: the driver scans the tree meanwhile
    and hands over the partitions it found once the cluster is up (hiding its start-up)."""

    def __init__(self, start: Callable[[], Any]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="storelab-cluster")
        self._future = self._pool.submit(start)

    def ready(self) -> bool:
        return self._future.done()

    def get(self) -> Any:
        return self._future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@contextmanager
def cluster(scheduler: str, workers: int | None = None) -> Iterator[StartingClient]:
    """A ``distributed.Client`` (being started): to ``scheduler`` (``tcp://host:8786``), or, for
    ``local``, to a ``LocalCluster`` of ``workers`` processes on 127.0.0.1 started here and
    stopped after."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler needs Dask distributed (pip install 'storelab[dask]')") from None
    made: list[Any] = []

    def start() -> Any:
        if scheduler == "local":
            local = LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=40,
            )  # fmt: skip
            made.append(local)
            client = Client(local)
        else:
            try:
                client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError) as err:
                raise StorelabError(f"{scheduler}: cannot reach the Dask scheduler: {err}") from None
        made.append(client)
        return client

    starting = StartingClient(start)
    try:
        yield starting
    finally:
        try:
            starting.get()
        except StorelabError:
            pass
        starting.close()
        for thing in reversed(made):
            thing.close()


def _client(client: Any) -> Any:
    return client.get() if isinstance(client, StartingClient) else client


@dataclass(frozen=True, slots=True)
class _PartResult:
    """What a partition's task hands back to the driver, per chunker: small, flat values."""

    part: int
    indices: bytes
    """int64 file indices."""
    digests: bytes
    sizes: bytes
    """uint64 blob sizes."""
    chunk_counts: bytes
    """uint32 chunks per file."""
    errors: tuple[tuple[int, str], ...]


def _part_name(table: str, part: int) -> str:
    return f"{table}.{part:06d}.parquet"


def _write_part(folder: Path, table: str, part: int, columns: dict[str, pa.Array], constants: dict[str, Any]) -> None:
    from storelab.tables.dataset import table_from_columns  # the writer's own column rules

    target = folder / _part_name(table, part)
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    pq.write_table(table_from_columns(SCHEMAS[table], columns, constants), tmp, compression="zstd")
    os.replace(tmp, target)  # a rerun of this partition replaces its part, never adds a second


def _hash_partition(
    part: int, packed: tuple[bytes, bytes], specs: Sequence[ChunkerSpec], zstd_level: int,
    folders: Sequence[str], snapshot_ids: Sequence[str], rewrite: Callable[[bytes], bytes] | None,
) -> list[_PartResult]:  # fmt: skip
    """A worker's task: hash one partition for every chunker, write its parts, report back."""
    from array import array

    from storelab.ingest.workers import hash_batches, make_hashers
    from storelab.stores.uploader import UploadOptions

    raw_indices, raw_paths = packed
    indices = array("q")
    indices.frombytes(raw_indices)
    jobs = [FileJob(i, p, 0) for i, p in zip(indices, raw_paths.split(b"\0"))]
    hashers = make_hashers(specs, zstd_level, {}, None, UploadOptions(concurrency=0), rewrite)
    results = []
    for batch, spec, folder, sid in zip(hash_batches(hashers, jobs), specs, folders, snapshot_ids):
        keep = _first_occurrences(batch)
        base = Path(folder) / "parts"
        base.mkdir(parents=True, exist_ok=True)
        _write_part(base, "blobs", part, blob_columns(batch, keep), {"snapshot_id": sid})
        _write_part(base, "chunks", part, chunk_columns(batch, keep), {"snapshot_id": sid, "chunker_id": spec.id})
        results.append(
            _PartResult(part, batch.indices.tobytes(), batch.digests, batch.sizes.tobytes(), batch.chunk_counts.tobytes(), batch.errors)
        )
    return results


def _first_occurrences(batch: BlobBatch) -> np.ndarray:
    keep = np.zeros(len(batch), dtype=bool)
    seen: set[bytes] = set()
    for i in range(len(batch)):
        digest = batch.digest(i)
        if digest not in seen:
            seen.add(digest)
            keep[i] = True
    return keep


def _drop_blobs(folder: str, part: int, drop: set[bytes]) -> None:
    """Rewrite a partition's parts without the blobs an earlier partition already wrote."""
    import pyarrow.compute as pc

    base = Path(folder)
    values = pa.array(sorted(drop), pa.binary(32))
    for table, column in (("blobs", "digest"), ("chunks", "blob_digest")):
        path = base / _part_name(table, part)
        data = pq.read_table(path, schema=SCHEMAS[table])
        kept = data.filter(pc.invert(pc.is_in(data.column(column), value_set=values)))
        tmp = base / f".{path.name}.{os.getpid()}.dedup.tmp"
        pq.write_table(kept, tmp, compression="zstd")
        os.replace(tmp, path)


def ingest_dir_on_cluster(
    client: Any,
    path: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    label: str | None,
    options: IngestOptions,
    specs: Sequence[ChunkerSpec],
    name_of: Callable[[str, ChunkerSpec], str] = lambda name, spec: name,
    on_partition: Callable[[int], None] | None = None,
) -> list[IngestResult]:
    """:func:`~storelab.ingest.ingest_dir` (one chunker) or :func:`~storelab.ingest.sweep_dir`
    (several) with the hashing done by ``client``'s workers.

    The same tables as a local ingest, row for row (but for ids and timings).
    """
    from distributed import as_completed

    if options.store is not None:
        raise ConfigError("--store is not supported with --scheduler yet (ingest locally to write a store)")
    for spec in specs:
        make_chunker(spec)
    warn = options.warn or stderr_warning
    started = time.perf_counter()
    source = Path(path)
    tree = open_tree(source)
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset, create=True)
    base_label = label or source.resolve().name or str(source)
    entries = tree.entries
    skipped: list[Skipped] = []
    writers = [ds.begin_snapshot() for _ in specs]
    try:
        recorders = [SnapshotRecorder(w, spec, entries) for w, spec in zip(writers, specs)]
        futures = []
        part_digests: list[dict[bytes, int]] = [dict() for _ in specs]  # per chunker: digest → first part
        firsts_chunks: list[dict[bytes, int]] = [dict() for _ in specs]

        def listed_jobs() -> Iterator[FileJob]:
            for listing in tree.walk():
                if listing.directory is not None:
                    for recorder in recorders:
                        recorder.listed(listing.directory, listing.children)
                yield from (FileJob(i, tree.absolute(entries[i]), entries[i].size) for i in listing.files)

        folders = [str(w.staging) for w in writers]
        sids = [w.snapshot_id for w in writers]
        waiting_parts: list[tuple[int, tuple[bytes, bytes]]] = []

        def submit_waiting() -> None:
            ready = _client(client)
            for part, packed in waiting_parts:
                futures.append(
                    ready.submit(
                        _hash_partition, part, packed, list(specs), options.zstd_level, folders, sids, options.rewrite,
                        key=f"storelab-{sids[0]}-{part}", retries=3, pure=False,
                    )
                )  # fmt: skip
            waiting_parts.clear()

        for part, jobs in enumerate(batch_jobs(listed_jobs(), PARTITION_BYTES, PARTITION_FILES)):
            waiting_parts.append((part, (np.array([j.index for j in jobs], dtype=np.int64).tobytes(), b"\0".join(j.path for j in jobs))))
            if not isinstance(client, StartingClient) or client.ready():
                submit_waiting()  # else: keep scanning while the cluster starts
        submit_waiting()
        client = _client(client)
        for item in tree.skipped:
            skipped.append(item)
        results: dict[int, list[_PartResult]] = {}
        waiting: dict[int, list[_PartResult]] = {}
        rewrites = []
        next_part = 0
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except StorelabError:
                raise
            except Exception as err:  # a task failed for good (retries spent)
                raise StorelabError(f"a cluster task failed: {type(err).__name__}: {err}") from None
            waiting[outcome[0].part] = outcome
            if on_partition:
                on_partition(outcome[0].part)
            # record in partition order as results arrive (the first partition to meet a blob
            # keeps its rows), overlapping the driver's work with the tasks still running
            while next_part in waiting:
                results[next_part] = waiting.pop(next_part)
                for k, (result, recorder) in enumerate(zip(results[next_part], recorders)):
                    drop = _record_part(result, recorder, part_digests[k], firsts_chunks[k], entries, skipped if k == 0 else None)
                    if drop:  # blobs an earlier partition wrote: take them out of this part, on the cluster
                        folder = str(Path(writers[k].staging) / "parts")
                        rewrites.append(client.submit(_drop_blobs, folder, next_part, drop, pure=False, retries=3))
                next_part += 1
        for future in rewrites:
            future.result()
        for item in skipped:
            warn(f"skipped {os.fsdecode(os.path.join(os.fsencode(source), item.path))}: {item.reason}")
        recordings = [recorder.finish() for recorder in recorders]
        wall = time.perf_counter() - started
        out = []
        for k, (writer, recorder, recorded, spec) in enumerate(zip(writers, recorders, recordings, specs)):
            recorder.chunk_rows = sum(firsts_chunks[k].values())
            name = name_of(base_label, spec)
            row = snapshot_row(
                writer.snapshot_id, name, "directory", str(source.resolve()), recorded, recorder, replace(options, chunker=spec), skipped, wall
            )
            writer.commit(row)
            out.append(IngestResult.of(writer.snapshot_id, name, recorded, recorder, tuple(skipped), wall))
        return out
    except KeyboardInterrupt:
        from storelab.errors import Interrupted

        raise Interrupted(f"interrupted; nothing was added to {ds.path}") from None
    except OSError as err:
        raise OutputError(f"cannot write {ds.path}: {err.strerror or err}") from None
    finally:
        for writer in writers:
            if not writer.committed:
                writer.abort()


def _record_part(
    result: _PartResult,
    recorder: SnapshotRecorder,
    first_part: dict[bytes, int],
    chunk_counts: dict[bytes, int],
    entries: Sequence[Any],
    skipped: list[Skipped] | None,
) -> set[bytes]:
    """Record a partition's files (partitions in order); return the blobs of its part that
    an earlier partition already wrote."""
    indices = np.frombuffer(result.indices, dtype=np.int64).tolist()
    counts = np.frombuffer(result.chunk_counts, dtype=np.uint32).tolist()
    fresh = recorder.add_files(indices, result.digests, np.frombuffer(result.sizes, dtype=np.uint64).tolist())
    drop = set()
    for i, new in enumerate(fresh):
        digest = result.digests[32 * i : 32 * i + 32]
        if new:
            first_part[digest] = result.part
            chunk_counts[digest] = counts[i]
        elif first_part[digest] != result.part:
            drop.add(digest)
    for index, reason in result.errors:
        if skipped is not None:
            skipped.append(Skipped(entries[index].path, reason))
        recorder.skip(index)
    return drop


def _stage_nar(source: str, dataset: str, label: str | None, options: IngestOptions, snapshot_id: str, owner: str) -> IngestResult:
    """A worker's task: fetch (if remote) and ingest one NAR into staging."""
    from storelab.ingest.fetch import fetch_sources, is_remote
    from storelab.ingest.nar_source import ingest_nar

    for origin, local in fetch_sources([source], 1):
        return ingest_nar(local, dataset, label, options, origin=origin if is_remote(origin) else None, staged_as=(snapshot_id, owner))
    raise AssertionError("unreachable")


def ingest_nars_on_cluster(
    client: Any,
    sources: Sequence[str],
    dataset: str | os.PathLike[str],
    label: str | None,
    options: IngestOptions,
    on_result: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """One task per NAR (a path every worker sees, or a URL each worker fetches); each is
    staged by its task and committed here as it finishes. Snapshot ids are chosen here, so a
    task run twice stages the same snapshot again instead of adding a second."""
    import socket

    from distributed import as_completed

    from storelab.tables import new_snapshot_id

    if options.store is not None:
        raise ConfigError("--store is not supported with --scheduler yet (ingest locally to write a store)")
    from storelab.ingest.fetch import is_remote

    make_chunker(options.chunker)
    if "-" in sources:
        raise ConfigError("standard input cannot be read on a cluster; give NAR files or URLs")
    sources = [s if is_remote(s) else os.path.abspath(s) for s in sources]  # workers have their own cwd
    ds = Dataset.open(dataset, create=True) if not isinstance(dataset, Dataset) else dataset
    owner = f"{socket.gethostname()} {os.getpid()}"
    options = replace(options, workers=0, progress=False)
    ids = [new_snapshot_id() for _ in sources]
    client = _client(client)
    futures = {
        client.submit(
            _stage_nar, source, str(ds.path), label, options, sid, owner, key=f"storelab-nar-{sid}", retries=3, pure=False
        ): sid
        for source, sid in zip(sources, ids)
    }  # fmt: skip
    results: list[IngestResult] = []
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except StorelabError:
                raise
            except Exception as err:
                raise StorelabError(f"a cluster task failed: {type(err).__name__}: {err}") from None
            ds.commit_staged(result.snapshot_id)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        for future in futures:
            future.cancel()
    order = {sid: i for i, sid in enumerate(ids)}
    return sorted(results, key=lambda r: order[r.snapshot_id])
