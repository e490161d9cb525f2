"""Run the blob pipeline over many files on every core.

Files go to a process pool in batches (small files together, so per-task overhead stays
small; large files alone), largest first, so a big file never starts last while the other
workers sit idle. Each worker process has its own :class:`BlobHasher` (zstd contexts must not
be shared). ``workers=0`` runs everything in the calling process (tests, debugging).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.ingest.blobs import BlobHasher, BlobInfo
from storelab.ingest.tree import describe_os_error

__all__ = ["FileJob", "FileOutcome", "hash_files", "default_workers"]

BATCH_BYTES = 16 * 1024 * 1024
BATCH_FILES = 512


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to read: where it is, and the index the caller knows it by."""

    index: int
    path: bytes
    size: int


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """The result for one :class:`FileJob`: a :class:`BlobInfo`, or why it was not read."""

    index: int
    info: BlobInfo | None
    error: str | None = None


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_hasher: BlobHasher | None = None


def _init_worker(spec: ChunkerSpec, zstd_level: int, known_sizes: dict[bytes, int]) -> None:
    global _hasher
    # Ctrl-C is the parent's to handle; workers would otherwise print their own tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _hasher = BlobHasher(make_chunker(spec), zstd_level, known_sizes)


def _run_batch(jobs: Sequence[FileJob]) -> list[FileOutcome]:
    assert _hasher is not None
    return [_run_one(_hasher, job) for job in jobs]


def _run_one(hasher: BlobHasher, job: FileJob) -> FileOutcome:
    try:
        return FileOutcome(job.index, hasher.hash_file(job.path))
    except OSError as err:
        return FileOutcome(job.index, None, describe_os_error(err))


def _batches(jobs: Sequence[FileJob]) -> list[list[FileJob]]:
    batches: list[list[FileJob]] = []
    current: list[FileJob] = []
    current_bytes = 0
    for job in sorted(jobs, key=lambda j: j.size, reverse=True):
        current.append(job)
        current_bytes += job.size
        if current_bytes >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, current_bytes = [], 0
    if current:
        batches.append(current)
    return batches


def hash_files(
    jobs: Sequence[FileJob],
    spec: ChunkerSpec,
    zstd_level: int,
    known_sizes: dict[bytes, int] | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[FileOutcome]:
    """Yield one :class:`FileOutcome` per job, in no particular order.

    ``on_progress(files, bytes)`` is called as batches finish. If the consumer stops early
    (an exception, Ctrl-C), the pool is shut down and pending work cancelled.
    """
    known = known_sizes or {}
    workers = default_workers() if workers is None else workers
    batches = _batches(jobs)
    if workers == 0 or len(batches) <= 1:
        hasher = BlobHasher(make_chunker(spec), zstd_level, known)
        for batch in batches:
            outcomes = [_run_one(hasher, job) for job in batch]
            if on_progress:
                on_progress(len(batch), sum(j.size for j in batch))
            yield from outcomes
        return
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(spec, zstd_level, known))
    try:
        # A bounded window of batches in flight keeps memory flat on huge trees.
        pending: dict[Future[list[FileOutcome]], list[FileJob]] = {}
        queue = iter(batches)
        window = workers * 4
        for batch in queue:
            pending[pool.submit(_run_batch, batch)] = batch
            if len(pending) >= window:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                outcomes = future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(_run_batch, nxt)] = nxt
                if on_progress:
                    on_progress(len(batch), sum(j.size for j in batch))
                yield from outcomes
    finally:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
