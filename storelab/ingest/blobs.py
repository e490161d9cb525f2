"""The blob pipeline: read a file once, and from that one pass get its BLAKE3 digest, its
chunks (each with its own BLAKE3 digest) and each new chunk's zstd-compressed size.

This is the per-byte hot path. Every byte is touched by C/Rust code (BLAKE3, the chunker,
zstd) from one reused read buffer (small files from one read call); Python only moves views
around. Runs of single-chunk files can be read and hashed in C, nothing done in Python per file
(:meth:`BlobHasher.hash_small_files`, ``_smallfiles.c``), when the hasher needs no more than
their digests.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import ModuleType

import blake3
import zstandard

from storelab.chunking import Chunker, ChunkerSpec
from storelab.ingest.batch import BlobBatchBuilder, BlobInfo
from storelab.ingest.tree import SmallReads, open_deep
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore, ChunkMeta
from storelab.stores.snix import ZSTD_LEVEL as STORE_ZSTD_LEVEL
from storelab.stores.snix import zstd_stream
from storelab.stores.uploader import PendingChunk, Uploader

__all__ = ["BlobInfo", "BlobHasher", "FileChangedError", "READ_BUFFER", "hash_file_once"]

READ_BUFFER = 8 * 1024 * 1024
PARALLEL_HASH_FROM = 64 * 1024 * 1024
"""Files at least this large are hashed with BLAKE3's own threads as well."""


def _compiled_reader() -> ModuleType | None:
    """The small-file reader in C (``_smallfiles.c``); None in a checkout where it is not built
    (the same results come from Python, file by file)."""
    try:
        return importlib.import_module("storelab.ingest._smallfiles")
    except ImportError:
        return None


_smallfiles = _compiled_reader()

# Never follow a symlink swapped in since the scan, never block on a FIFO.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

def blob_hasher(
    spec: ChunkerSpec, zstd_level: int = 3, known_sizes: dict[bytes, int] | None = None, store: BlobStore | None = None,
    uploader: Uploader | None = None, rewrite: Callable[[bytes], bytes] | None = None,
) -> BlobHasher:  # fmt: skip
    """The hasher of one per-file chunking: ``spec``'s chunker, and for a ``refs-zeroed`` spec
    the store-path hashes blanked before chunking (after ``rewrite``, if any), the blob keeping
    the file's own digest."""
    from storelab.chunking import make_chunker

    if spec.scope != "refs-zeroed":
        return BlobHasher(make_chunker(spec), zstd_level, known_sizes, store, uploader, rewrite)
    from storelab.nar.references import normalize_store_paths

    blank = normalize_store_paths if rewrite is None else (lambda data: normalize_store_paths(rewrite(data)))
    return BlobHasher(make_chunker(spec), zstd_level, known_sizes, store, uploader, blank, keep_digest=rewrite is None)


class FileChangedError(OSError):
    """The file changed size or was modified while it was being read."""


