"""Ingest on a Dask distributed cluster.

The driver (this process) walks the tree, partitions the files, and builds nodes and
directories; each partition is a task that reads, hashes and chunks its files on a worker
(writing blobs and chunks to the store, with ``--store``) and writes the ``blobs`` and
``chunks`` rows itself, as Parquet parts, into the dataset — a folder every worker sees, or
``s3://``. In a folder, parts go to the snapshot's staging folder under a temporary name and
are renamed; in object storage they are PUT under their final names, invisible until the
``snapshots`` object commits them. Either way a task that dies and is run again replaces its
part, never adds to it. When every part is in, a blob that more than one partition met is
kept only in the first (so the tables equal a local ingest's, row for row), and the driver
writes the root's directory closure to the store and commits the snapshot — parts first, its
``snapshots`` row last.

NARs: each NAR is a task that ingests it (into staging, and into the store with ``--store``);
the driver commits each snapshot as its task finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import ConfigError, StorelabError
from storelab.ingest.batch import BlobBatch
from storelab.ingest.columns import blob_columns, chunk_columns
from storelab.ingest.core import (
    IngestEvent,
    Listed,
    Skipped,
    SnapshotSession,
    SourceFacts,
    Staged,
    StoreRequests,
)
from storelab.ingest.directory_source import measure_tree_nar, refuse_self_ingest
from storelab.ingest.hashing import FileJob, batch_jobs
from storelab.ingest.snapshot import IngestOptions, IngestResult, ingest_store
from storelab.ingest.tree import Tree, open_tree
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore
from storelab.tables import SCHEMAS, Dataset

__all__ = ["StartingClient", "cluster", "ingest_dir_on_cluster", "ingest_nars_on_cluster", "PARTITION_BYTES", "PARTITION_FILES"]

PARTITION_BYTES = 64 * 1024 * 1024
PARTITION_FILES = 16384


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
        with suppress(StorelabError):
            starting.get()
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
    store_ops: tuple[int, ...] = ()
    """Requests the task made to the store (:class:`StoreOps` as a tuple)."""


def _hash_partition(
    part: int, packed: tuple[bytes, bytes], specs: Sequence[ChunkerSpec], zstd_level: int,
    dataset: str, snapshot_id: str, rewrite: Callable[[bytes], bytes] | None,
    store: str | None = None, upload: Any = None,
) -> list[_PartResult]:  # fmt: skip
    """A worker's task: hash one partition for every chunker (writing its blobs to ``store``),
    write its parts into the dataset (one blobs and one chunks file, every chunking's rows
    in them), report back."""
    from array import array

    from storelab.ingest.hashing import hash_batches
    from storelab.ingest.workers import make_hashers
    from storelab.stores.snix import open_store
    from storelab.stores.uploader import UploadOptions

    raw_indices, raw_paths = packed
    indices = array("q")
    indices.frombytes(raw_indices)
    jobs = [FileJob(i, p, 0) for i, p in zip(indices, raw_paths.split(b"\0"))]
    blob_store = open_store(store) if store is not None else None
    hashers = make_hashers(specs, zstd_level, {}, blob_store, upload or UploadOptions(concurrency=0), rewrite)
    try:
        batches = hash_batches(hashers, jobs, report_ops=blob_store is not None)
    finally:
        for hasher in hashers:
            if hasher.uploader is not None:
                hasher.uploader.close()
    ds = Dataset.open(dataset)
    results = []
    blobs, chunks = [], []
    for batch, spec in zip(batches, specs):
        keep = _first_occurrences(batch)
        constants = {"snapshot_id": snapshot_id, "chunker_id": spec.id}
        blobs.append(_part_table("blobs", blob_columns(batch, keep), constants))
        chunks.append(_part_table("chunks", chunk_columns(batch, keep), constants))
        results.append(
            _PartResult(
                part, batch.indices.tobytes(), batch.digests, batch.sizes.tobytes(), batch.chunk_counts.tobytes(),
                batch.errors, batch.store_ops,
            )
        )  # fmt: skip
    ds.write_part(snapshot_id, "blobs", part, pa.concat_tables(blobs))
    ds.write_part(snapshot_id, "chunks", part, pa.concat_tables(chunks))
    return results


def _part_table(table: str, columns: dict[str, pa.Array], constants: dict[str, Any]) -> pa.Table:
    from storelab.tables.dataset import (
        table_from_columns,  # the writer's own column rules
    )

    return table_from_columns(SCHEMAS[table], columns, constants)


def _first_occurrences(batch: BlobBatch) -> np.ndarray:
    keep = np.zeros(len(batch), dtype=bool)
    seen: set[bytes] = set()
    for i in range(len(batch)):
        digest = batch.digest(i)
        if digest not in seen:
            seen.add(digest)
            keep[i] = True
    return keep


def _drop_blobs(dataset: str, snapshot_id: str, part: int, drop: set[bytes]) -> None:
    """Rewrite a partition's parts without the blobs an earlier partition already wrote."""
    import pyarrow.compute as pc

    ds = Dataset.open(dataset)
    values = pa.array(sorted(drop), pa.binary(32))
    for table, column in (("blobs", "digest"), ("chunks", "blob_digest")):
        data = ds.read_part(snapshot_id, table, part)
        ds.write_part(snapshot_id, table, part, data.filter(pc.invert(pc.is_in(data.column(column), value_set=values))))


