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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import StorelabError
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobHasher
from storelab.ingest.tree import describe_os_error

__all__ = ["FileJob", "HashPool", "default_workers"]

BATCH_BYTES = 16 * 1024 * 1024
BATCH_FILES = 512


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to read: where it is, and the index the caller knows it by."""

    index: int
    path: bytes
    size: int


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_hasher: BlobHasher | None = None


def _init_worker(spec: ChunkerSpec, zstd_level: int, known_sizes: dict[bytes, int]) -> None:
    global _hasher
    # Ctrl-C is the parent's to handle; workers would otherwise print their own tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _hasher = BlobHasher(make_chunker(spec), zstd_level, known_sizes)


def _run_batch(jobs: Sequence[FileJob]) -> BlobBatch:
    assert _hasher is not None
    return hash_batch(_hasher, jobs)


def _warm_up() -> None:
    """A no-op task: makes the pool boot its workers while the parent is still scanning."""


def hash_batch(hasher: BlobHasher, jobs: Sequence[FileJob]) -> BlobBatch:
    """Hash a batch of files in this process."""
    builder = BlobBatchBuilder()
    for job in jobs:
        try:
            builder.add(job.index, hasher.hash_file(job.path))
        except OSError as err:
            builder.add_error(job.index, describe_os_error(err))
    return builder.build()


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


class HashPool:
    """Worker processes that read, hash and chunk files.

    Enter it early: the workers boot while the caller scans the tree.

    >>> from storelab.chunking import default_spec
    >>> with HashPool(default_spec(), zstd_level=0, workers=0) as pool:
    ...     [len(batch) for batch in pool.run([])]
    []
    """

    def __init__(
        self,
        spec: ChunkerSpec,
        zstd_level: int,
        known_sizes: dict[bytes, int] | None = None,
        workers: int | None = None,
    ) -> None:
        self.spec = spec
        self.zstd_level = zstd_level
        self.known_sizes = known_sizes or {}
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> HashPool:
        if self.workers > 0:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.spec, self.zstd_level, self.known_sizes),
            )
            for _ in range(self.workers):
                self._pool.submit(_warm_up)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=exc_type is None, cancel_futures=True)
        if exc_type is not None:
            for process in processes:
                if process.is_alive():
                    process.terminate()

    def run(self, jobs: Sequence[FileJob], on_progress: Callable[[int, int], None] | None = None) -> Iterator[BlobBatch]:
        """Yield :class:`BlobBatch` results covering every job once, in no particular order.

        ``on_progress(files, bytes)`` is called as batches finish.
        """
        batches = _batches(jobs)
        if self._pool is None or len(batches) <= 1:
            hasher = BlobHasher(make_chunker(self.spec), self.zstd_level, self.known_sizes)
            for batch in batches:
                result = hash_batch(hasher, batch)
                if on_progress:
                    on_progress(len(batch), sum(j.size for j in batch))
                yield result
            return
        # A bounded window of batches in flight keeps memory flat on huge trees.
        pending: dict[Future[BlobBatch], list[FileJob]] = {}
        queue = iter(batches)
        for batch in queue:
            pending[self._pool.submit(_run_batch, batch)] = batch
            if len(pending) >= self.workers * 4:
                break
        while pending:
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
                following = next(queue, None)
                if following is not None:
                    pending[self._pool.submit(_run_batch, following)] = following
                if on_progress:
                    on_progress(len(batch), sum(j.size for j in batch))
                yield result