class BlobHasher:
    """Hashes, chunks and measures blobs; one per process or thread (zstd contexts are not
    thread-safe).

    ``known_sizes`` maps chunk digests to compressed sizes already measured (in the dataset,
    or earlier in this run) so each distinct chunk is compressed once.

    >>> from storelab.chunking import make_chunker, default_spec
    >>> hasher = BlobHasher(make_chunker(default_spec()), zstd_level=3)
    >>> info = hasher.hash_bytes(b"Hello World!")
    >>> info.digest.hex()[:12], info.chunk_count, info.chunk_digests == info.digest
    ('5ca7815adcb4', 1, True)
    """

    def __init__(
        self,
        chunker: Chunker,
        zstd_level: int = 3,
        known_sizes: dict[bytes, int] | None = None,
        store: BlobStore | None = None,
        uploader: Uploader | None = None,
        rewrite: Callable[[bytes], bytes] | None = None,
        keep_digest: bool = False,
    ) -> None:
        self.chunker = chunker
        # what-if passes change each blob's bytes before anything is hashed (whole blobs in memory)
        self.rewrite = rewrite
        # a refs-zeroed chunking: the chunks are of the rewritten bytes, the blob keeps its own digest
        self.keep_digest = keep_digest
        self.store = store
        self.uploader = uploader if store is not None else None
        # chunks of the blob being hashed, held for a background upload (None: upload inline)
        self._pending: list[PendingChunk] | None = None
        self._stored: set[bytes] = set()  # chunks this hasher has seen land in the store
        self._ops_reported = StoreOps()
        # the store compresses at snix's level: when we measure at the same level, its size is ours
        self._store_measures = store is not None and zstd_level == STORE_ZSTD_LEVEL
        self.zstd_level = zstd_level
        # measured as snix compresses: a streaming encoder never told the size (zstd_stream)
        self._zstd = zstandard.ZstdCompressor(level=zstd_level) if zstd_level else None
        # shared, not copied: a KnownSizes looks up the dataset's index behind what is measured here
        self.known_sizes: dict[bytes, int] = known_sizes if known_sizes is not None else {}
        self._single_chunk_max = self._largest_single_chunk()
        self._buffer = bytearray()  # the read window of large files (_hash_read), kept across files
        self._small: memoryview | None = None  # the read buffer of single-chunk files (_small_view)

    def _largest_single_chunk(self) -> int:
        """Blobs up to this size are one chunk whatever their bytes (no cut is looked for)."""
        return self.chunker.single_chunk_max

    def _begin(self, size: int) -> None:
        """A blob starts: the chunker forgets the last one; small blobs are held for the
        background uploader, if there is one."""
        self.chunker.begin()
        uploader = self.uploader
        self._pending = [] if uploader is not None and size < uploader.options.threshold else None

    def _chunk(self, digest: bytes, data: memoryview | bytes) -> int | None:
        """Store the chunk (with a store) and measure its compressed size (when measuring).

        Each distinct chunk is compressed once: sizes already known are reused, and when the
        store compresses at the measuring level its stored size is the measurement.
        """
        size = self.known_sizes.get(digest) if self._zstd is not None else None
        if self.store is not None and digest not in self._stored:
            if self._pending is not None:
                compressed = None
                if size is None and self._store_measures:
                    compressed = self.store.compress(data)
                    size = self.known_sizes[digest] = len(compressed)
                self._pending.append(PendingChunk(digest, bytes(data), compressed))
            else:
                stored = self.store.put_chunk(digest, data)
                self._stored.add(digest)
                if size is None and self._store_measures:
                    size = self.known_sizes[digest] = stored
        if self._zstd is not None and size is None:
            size = self.known_sizes[digest] = len(zstd_stream(self._zstd, data))
        return size

    def _finish(self, info: BlobInfo) -> BlobInfo:
        """With a store: write the blob's index once all its chunks are there (or hand the
        whole blob to the background uploader)."""
        if self.store is not None:
            chunks = [ChunkMeta(info.chunk_digest(i), n) for i, n in enumerate(info.chunk_sizes)]
            pending, self._pending = self._pending, None
            if pending is not None:
                self.uploader.submit(info.digest, pending, chunks)  # type: ignore[union-attr]
            else:
                self.store.put_index(info.digest, chunks)
        return info

    def drain(self) -> None:
        """Wait until every blob handed out for upload is in the store (raises its failure)."""
        if self.uploader is not None:
            self.uploader.drain()

    def take_ops(self) -> StoreOps:
        """Store requests made since the last call (what a worker reports with each batch)."""
        if self.store is None:
            return StoreOps()
        now = self.store.ops
        delta, self._ops_reported = now - self._ops_reported, now
        return delta

    def hash_bytes(self, data: bytes | bytearray | memoryview) -> BlobInfo:
        """Hash and chunk a blob held in memory."""
        view = memoryview(data)
        size = len(view)
        self._begin(size)
        if size == 0:
            return self._finish(BlobInfo(blake3.blake3(b"").digest(), 0, b"", array("Q"), array("Q") if self._zstd else None))
        if size <= self._single_chunk_max:
            digest = blake3.blake3(view).digest()
            sizes = array("Q", (size,))
            measured = self._chunk(digest, view)
            compressed = array("Q", (measured,)) if measured is not None else None
            return self._finish(BlobInfo(digest, size, digest, sizes, compressed))
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= PARALLEL_HASH_FROM else 1)
        hasher.update(view)
        digests, sizes, compressed = self._cut(view, eof=True)
        return self._finish(BlobInfo(hasher.digest(), size, bytes(digests), sizes, compressed))

    def hash_held(self, data: bytes) -> BlobInfo:
        """A file's blob from its bytes held whole (:meth:`hash_bytes` is of the bytes as they
        are): the blob of ``data`` after :attr:`rewrite` (none: of ``data``); under
        ``keep_digest`` named by ``data``'s own digest."""
        if self.rewrite is None:
            return self.hash_bytes(data)
        info = self.hash_bytes(self.rewrite(data))
        return replace(info, digest=blake3.blake3(data).digest()) if self.keep_digest else info

    def hash_pieces(self, size: int, pieces: Iterable[bytes]) -> BlobInfo:
        """Hash and chunk a blob that arrives in pieces (from a NAR stream, a socket…).

        ``size`` is the announced length; memory holds at most one read window plus the
        chunker's lookahead, whatever the blob's size.
        """
        if size <= self._single_chunk_max or self.rewrite is not None:
            data = b"".join(pieces)
            return self.hash_held(data)
        cut = _StreamCut(self, size)
        for piece in pieces:
            cut.feed(piece)
        return cut.finish()

    def _cut_into(self, data: bytearray, eof: bool, digests: bytearray, sizes: array, compressed: array | None) -> int:
        with memoryview(data) as view:
            d, s, c = self._cut(view, eof)
        digests += d
        sizes.extend(s)
        if compressed is not None and c is not None:
            compressed.extend(c)
        return sum(s)

    def _cut(self, view: memoryview, eof: bool, whole: blake3.blake3 | None = None) -> tuple[bytearray, array, array | None]:
        """Chunks of ``view`` (all of it at ``eof``, else up to the last cut the chunker is sure
        of); ``whole``, the blob's own hasher, is fed each chunk right after its digest, while
        its bytes are still in the CPU's cache."""
        digests = bytearray()
        sizes = array("Q")
        compressed = array("Q") if self._zstd else None
        offset = 0
        for length in self.chunker.split(view, eof):
            piece = view[offset : offset + length]
            digest = blake3.blake3(piece).digest()
            if whole is not None:
                whole.update(piece)
            digests += digest
            sizes.append(length)
            measured = self._chunk(digest, piece)
            if compressed is not None and measured is not None:
                compressed.append(measured)
            offset += length
        return digests, sizes, compressed

    def hash_file(self, path: bytes | str) -> BlobInfo:
        """Read a regular file once; raises OSError (or :class:`FileChangedError`)."""
        with stable_file(path) as (fd, size):
            if self.rewrite is not None:
                return self.hash_held(_read_exactly(fd, size))
            if size <= self._single_chunk_max:
                # one read() call: a file that grew shows up as one byte too many
                info = self.hash_bytes(os.read(fd, size + 1))
                if info.size != size:
                    raise FileChangedError(0, "changed while being read")
                return info
            return self._hash_read(fd, size)

    def hash_file_into(self, path: bytes | str, index: int, builder: BlobBatchBuilder) -> None:
        """:meth:`hash_file` straight into a batch: the per-file path of a tree of many small
        files, with nothing allocated per file but the digest (no store, no rewrite: those
        take :meth:`hash_file`). Raises OSError (or :class:`FileChangedError`) as it does."""
        if self.store is not None or self.rewrite is not None:
            builder.add(index, self.hash_file(path))
            return
        fd, before = _open_regular(path)
        try:
            size = before.st_size
            info = None
            if size <= self._single_chunk_max:
                # one read call: a file that grew shows one byte too many
                small = self._small or self._small_view()
                with small[: os.readv(fd, [small[: size + 1]])] as data:
                    if len(data) != size:
                        raise FileChangedError(0, "changed while being read")
                    digest = blake3.blake3(data).digest()
                    # the chunk's compressed size, each distinct chunk measured once (None: not measuring)
                    measured = self._chunk(digest, data) if size else (0 if self._zstd is not None else None)
            else:
                info = self._hash_read(fd, size)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        _check_unchanged(before, after)
        if info is None:
            builder.add_single(index, digest, size, -1 if measured is None else measured)
        else:
            builder.add(index, info)

    @property
    def digest_only_max(self) -> int:
        """Blobs up to this size need nothing but their BLAKE3 digest — one chunk, the blob
        itself, with nothing to store, rewrite or measure (``add_single(index,
        blake3(data).digest(), size, NOT_MEASURED)`` records one); -1 when no blob is so."""
        if self.store is not None or self.rewrite is not None or self._zstd is not None:
            return -1
        return self._single_chunk_max

    @property
    def native_small_files(self) -> int:
        """Files up to this size may go through :meth:`hash_small_files`; -1 when none may:
        this hasher must see each file's bytes itself (a store, a rewrite, zstd sizes to
        measure), or the compiled reader (``_smallfiles.c``) is not built here."""
        return -1 if _smallfiles is None else self.digest_only_max

    def hash_small_files(self, paths: Sequence[bytes]) -> tuple[bytes, bytes, array]:
        """Read and hash single-chunk files in C, with nothing done in Python per file:
        ``(done, digests, sizes)`` — one byte per path (1: hashed), and the digests (32 bytes
        each) and sizes of the files done, in order. A file not done (an error, not a regular
        file any more, grown past the limit, changed while read, a path too long for one open)
        is the caller's to hash with :meth:`hash_file_into`, which says what went wrong.
        Only while :attr:`native_small_files` is not -1.

        >>> import tempfile, pathlib
        >>> from storelab.chunking import default_spec, make_chunker
        >>> top = pathlib.Path(tempfile.mkdtemp()); (top / "a").write_bytes(b"hi")
        2
        >>> hasher = BlobHasher(make_chunker(default_spec()), zstd_level=0)
        >>> done, digests, sizes = hasher.hash_small_files([bytes(top / "a"), bytes(top / "gone")])
        >>> list(done), digests == blake3.blake3(b"hi").digest(), list(sizes)
        ([1, 0], True, [2])
        """
        assert _smallfiles is not None and self.native_small_files >= 0
        small = self._small or self._small_view()
        done, digests, sizes = _smallfiles.hash_files(paths, self._single_chunk_max, small, blake3.blake3)
        return done, digests, array("Q", sizes)

    def listing_reads(self) -> SmallReads | None:
        """The files a directory listing may read and hash for this hasher
        (:class:`~storelab.ingest.tree.SmallReads`): single-chunk files, into the buffer
        :meth:`hash_small_files` reads into — or None while :attr:`native_small_files` is -1.

        >>> from storelab.chunking import default_spec, make_chunker
        >>> BlobHasher(make_chunker(default_spec()), zstd_level=0).listing_reads().limit
        131072
        >>> BlobHasher(make_chunker(default_spec()), zstd_level=3).listing_reads() is None
        True
        """
        if self.native_small_files < 0:
            return None
        return SmallReads(self._single_chunk_max, self._small or self._small_view(), blake3.blake3)

    def _small_view(self) -> memoryview:
        """The buffer single-chunk files are read into whole, made once for the hasher's life
        (a fresh bytes object per file would cost an allocation and its page faults)."""
        self._small = memoryview(bytearray(self._single_chunk_max + 1))
        return self._small

    def _window_buffer(self, size: int) -> bytearray:
        """The read buffer of this hasher, made once (large enough for ``size``), not per file:
        a fresh one would be zeroed by the allocator for every file first."""
        if len(self._buffer) < size:
            self._buffer = bytearray(max(size, min(2 * len(self._buffer), READ_BUFFER + self.chunker.lookahead)))
        return self._buffer

    def _hash_read(self, fd: int, size: int) -> BlobInfo:
        """Hash and chunk a large file read in windows of READ_BUFFER bytes (plus the chunker's
        lookahead) into one buffer, the uncut tail of each window carried to the front.

        ``pread``, not a memory map: a file truncated while it is read gives a short read
        (:class:`FileChangedError`), where a map would give SIGBUS and kill the process.
        """
        self._begin(size)
        parallel = size >= PARALLEL_HASH_FROM
        whole = blake3.blake3(max_threads=blake3.blake3.AUTO if parallel else 1)
        digests = bytearray()
        sizes = array("Q")
        compressed = array("Q") if self._zstd else None
        buffer = self._window_buffer(min(size, READ_BUFFER + self.chunker.lookahead))
        view = memoryview(buffer)[: len(buffer)]
        consumed = 0  # bytes of the file already cut into chunks
        held = 0  # bytes at the front of the buffer read but not yet cut (the file from `consumed` on)
        try:
            while consumed < size:
                end = min(size, consumed + len(buffer))
                _pread_exactly(fd, view[held : end - consumed], consumed + held)
                if parallel:  # BLAKE3's threads want the whole window at once
                    whole.update(view[held : end - consumed])
                    d, s, c = self._cut(view[: end - consumed], eof=end == size)
                else:  # each chunk hashed twice while it is in the cache: ~6 % less time than a pass each
                    d, s, c = self._cut(view[: end - consumed], eof=end == size, whole=whole)
                digests += d
                sizes.extend(s)
                if compressed is not None and c is not None:
                    compressed.extend(c)
                step = sum(s)
                if step == 0 and end < size:
                    # a chunk longer than the window (a chunker with no maximum): widen it
                    wider = bytearray(min(size - consumed, 2 * len(buffer)))
                    wider[: end - consumed] = view[: end - consumed]
                    view.release()
                    buffer = self._buffer = wider
                    view = memoryview(buffer)
                held = end - consumed - step
                buffer[:held] = buffer[step : step + held]  # the uncut tail starts the next window
                consumed += step
        finally:
            with contextlib.suppress(BufferError):  # an error's traceback may still hold a view
                view.release()
        return self._finish(BlobInfo(whole.digest(), size, bytes(digests), sizes, compressed))


