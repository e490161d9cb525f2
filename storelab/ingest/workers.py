"""Run the blob pipeline over many files on every core.

A process pool takes tasks: subtrees to list, hash and assemble whole
(:mod:`~storelab.ingest.subtrees`), and batches of files (the files a subtree hands back:
large ones each alone, at once). The first task is done in the calling process; what it
hands back goes to the workers as they boot. A file of 64 MiB or more is also hashed with
BLAKE3's own threads, so a big file found last does not leave the other core idle. Each
worker process has its own :class:`BlobHasher` (zstd contexts must not be shared).
``workers=0`` runs everything in the calling process (tests, debugging).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

from storelab.chunking import ChunkerSpec
from storelab.errors import StorelabError
from storelab.ingest.batch import BlobBatch
from storelab.ingest.blobs import BlobHasher, blob_hasher
from storelab.ingest.hashing import FileJob, hash_batches
from storelab.ingest.subtrees import SubtreeResult, SubtreeTask, walk_subtree
from storelab.ingest.worker_signals import die_with
from storelab.stores.base import BlobStore
from storelab.stores.uploader import UploadOptions, make_uploader

__all__ = ["HashPool", "Outcome", "Task", "default_workers", "do_task", "make_hashers", "prestart"]

SUBTREES_PER_SUBMISSION = 8
"""At most this many subtrees go to a worker in one submission."""
WORKER_NICENESS = 5
"""Workers yield the CPU to the process that scans and records: on a machine with as many
workers as cores, that one process is the ingest's critical path (the workers always have
batches queued), and it loses a share of a core to them at equal priority."""


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_hashers: list[BlobHasher] = []
_keep_directories: list[bool] = []


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
    keep_directories: bool,
    command: int,
) -> None:
    # Ctrl-C is the parent's to handle; workers would otherwise print their own tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with(command)  # a killed command leaves no worker writing on behind it
    with contextlib.suppress(OSError):  # not allowed here (a sandbox): equal priority is only slower
        os.nice(WORKER_NICENESS)
    _hashers[:] = make_hashers(specs, zstd_level, known_sizes, store, upload, rewrite)
    _keep_directories[:] = [keep_directories]


class _Subtrees(list[SubtreeTask]):
    """Subtrees submitted together (told apart from a batch of files, also a list)."""


def _run_subtrees(tasks: list[SubtreeTask]) -> list[SubtreeResult]:
    assert _hashers
    return [walk_subtree(task, _hashers, _keep_directories[0], report_ops=True) for task in tasks]


Task = SubtreeTask | Sequence[FileJob]
"""What a worker does: walk a subtree, or hash a batch of files."""
Outcome = SubtreeResult | list[BlobBatch]
"""A subtree's result, or a batch's blobs (one :class:`BlobBatch` per chunker)."""


def do_task(hashers: Sequence[BlobHasher], task: Task, keep_directories: bool) -> Outcome:
    """Do one task in this process."""
    if isinstance(task, SubtreeTask):
        return walk_subtree(task, hashers, keep_directories)
    return hash_batches(hashers, task)


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


class HashPool:
    """Worker processes that read, hash and chunk files.

    Workers start only once the first task (done in the calling process) hands back more
    work, and boot while the caller records its outcome; a small tree is done here.

    >>> from storelab.chunking import default_spec
    >>> from collections import deque
    >>> with HashPool(default_spec(), zstd_level=0, workers=0) as pool:
    ...     [len(batches) for _, batches in pool.run(deque([[]]))]
    [1]
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
        self.keep_directories = store is not None
        """Subtrees keep their encoded directories (the store gets the closure)."""
        self._pool: ProcessPoolExecutor | None = None
        self._queue: deque[Task] = deque()
        self._pending: dict[Future, Task | _Subtrees] = {}
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
                initargs=(self.specs, self.zstd_level, self.known_sizes, self.store, self.upload, self.rewrite, self.keep_directories, os.getpid()),
            )
            # Booting the fork server takes a moment; let it happen beside the caller's scan.
            self._booting = threading.Thread(target=self._boot, args=(self._pool,), daemon=True)
            self._booting.start()
        return self._pool

    def _boot(self, pool: ProcessPoolExecutor) -> None:
        # Only a head start: a pool that cannot start (the fork server gone, the command
        # interrupted) says so where its work is submitted, as one line, not from this thread.
        with contextlib.suppress(Exception):
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
            # then let the pool's manager thread finish its own clean-up (its queues' semaphores)
            # before the interpreter tears down: else the resource tracker may warn of a
            # "leaked semaphore" on an interrupted command's stderr
            for process in processes:
                process.join(5)
            with contextlib.suppress(Exception):
                pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: deque[Task]) -> Iterator[tuple[Task, Outcome]]:
        """Do ``tasks`` — subtrees to walk (:class:`SubtreeTask`: a :class:`SubtreeResult`
        each) and batches of files (one :class:`BlobBatch` per chunker each) — yielding each
        with its outcome, in no particular order. The caller adds to ``tasks`` what an
        outcome hands back (and may call :meth:`dispatch` at once, so that the workers start
        on it before the caller goes on with the outcome).

        The first task is done here: a small tree is done before a process could start, and
        a large one hands back its parts at once. Workers start only if it does; a bounded
        number of tasks are in flight.
        """
        if not tasks:
            return
        local = make_hashers(self.specs, self.zstd_level, self.known_sizes, self.store, self.upload, self.rewrite)
        try:
            first = tasks.popleft()
            outcome = do_task(local, first, self.keep_directories)
            hands_back = isinstance(outcome, SubtreeResult) and outcome.root is None
            if self.workers == 0 or not hands_back and not tasks:
                yield first, outcome
                while tasks:  # everything here (workers=0), or a first task that handed back nothing
                    task = tasks.popleft()
                    yield task, do_task(local, task, self.keep_directories)
                return
        finally:
            for hasher in local:
                if hasher.uploader is not None:
                    hasher.uploader.close()
        self._start()
        self._queue = tasks
        yield first, outcome
        while True:
            self.dispatch()
            if not self._pending:
                return
            done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
            for future in done:
                submitted = self._pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise StorelabError(
                        "a worker process died (killed by the OS for memory?); if you call storelab from a "
                        "script, put the call under `if __name__ == '__main__':`, or pass workers=0"
                    ) from None
                if isinstance(submitted, _Subtrees):  # done one after the other
                    yield from zip(submitted, result)
                else:
                    yield submitted, result

    def dispatch(self) -> None:
        """Hand the tasks waiting in :meth:`run`'s queue to the workers, as many as may be in
        flight (nothing when the workers are not running)."""
        pool = self._pool
        if pool is None:
            return
        window = self.workers * 4
        queue = self._queue
        while queue and len(self._pending) < window:
            task = queue.popleft()
            if not isinstance(task, SubtreeTask):
                self._pending[pool.submit(_run_packed, _pack(task))] = task
                continue
            # Subtrees go several to a submission while many wait (a binary cache's store
            # paths are small: one each would cost the pool more than walking them), one at
            # a time towards the end, so no worker is left with a long list.
            group = [task]
            share = min(SUBTREES_PER_SUBMISSION, 1 + len(queue) // (2 * window))
            while len(group) < share and queue and isinstance(queue[0], SubtreeTask):
                group.append(queue.popleft())  # type: ignore[arg-type]
            self._pending[pool.submit(_run_subtrees, group)] = _Subtrees(group)
