"""Run the blob pipeline over many files on every core.

Files go to a process pool in batches as the scan finds them (small files together, so
per-task overhead stays small; large files alone, at once), so hashing starts while the tree
is still being walked. A file of 64 MiB or more is also hashed with BLAKE3's own threads, so
a big file found last does not leave the other core idle. Each worker process has its own :class:`BlobHasher` (zstd contexts must not
be shared). ``workers=0`` runs everything in the calling process (tests, debugging).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from storelab.chunking import ChunkerSpec
from storelab.errors import StorelabError
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobHasher, blob_hasher, hash_file_once
from storelab.ingest.tree import describe_os_error
from storelab.ingest.worker_signals import die_with
from storelab.stores.base import BlobStore
from storelab.stores.uploader import UploadOptions, make_uploader

__all__ = ["FileJob", "HashPool", "batch_jobs", "default_workers", "prestart"]

BATCH_BYTES = 16 * 1024 * 1024
BATCH_FILES = 512
WORKER_NICENESS = 5
"""Workers yield the CPU to the process that scans and records: on a machine with as many
workers as cores, that one process is the ingest's critical path (the workers always have
batches queued), and it loses a share of a core to them at equal priority."""


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to read: where it is, and the index the caller knows it by."""

    index: int
    path: bytes
    size: int


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_hashers: list[BlobHasher] = []


def make_hasher(
    spec: ChunkerSpec,
    zstd_level: int,
    known_sizes: dict[bytes, int],
    store: BlobStore | None,
    upload: UploadOptions,
    rewrite: Callable[[bytes], bytes] | None = None,
) -> BlobHasher:
    """A hasher writing to ``store``, small blobs through a background uploader unless
    ``upload.concurrency`` is 0."""
    return blob_hasher(spec, zstd_level, known_sizes, store, make_uploader(store, upload), rewrite)


def make_hashers(
    specs: Sequence[ChunkerSpec],
    zstd_level: int,
    known_sizes: dict[bytes, int],
    store: BlobStore | None,
    upload: UploadOptions,
    rewrite: Callable[[bytes], bytes] | None = None,
) -> list[BlobHasher]:
    """One hasher per chunker (a store only with one), sharing what has been measured: a
    chunk every chunker cuts alike (a small file's only chunk) is compressed once."""
    hashers = [make_hasher(spec, zstd_level, known_sizes, store if len(specs) == 1 else None, upload, rewrite) for spec in specs]
    for hasher in hashers[1:]:
        hasher.known_sizes = hashers[0].known_sizes
    return hashers


def _init_worker(
    specs: Sequence[ChunkerSpec],
    zstd_level: int,
    known_sizes: dict[bytes, int],
    store: BlobStore | None,
    upload: UploadOptions,
    rewrite: Callable[[bytes], bytes] | None,
    command: int,
) -> None:
    # Ctrl-C is the parent's to handle; workers would otherwise print their own tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with(command)  # a killed command leaves no worker writing on behind it
    with contextlib.suppress(OSError):  # not allowed here (a sandbox): equal priority is only slower
        os.nice(WORKER_NICENESS)
    _hashers[:] = make_hashers(specs, zstd_level, known_sizes, store, upload, rewrite)


def _run_packed(packed: tuple[array, bytes]) -> list[BlobBatch]:
    assert _hashers
    indices, paths = packed
    return hash_batches(_hashers, [FileJob(i, p, 0) for i, p in zip(indices, paths.split(b"\0"))], report_ops=True)


def _pack(jobs: Sequence[FileJob]) -> tuple[array, bytes]:
    """Jobs as two flat values: pickling thousands of small objects costs more than hashing them."""
    return array("q", [j.index for j in jobs]), b"\0".join(j.path for j in jobs)


def _forkserver_context() -> multiprocessing.context.ForkServerContext:
    from storelab.ingest.forkserver import context

    return context()


def prestart() -> None:
    """Start the fork server now, in the background (the CLI calls this before its heavy
    imports, so workers are ready by the time the scan has found work for them)."""
    from storelab.ingest.forkserver import start_in_background

    start_in_background()


def _warm_up() -> None:
    """A no-op task: makes the pool boot its workers while the parent is still scanning."""


def hash_batch(hasher: BlobHasher, jobs: Sequence[FileJob], report_ops: bool = False) -> BlobBatch:
    """Hash a batch of files in this process (a store failure ends the ingest: it is no
    property of one file). With a store, the batch returns only once all its blobs are
    stored, so the parent never records a blob the store does not hold."""
    return hash_batches([hasher], jobs, report_ops)[0]


def hash_batches(hashers: Sequence[BlobHasher], jobs: Sequence[FileJob], report_ops: bool = False) -> list[BlobBatch]:
    """Hash a batch of files once for every hasher, reading each file once."""
    builders = [BlobBatchBuilder() for _ in hashers]
    if len(hashers) == 1:
        hasher, builder = hashers[0], builders[0]
        for job in jobs:
            try:
                hasher.hash_file_into(job.path, job.index, builder)
            except OSError as err:
                builder.add_error(job.index, describe_os_error(err))
        hasher.drain()
        return [builder.build(hasher.take_ops().as_tuple() if report_ops else ())]
    for job in jobs:
        try:
            infos = hash_file_once(hashers, job.path)
        except OSError as err:
            for builder in builders:
                builder.add_error(job.index, describe_os_error(err))
            continue
        for builder, info in zip(builders, infos):
            builder.add(job.index, info)
    for hasher in hashers:
        hasher.drain()
    return [b.build(h.take_ops().as_tuple() if report_ops else ()) for b, h in zip(builders, hashers)]