class _StreamCut:
    """One blob hashed and cut as its bytes arrive, piece by piece: memory holds at most one
    window plus the chunker's lookahead, whatever the blob's size."""

    def __init__(self, hasher: BlobHasher, size: int) -> None:
        hasher._begin(size)
        self.hasher = hasher
        self.whole = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= PARALLEL_HASH_FROM else 1)
        self.digests = bytearray()
        self.sizes = array("Q")
        self.compressed: array | None = array("Q") if hasher._zstd else None
        self.pending = bytearray()
        self.total = 0
        self.window = READ_BUFFER + hasher.chunker.lookahead

    def feed(self, piece: bytes | memoryview) -> None:
        self.whole.update(piece)
        self.total += len(piece)
        self.pending += piece
        if len(self.pending) >= self.window:
            step = self.hasher._cut_into(self.pending, False, self.digests, self.sizes, self.compressed)
            del self.pending[:step]
            if step == 0:  # a chunk longer than the window (no maximum): look again at twice the bytes
                self.window = 2 * len(self.pending)

    def finish(self) -> BlobInfo:
        self.hasher._cut_into(self.pending, True, self.digests, self.sizes, self.compressed)
        info = BlobInfo(self.whole.digest(), self.total, bytes(self.digests), self.sizes, self.compressed)
        return self.hasher._finish(info)