def ingest_dir_on_cluster(
    client: Any,
    path: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    label: str | None,
    options: IngestOptions,
    specs: Sequence[ChunkerSpec],
    on_partition: Callable[[int], None] | None = None,
) -> IngestResult:
    """:func:`~storelab.ingest.ingest_dir` (one chunker) or :func:`~storelab.ingest.sweep_dir`
    (several) with the hashing done by ``client``'s workers.

    The same tables as a local ingest, row for row (but for ids and timings).
    """
    for spec in specs:
        make_chunker(spec)
    if options.streams:
        raise ConfigError("stream chunkings of a tree are cut in this process; leave out --scheduler (or --stream-chunking)")
    store, store_url = _cluster_store(options)
    if store is not None and len(specs) > 1:
        raise ConfigError("a sweep writes no store")
    started = time.perf_counter()
    source = Path(path)
    refuse_self_ingest(source, dataset)
    tree = open_tree(source, options.follow_root)
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset, create=True)
    base_label = label or Path(os.path.abspath(source)).name or str(source)
    with SnapshotSession(ds.begin_snapshot, ds.location, specs, tree.entries, options, store, started, os.fsencode(source)) as session:
        session.open()  # the tasks write into the snapshot's staging area: it must exist first
        hashing = _HashingTasks(client, ds.location, session.snapshot_id, list(specs), options, store_url)
        session.consume(cluster_events(tree, hashing, on_partition))
        nar = measure_tree_nar(tree.root, options.nar_compression)
        return session.commit(SourceFacts("directory", os.path.abspath(tree.root), base_label, nar))


@dataclass
class _HashingTasks:
    """Submits a snapshot's partitions to the cluster (once it is up) and rewrites parts."""

    client: Any
    dataset: str
    snapshot_id: str
    specs: list[ChunkerSpec]
    options: IngestOptions
    store_url: str | None

    def submit(self, part: int, packed: tuple[bytes, bytes]) -> Any:
        o = self.options
        return _client(self.client).submit(
            _hash_partition, part, packed, self.specs, o.zstd_level, self.dataset, self.snapshot_id, o.rewrite,
            self.store_url, o.upload, key=f"storelab-{self.snapshot_id}-{part}", retries=3, pure=False,
        )  # fmt: skip

    def drop(self, part: int, digests: set[bytes]) -> Any:
        return _client(self.client).submit(_drop_blobs, self.dataset, self.snapshot_id, part, digests, pure=False, retries=3)

    def ready(self) -> bool:
        return not isinstance(self.client, StartingClient) or self.client.ready()