def batch_jobs(jobs: Iterable[FileJob], batch_bytes: int | None = None, batch_files: int | None = None) -> Iterator[list[FileJob]]:
    """Group a stream of jobs: large files alone, at once; small files together, up to
    ``batch_bytes`` or ``batch_files`` a group (default: the worker batch sizes)."""
    max_bytes = BATCH_BYTES if batch_bytes is None else batch_bytes
    max_files = BATCH_FILES if batch_files is None else batch_files
    current: list[FileJob] = []
    current_bytes = 0
    for job in jobs:
        if job.size >= max_bytes:
            yield [job]
            continue
        current.append(job)
        current_bytes += job.size
        if current_bytes >= max_bytes or len(current) >= max_files:
            yield current
            current, current_bytes = [], 0
    if current:
        yield current


class HashPool:
    """Worker processes that read, hash and chunk files.

    Workers start only once there is more than one batch of work, and boot while the caller
    goes on scanning; a small tree is hashed in the calling process.

    >>> from storelab.chunking import default_spec
    >>> with HashPool(default_spec(), zstd_level=0, workers=0) as pool:
    ...     [len(batches) for batches in pool.run([])]
    []
    """

    def __init__(
        self,
        spec: ChunkerSpec | Sequence[ChunkerSpec],
        zstd_level: int,
        known_sizes: dict[bytes, int] | None = None,
        workers: int | None = None,
        store: BlobStore | None = None,
        upload: UploadOptions | None = None,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.rewrite = rewrite
        self.specs = [spec] if isinstance(spec, ChunkerSpec) else list(spec)
        self.store = store
        self.upload = upload or UploadOptions()
        self.zstd_level = zstd_level
        self.known_sizes = known_sizes if known_sizes is not None else {}
        self.workers = default_workers() if workers is None else workers
        if store is not None and not store.shareable:
            self.workers = 0  # a store that lives in this process (memory://, a simulated link)
        self._pool: ProcessPoolExecutor | None = None
        self._booting: threading.Thread | None = None

    def __enter__(self) -> HashPool:
        return self

    def _start(self) -> ProcessPoolExecutor:
        """Start the workers (the first time there is more than one batch of work)."""
        if self._pool is None:
            context = _forkserver_context()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.specs, self.zstd_level, self.known_sizes, self.store, self.upload, self.rewrite, os.getpid()),
            )
            # Booting the fork server takes a moment; let it happen beside the caller's scan.
            self._booting = threading.Thread(target=self._boot, args=(self._pool,), daemon=True)
            self._booting.start()
        return self._pool

    def _boot(self, pool: ProcessPoolExecutor) -> None:
        for _ in range(self.workers):
            pool.submit(_warm_up)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._booting is not None:
            self._booting.join()
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=exc_type is None, cancel_futures=True)
        if exc_type is not None:
            for process in processes:
                if process.is_alive():
                    process.terminate()

    def run(
        self,
        batches: Iterable[Sequence[FileJob]],
        on_progress: Callable[[int, int], None] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> Iterator[list[BlobBatch]]:
        """Yield, per batch of jobs, one :class:`BlobBatch` for each chunker, in no particular order.

        ``batches`` is consumed lazily (a tree can still be being scanned); a bounded number
        are in flight at once. ``on_progress(files, bytes)`` is called as batches finish;
        ``on_started()`` once, when the first batches are being hashed and before the first
        result is yielded (the caller's own set-up then overlaps the hashing).
        """
        queue = iter(batches)
        first, second = next(queue, None), next(queue, None)
        if first is not None and on_started is not None and (self.workers == 0 or second is None):
            on_started()  # hashing here: nothing to overlap
        if self.workers == 0 or second is None:
            # one batch (a small tree) is done sooner here than by starting processes
            hashers = make_hashers(self.specs, self.zstd_level, self.known_sizes, self.store, self.upload, self.rewrite)
            try:
                for batch in itertools.chain((b for b in (first, second) if b is not None), queue):
                    result = hash_batches(hashers, batch)
                    if on_progress:
                        on_progress(len(batch), sum(j.size for j in batch))
                    yield result
            finally:
                for hasher in hashers:
                    if hasher.uploader is not None:
                        hasher.uploader.close()
            return
        pool = self._start()
        assert first is not None and second is not None
        queue = itertools.chain((first, second), queue)
        pending: dict[Future[list[BlobBatch]], Sequence[FileJob]] = {}
        exhausted = False
        window = self.workers * 4
        while True:
            while not exhausted and len(pending) < window:
                waiting = next(queue, None)
                if waiting is None:
                    exhausted = True
                else:
                    pending[pool.submit(_run_packed, _pack(waiting))] = waiting
            if on_started is not None:
                on_started()
                on_started = None
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise StorelabError(
                        "a worker process died (killed by the OS for memory?); if you call storelab from a "
                        "script, put the call under `if __name__ == '__main__':`, or pass workers=0"
                    ) from None
                if on_progress:
                    on_progress(len(batch), sum(j.size for j in batch))
                yield result
