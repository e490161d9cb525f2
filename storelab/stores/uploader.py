"""Concurrent small-blob upload, as tvix does it.

Blobs below a threshold (1 MiB) are held in memory once hashed and uploaded in the
background while ingestion goes on; at most ``max_buffered`` bytes wait at once (128 MiB), so
a fast disk and a slow link do not fill memory. A blob's index is written only once every
one of its chunks is in the store. The first failure stops the uploader: every later
``submit`` and the final ``drain`` raise it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from storelab.stores.backends import StoreError
from storelab.stores.base import BlobStore, ChunkMeta

__all__ = ["UploadOptions", "Uploader", "PendingChunk", "make_uploader"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """How blobs reach the store.

    ``concurrency=0`` uploads everything inline, one request after another (the sequential
    baseline); otherwise blobs smaller than ``threshold`` go up on ``concurrency`` threads.
    """

    concurrency: int = 32
    threshold: int = 1 * MiB
    max_buffered: int = 128 * MiB


@dataclass(frozen=True, slots=True)
class PendingChunk:
    """A chunk waiting to be uploaded; ``compressed`` when the hasher already compressed it."""

    digest: bytes
    data: bytes
    compressed: bytes | None = None


class Uploader:
    """Uploads whole small blobs (chunks, then index) on a pool of threads.

    >>> from storelab.stores import open_store
    >>> import blake3
    >>> store = open_store("memory://")
    >>> digest = blake3.blake3(b"hi").digest()
    >>> with Uploader(store, UploadOptions(concurrency=4)) as up:
    ...     up.submit(digest, [PendingChunk(digest, b"hi")], [ChunkMeta(digest, 2)])
    >>> store.has_blob(digest), store.read_chunk(digest, 2)
    (True, b'hi')
    """

    def __init__(self, store: BlobStore, options: UploadOptions) -> None:
        if options.concurrency < 1:
            raise ValueError("an Uploader needs concurrency >= 1")
        self.store = store
        self.options = options
        self._pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="storelab-upload")
        self._room = threading.Condition()
        self._buffered = 0
        self._in_flight: set[Future[None]] = set()
        self._error: BaseException | None = None
        self._landed: dict[bytes, threading.Event] = {}  # chunk → set once it is in the store
        self._indexes: set[bytes] = set()  # blobs handed over (their index is written once)

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.drain()
        self.close()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, blob_digest: bytes, chunks: Sequence[PendingChunk], index: Sequence[ChunkMeta]) -> None:
        """Queue a blob; blocks while the buffer is full; raises the first upload failure.

        A chunk or blob this uploader already has in hand is not sent twice: the blob waits
        for the earlier upload of that chunk before its own index is written.
        """
        with self._room:
            self._raise_if_failed()
            if blob_digest in self._indexes:
                return  # the same blob (an identical file) is already on its way
            self._indexes.add(blob_digest)
            own, waits = [], []
            for chunk in chunks:
                landed = self._landed.get(chunk.digest)
                if landed is None:
                    self._landed[chunk.digest] = threading.Event()
                    own.append(chunk)
                elif not landed.is_set():
                    waits.append(landed)
            nbytes = sum(len(c.data) for c in own)
            # a blob larger than the whole budget still goes, alone
            while self._buffered and self._buffered + nbytes > self.options.max_buffered and self._error is None:
                self._room.wait()
            self._raise_if_failed()
            self._buffered += nbytes
        future = self._pool.submit(self._upload, blob_digest, own, waits, index)
        with self._room:
            self._in_flight.add(future)
        future.add_done_callback(lambda f: self._done(f, nbytes))

    def _upload(
        self, blob_digest: bytes, chunks: Sequence[PendingChunk], waits: Sequence[threading.Event], index: Sequence[ChunkMeta]
    ) -> None:
        try:
            if self._error is not None:
                return  # the ingest is failing; do not start more requests
            for chunk in chunks:
                self.store.put_chunk(chunk.digest, chunk.data, chunk.compressed)
                self._landed[chunk.digest].set()
            # chunks another blob of this run is uploading: they were submitted earlier, so
            # their uploads are running or ahead in the queue (no cycle can form)
            for landed in waits:
                landed.wait()
            if self._error is None:
                self.store.put_index(blob_digest, index)
        except BaseException as err:
            self._fail(err)  # before the waiters wake: they must see the failure
            raise
        finally:
            for chunk in chunks:  # wake waiters even when failing; they check the error first
                self._landed[chunk.digest].set()

    def _fail(self, error: BaseException) -> None:
        with self._room:
            if self._error is None:
                self._error = error if isinstance(error, StoreError) else StoreError(f"{self.store.url}: upload failed: {error}")
            self._room.notify_all()

    def _done(self, future: Future[None], nbytes: int) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            self._fail(error)
        with self._room:
            self._buffered -= nbytes
            self._in_flight.discard(future)
            self._room.notify_all()

    @property
    def buffered(self) -> int:
        """Bytes held in memory, waiting for their upload."""
        return self._buffered

    def drain(self) -> None:
        """Wait for every queued upload; raise the first failure."""
        with self._room:
            while self._in_flight:
                self._room.wait()
        self._raise_if_failed()

    def close(self) -> None:
        with self._room:
            if self._error is None and self._in_flight:
                self._error = StoreError(f"{self.store.url}: upload cancelled")
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_uploader(store: BlobStore | None, options: UploadOptions) -> Uploader | None:
    """The background uploader an ingest into ``store`` uses; None without a store, or when
    ``options.concurrency`` is 0 (every request inline, in turn)."""
    return Uploader(store, options) if store is not None and options.concurrency > 0 else None