def cluster_events(tree: Tree, tasks: _HashingTasks, on_partition: Callable[[int], None] | None = None) -> Iterator[IngestEvent]:
    """A tree hashed by cluster tasks, as ingest events: the driver's listings while it walks
    and submits partitions, then each partition's files (in partition order: the first
    partition to meet a blob keeps its rows; later parts are rewritten without them)."""
    from distributed import as_completed

    entries = tree.entries
    futures: list[Any] = []
    waiting_parts: list[tuple[int, tuple[bytes, bytes]]] = []
    listed: list[IngestEvent] = []

    def listed_jobs() -> Iterator[FileJob]:
        for listing in tree.walk():
            if listing.directory is not None:
                listed.append(Listed(listing.directory, listing.children))
            yield from (FileJob(i, tree.absolute(entries[i]), entries[i].size) for i in listing.files)

    for part, jobs in enumerate(batch_jobs(listed_jobs(), PARTITION_BYTES, PARTITION_FILES)):
        yield from listed
        listed.clear()
        waiting_parts.append((part, (np.array([j.index for j in jobs], dtype=np.int64).tobytes(), b"\0".join(j.path for j in jobs))))
        if tasks.ready():  # else: keep scanning while the cluster starts
            futures.extend(tasks.submit(p, packed) for p, packed in waiting_parts)
            waiting_parts.clear()
    yield from listed
    futures.extend(tasks.submit(p, packed) for p, packed in waiting_parts)
    for item in tree.skipped:
        yield Skipped(item.path, item.reason)
    first_part: dict[bytes, int] = {}  # digest → the first partition that met it
    waiting: dict[int, list[_PartResult]] = {}
    rewrites = []
    next_part = 0
    for future in as_completed(futures):
        outcome = _task_result(future)
        waiting[outcome[0].part] = outcome
        if outcome[0].store_ops:
            yield StoreRequests(StoreOps(*outcome[0].store_ops))
        if on_partition:
            on_partition(outcome[0].part)
        # recorded in partition order as results arrive, overlapping the driver's work with
        # the tasks still running
        while next_part in waiting:
            results = waiting.pop(next_part)
            yield from _part_events(results, entries)
            drop = _later_occurrences(results[0], first_part)
            if drop:  # blobs an earlier partition wrote: take them out of this part, on the cluster
                rewrites.append(tasks.drop(next_part, drop))
            next_part += 1
    for future in rewrites:
        future.result()


def _task_result(future: Any) -> Any:
    """A finished task's value; a task that failed for good (its retries spent) is one line,
    whatever it raised on the worker."""
    try:
        return future.result()
    except StorelabError:
        raise
    except Exception as err:  # noqa: BLE001 — the worker's error, of any kind, becomes the one line
        raise StorelabError(f"a cluster task failed: {type(err).__name__}: {err}") from None


def _cluster_store(options: IngestOptions) -> tuple[BlobStore | None, str | None]:
    """The store of a cluster ingest (opened here for the directory closure) and the URL its
    tasks open it by; a store living in this process cannot be reached from a worker."""
    if options.store is None:
        return None, None
    store = ingest_store(options)
    assert store is not None
    if not store.shareable or store.url.startswith("memory://"):
        raise ConfigError(f"{store.url}: a store in this process's memory cannot be written by cluster workers; use file:// (shared) or s3://")
    return store, store.url


def _part_events(results: Sequence[_PartResult], entries: Sequence[Any]) -> Iterator[IngestEvent]:
    """A partition's files as events (``results``: one per chunking)."""
    first = results[0]
    yield Staged(
        np.frombuffer(first.indices, dtype=np.int64).tolist(),
        first.digests,
        np.frombuffer(first.sizes, dtype=np.uint64).tolist(),
        [np.frombuffer(r.chunk_counts, dtype=np.uint32).tolist() for r in results],
    )
    for index, reason in first.errors:
        yield Skipped(entries[index].path, reason, index)


def _later_occurrences(first: _PartResult, first_part: dict[bytes, int]) -> set[bytes]:
    """The blobs of a partition's part that an earlier partition wrote already (partitions
    taken in order; ``first_part`` maps each digest to the partition that met it first)."""
    drop = set()
    for i in range(len(first.digests) // 32):
        digest = first.digests[32 * i : 32 * i + 32]
        met = first_part.setdefault(digest, first.part)
        if met != first.part:
            drop.add(digest)
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

    from storelab.ingest.fetch import is_remote
    from storelab.tables import new_snapshot_id

    _, store_url = _cluster_store(options)  # each task writes its NAR's objects to the store itself
    if store_url is not None:
        options = replace(options, store=store_url)

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
            _stage_nar, source, ds.location, label, options, sid, owner, key=f"storelab-nar-{sid}", retries=3, pure=False
        ): sid
        for source, sid in zip(sources, ids)
    }  # fmt: skip
    results: list[IngestResult] = []
    try:
        for future in as_completed(futures):
            result = _task_result(future)
            ds.commit_staged(result.snapshot_id)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        for future in futures:
            future.cancel()
    order = {sid: i for i, sid in enumerate(ids)}
    return sorted(results, key=lambda r: order[r.snapshot_id])