def _pread_exactly(fd: int, into: memoryview, offset: int) -> None:
    """Fill ``into`` from the file at ``offset``; a file that ends sooner changed while read."""
    done = 0
    while done < len(into):
        n = os.preadv(fd, [into[done:]], offset + done)
        if n == 0:
            raise FileChangedError(0, "changed while being read")
        done += n


def _windows(fd: int, size: int) -> Iterator[memoryview]:
    """The file's ``size`` bytes in windows of READ_BUFFER (each valid until the next)."""
    buffer = memoryview(bytearray(min(size, READ_BUFFER)))
    offset = 0
    while offset < size:
        window = buffer[: min(len(buffer), size - offset)]
        _pread_exactly(fd, window, offset)
        yield window
        offset += len(window)


WHOLE_READ = 64 * 1024 * 1024
"""Files up to this size are read into memory once for several hashers; larger ones in windows."""


def hash_file_once(hashers: Sequence[BlobHasher], path: bytes | str) -> list[BlobInfo]:
    """Read a regular file once and hash it with every hasher (a sweep over chunkers).

    Raises OSError (or :class:`FileChangedError`) as :meth:`BlobHasher.hash_file` does.
    """
    with stable_file(path) as (fd, size):
        if size <= WHOLE_READ or any(hasher.rewrite is not None for hasher in hashers):
            data = _read_exactly(fd, size)
            return [hasher.hash_held(data) for hasher in hashers]  # each with its own rewrite, if any
        cuts = [_StreamCut(hasher, size) for hasher in hashers]
        for window in _windows(fd, size):  # read once, cut by every chunker
            for cut in cuts:
                cut.feed(window)
        return [cut.finish() for cut in cuts]


