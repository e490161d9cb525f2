"""Hash batches of files in this process: the unit of work of the ingest's workers.

A batch is many small files together (per-task overhead stays small) or one large file
alone; what comes back is one :class:`~storelab.ingest.batch.BlobBatch` per chunker, flat
columns cheap to send between processes. Plain Python and BLAKE3 only: worker processes
import this, and boot fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from storelab.ingest.batch import NOT_MEASURED, BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobHasher, hash_file_once
from storelab.ingest.tree import describe_os_error

__all__ = ["BATCH_BYTES", "BATCH_FILES", "FileJob", "batch_jobs", "hash_batch", "hash_batches"]

BATCH_BYTES = 16 * 1024 * 1024
"""A file this large is a batch of its own (hashed by a worker at once, beside the rest)."""
BATCH_FILES = 512


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to read: where it is, and the index the caller knows it by."""

    index: int
    path: bytes
    size: int


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
        limit = hasher.native_small_files
        start = 0
        while start < len(jobs):
            end = start
            while end < len(jobs) and jobs[end].size <= limit:
                end += 1
            if end > start:  # a run of small files: read and hashed in C
                _hash_small_run(hasher, jobs[start:end], builder)
                start = end
            else:
                _hash_one(hasher, jobs[start], builder)
                start += 1
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


def _hash_one(hasher: BlobHasher, job: FileJob, builder: BlobBatchBuilder) -> None:
    try:
        hasher.hash_file_into(job.path, job.index, builder)
    except OSError as err:
        builder.add_error(job.index, describe_os_error(err))


def _hash_small_run(hasher: BlobHasher, run: Sequence[FileJob], builder: BlobBatchBuilder) -> None:
    """Files listed as single-chunk, in order: those the compiled reader did not do (see
    :meth:`BlobHasher.hash_small_files`) hashed the ordinary way, in their place."""
    done, digests, sizes = hasher.hash_small_files([job.path for job in run])
    if len(sizes) == len(run):
        builder.add_singles([job.index for job in run], digests, sizes)
        return
    k = 0
    for job, ok in zip(run, done):
        if ok:
            builder.add_single(job.index, digests[32 * k : 32 * k + 32], sizes[k], NOT_MEASURED)
            k += 1
        else:
            _hash_one(hasher, job, builder)


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