@contextmanager
def stable_file(path: bytes | str) -> Iterator[tuple[int, int]]:
    """Open a regular file (never following a symlink, never blocking on a FIFO) and yield
    ``(fd, size)``; raise :class:`FileChangedError` if it changed size or mtime meanwhile."""
    fd, before = _open_regular(path)
    try:
        yield fd, before.st_size
        after = os.fstat(fd)
    finally:
        os.close(fd)
    _check_unchanged(before, after)


def _open_regular(path: bytes | str) -> tuple[int, os.stat_result]:
    """Open ``path`` (never following a symlink, never blocking on a FIFO): ``(fd, its stat)``,
    or :class:`FileChangedError` if it is no longer a regular file."""
    fd = open_deep(os.fsencode(path), _OPEN_FLAGS)  # a path past PATH_MAX is opened piece by piece
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise FileChangedError(0, "is no longer a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, before


def _check_unchanged(before: os.stat_result, after: os.stat_result) -> None:
    if after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
        raise FileChangedError(0, "changed while being read")


def _read_exactly(fd: int, size: int) -> bytes:
    """The whole file, which must still be ``size`` bytes long."""
    data = os.read(fd, size + 1)
    while len(data) < size + 1:
        more = os.read(fd, size + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) != size:
        raise FileChangedError(0, "changed while being read")
    return data
