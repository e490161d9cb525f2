"""``ingest_nar``: a NAR archive (plain, or .xz / .zst / .bz2 as binary caches serve them)
→ one snapshot, in one streaming pass that also gives the NAR's size and sha256."""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import lzma
import os
import queue
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import blake3
import zstandard

from storelab.chunking import make_chunker
from storelab.errors import ConfigError, InputError, InputNotFoundError, Interrupted, StorelabError
from storelab.ingest.batch import NOT_MEASURED, BlobBatchBuilder
from storelab.ingest.blobs import BlobHasher, BlobInfo, blob_hasher
from storelab.ingest.core import (
    Hashed,
    HashedBatch,
    IngestEvent,
    Listed,
    SnapshotSession,
    SourceFacts,
)
from storelab.ingest.progress import ByteProgress
from storelab.ingest.snapshot import IngestOptions, IngestResult, ingest_store
from storelab.ingest.streams import StreamCutters, check_stream_specs
from storelab.ingest.tree import TreeEntry
from storelab.nar import (
    RUN_DIRECTORY,
    RUN_END,
    RUN_EXECUTABLE,
    RUN_FILE,
    NarDirectoryEnd,
    NarDirectoryStart,
    NarEnd,
    NarFile,
    NarRun,
    NarSymlink,
    nix_base32,
    read_nar,
)
from storelab.nar.compressed import CompressedNarSizes
from storelab.nar.narinfo import NarInfo
from storelab.stores.base import BlobStore
from storelab.stores.uploader import make_uploader
from storelab.tables import BatchWriter, Dataset, SnapshotWriter
from storelab.tables.known import prior_knowledge

__all__ = ["check_chunkings", "ingest_nar", "ingest_nars", "nar_events", "nar_events_every_chunking", "open_nar_source"]

_THREAD_FROM = 1 << 20
"""Files from this size on are hashed on the second thread."""

_IN_FLIGHT = 32
"""Files of less than _THREAD_FROM bytes held whole for the hashing thread, at most."""
_SINGLES_BATCH = 1024
"""Digest-only files recorded together, at most."""

_MAGICS = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
)


class _HashingRaw(io.RawIOBase):
    """Reads through, counting bytes and hashing them: the NAR's size and sha256 (and its
    compressed sizes) come free.

    It sits under a large buffer, so the hash sees big blocks however small the parser's
    reads are, and the sha256 runs on a thread of its own (hashlib lets go of the GIL for
    big blocks), beside the parsing and BLAKE3 work of the main thread. The buffer reads
    past the NAR's end when bytes follow it, so the thread keeps the latest block back until
    :meth:`finish` says where the NAR ended: every earlier block lies wholly inside the NAR
    (the parser asks for no byte past the end, and the buffer refills only when emptied).
    """

    def __init__(self, stream: BinaryIO, codecs: Sequence[str] = (), cutters: StreamCutters | None = None) -> None:
        self._stream = stream
        self._sha256 = hashlib.sha256()
        self._compressed = CompressedNarSizes(codecs) if codecs else None
        self._cutters = cutters or None  # the NAR's stream chunkings, cut on the hashing thread
        self.size = 0
        self._last = b""
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._hasher = threading.Thread(target=self._hash_blocks, daemon=True)
        self._hasher.start()

    def _consume(self, block: bytes) -> None:
        self._sha256.update(block)
        if self._compressed is not None:
            self._compressed.update(block)
        if self._cutters is not None:
            self._cutters.feed(block)

    def _hash_blocks(self) -> None:
        held = b""
        while (block := self._blocks.get()) is not None:
            if held:
                self._consume(held)
            held = block
        self._last = held

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view))
        n = len(data)
        if n:
            view[:n] = data
            self._blocks.put(data)
            self.size += n
        return n

    def finish(self, nar_size: int) -> tuple[bytes, int]:
        """The sha256 of the first ``nar_size`` bytes (the NAR), and how many bytes follow
        them (read to the end of the input, as Nix never does, only to count them)."""
        self._blocks.put(None)
        self._hasher.join()
        keep = nar_size - (self.size - len(self._last))
        if not 0 <= keep <= len(self._last):
            raise AssertionError(f"the NAR ended at byte {nar_size}, outside the last block read")
        self._consume(self._last[:keep])
        following = self.size - nar_size
        while piece := self._stream.read(1 << 20):
            following += len(piece)
        return self._sha256.digest(), following

    def compressed_sizes(self) -> dict[str, int]:
        """The ``nar_*_size`` columns (after :meth:`finish`)."""
        return self._compressed.finish() if self._compressed is not None else {}

    def close(self) -> None:
        if self._hasher.is_alive():
            self._blocks.put(None)
        super().close()


def open_nar_source(source: str | os.PathLike[str]) -> tuple[Any, str]:
    """Open a NAR file (``-`` = standard input), decompressing xz, zstd or bzip2 on the fly.

    Returns the stream of NAR bytes and the name of the compression found (``none`` if none).
    """
    if str(source) == "-":
        raw: Any = io.BufferedReader(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer))
    else:
        try:
            raw = open(source, "rb")  # noqa: SIM115 — the caller closes the returned stream
        except FileNotFoundError:
            raise InputNotFoundError(f"{source}: no such file or directory") from None
        except OSError as err:
            raise InputError(f"{source}: {(err.strerror or str(err)).lower()}") from None
    head = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            if kind == "xz":
                return lzma.LZMAFile(raw), kind
            if kind == "bzip2":
                return bz2.BZ2File(raw), kind
            return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), kind
    return raw, "none"


def ingest_nar(
    source: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    label: str | None = None,
    options: IngestOptions | None = None,
    origin: str | None = None,
    staged_as: tuple[str, str] | None = None,
    narinfo: NarInfo | None = None,
) -> IngestResult:
    """Ingest one NAR as a new snapshot of ``dataset`` (created if missing).

    ``origin`` is what the ``source`` column records and errors name, when ``source`` is a
    local copy of something fetched (a URL). ``staged_as=(snapshot_id, owner)`` stages the
    snapshot without committing it, for a cluster's driver to commit. With ``narinfo`` the
    snapshot records the store path and its references (closures can then be rebuilt from the
    dataset), and the NAR's size and hash must be what the narinfo says.

    The NAR is read once, as a stream: blobs are hashed and chunked as their bytes pass, the
    NAR's size and sha256 (and, with ``options.nar_compression``, its compressed sizes) are
    taken on the way, and nothing is committed unless the whole NAR is valid. A NAR and the
    tree it packs give the same root digest and the same rows.

    >>> import io, tempfile, pathlib
    >>> from storelab.nar import nar_bytes_of_file
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "hello.nar"
    >>> _ = path.write_bytes(nar_bytes_of_file(b"Hello World!"))
    >>> result = ingest_nar(path, tempfile.mkdtemp() + "/ds", options=IngestOptions(zstd_level=0))
    >>> result.root.digest.hex()[:16], result.label
    ('5ca7815adcb484e9', 'hello.nar')
    """
    options = options or IngestOptions()
    check_chunkings(options)
    started = time.perf_counter()
    existing, known = prior_knowledge(dataset, options.zstd_level)
    store = ingest_store(options)
    where = existing.location if existing else os.fspath(dataset)  # type: ignore[arg-type]

    def open_writer() -> SnapshotWriter:
        return (existing or Dataset.open(dataset, create=True)).begin_snapshot(*(staged_as or ()))  # type: ignore[arg-type]

    try:
        return _ingest_one(source, open_writer, where, label, options, known, store, origin, narinfo, started, staged_as is not None)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; nothing was added to {where}") from None


def ingest_nars(
    sources: Iterable[tuple[str, str | os.PathLike[str]] | tuple[str, str | os.PathLike[str], NarInfo | None, str | None]],
    dataset: str | os.PathLike[str] | Dataset,
    options: IngestOptions | None = None,
    on_result: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest many NARs, one snapshot each, committing many snapshots per part (every
    :data:`~storelab.tables.dataset.BATCH_SNAPSHOTS` snapshots or
    :data:`~storelab.tables.dataset.BATCH_SECONDS`, and at the end).

    ``sources`` gives ``(name, local file)`` pairs (the name is what the ``source`` column
    records: a URL for a fetched copy). The dataset, its index and what has been measured
    are opened once for the whole run, so each NAR costs what its bytes cost, however many
    snapshots the dataset holds. The first NAR that fails stops the run: the snapshots before
    it are committed, nothing of it is. A source may carry its NAR's narinfo (see
    :func:`ingest_nar`) and its label as third and fourth items.

    >>> import tempfile, pathlib
    >>> from storelab.nar import nar_bytes_of_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     _ = (folder / f"{i}.nar").write_bytes(nar_bytes_of_file(bytes([i]) * 100))
    >>> results = ingest_nars([(str(p), p) for p in sorted(folder.glob("*.nar"))], tempfile.mkdtemp() + "/ds")
    >>> [r.label for r in results]
    ['0.nar', '1.nar', '2.nar']
    """
    options = options or IngestOptions()
    check_chunkings(options)
    existing, known = prior_knowledge(dataset, options.zstd_level)
    store = ingest_store(options)
    results: list[IngestResult] = []
    ds = existing
    batch: BatchWriter | None = None
    try:
        for name, local, *described in sources:
            started = time.perf_counter()
            if batch is None:
                ds = ds or Dataset.open(dataset, create=True)  # type: ignore[arg-type]
                batch = ds.begin_batch()
            origin = name if str(name) != str(local) else None
            info = described[0] if described else None
            label = described[1] if len(described) > 1 else None
            assert info is None or isinstance(info, NarInfo)
            assert label is None or isinstance(label, str)
            result = _ingest_one(local, batch.begin_snapshot, batch.dataset.location, label, options, known, store, origin, info, started)
            results.append(result)
            if on_result is not None:
                on_result(result)
            if batch.due:
                batch.commit()
    except BaseException as err:
        if batch is not None:
            with contextlib.suppress(StorelabError):
                batch.commit()  # what was finished before the failure stays
            batch.abort()
        if isinstance(err, (KeyboardInterrupt, Interrupted)):
            where = dataset if not isinstance(dataset, Dataset) else dataset.location
            raise Interrupted(f"interrupted; the NARs before the one being read are in {where}") from None
        raise
    if batch is not None:
        try:
            batch.commit()
        finally:
            batch.abort()
    return results


def _ingest_one(
    source: str | os.PathLike[str],
    open_writer: Callable[[], SnapshotWriter],
    where: str,
    label: str | None,
    options: IngestOptions,
    known: dict[bytes, int],
    store: BlobStore | None,
    origin: str | None,
    narinfo: NarInfo | None,
    started: float,
    stage_only: bool = False,
) -> IngestResult:
    """Read one NAR into a snapshot and commit it (or stage it)."""
    name = origin or ("stdin" if str(source) == "-" else str(source))
    label = label or ("stdin" if name == "stdin" else name.rstrip("/").rsplit("/", 1)[-1])
    entries: list[TreeEntry] = []
    files = [options.chunker, *options.also]
    with SnapshotSession(open_writer, where, [*files, *options.streams], entries, options, store, started) as session:
        session.open()  # the dataset exists (created if new) whatever the NAR holds
        stream, compression = open_nar_source(source)
        # a .nar.xz (or .nar.zst) read from disk is its own compressed size: it need not be compressed again
        given = {"xz": "xz", "zstd": "zstd"}.get(compression) if str(source) != "-" and not origin else None
        codecs = tuple(codec for codec in options.nar_compression if codec != given)
        cutters = StreamCutters([(len(files) + k, spec) for k, spec in enumerate(options.streams)], options.zstd_level, known)
        counted = _HashingRaw(stream, codecs, cutters)
        buffered = io.BufferedReader(counted, buffer_size=1 << 20)
        try:
            ended: list[int] = []  # the NAR's size, once its end is read
            events = nar_events if not options.also else nar_events_every_chunking
            session.consume(events(buffered, name, entries, options, known, store, ended))
            digest, following = counted.finish(ended[0])
            session.consume(cutters.finish())
            nar = {"nar_size": ended[0], "nar_sha256": digest, "nar_hash": "sha256:" + nix_base32(digest), "nar_trailing_bytes": following}
            nar |= counted.compressed_sizes()
            if given in options.nar_compression and not following:
                nar[f"nar_{given}_size"] = os.path.getsize(source)
            if following:
                session.warn(
                    f"{name}: {following:,} byte(s) after the end of the NAR ignored, as Nix ignores them "
                    "(the NAR's size and hashes do not cover them; the snapshot's nar_trailing_bytes counts them)"
                )
            if narinfo is not None:
                _check_narinfo(narinfo, nar, name)
                nar |= {"store_path": narinfo.store_path, "references": [r for r in narinfo.references if r != narinfo.store_path]}
            location = name if name == "stdin" or origin else str(Path(name).resolve())
            return session.commit(SourceFacts("nar", location, label, nar), stage_only)
        finally:
            counted.close()  # stops the hashing thread, whatever happened
            cutters.close()
            stream.close()


class _NarEntries:
    """The entries of a NAR as its events pass: appended in pre-order to ``entries``, each with
    its parent; a directory's listing when it ends; the NAR's size into ``ended`` at its end."""

    def __init__(self, entries: list[TreeEntry], ended: list[int]) -> None:
        self.entries, self.ended = entries, ended
        self._open: list[tuple[int, list[int]]] = []  # (entry index, children) of the directories open

    def add(self, event: object) -> Listed | None:
        """Record ``event``; a directory's :class:`Listed` when it ends (else None)."""
        index = len(self.entries)
        parent = self._open[-1][0] if self._open else -1
        if self._open and not isinstance(event, NarDirectoryEnd):
            self._open[-1][1].append(index)
        if isinstance(event, NarFile):
            self.entries.append(TreeEntry(event.path, "file", event.size, event.executable, parent=parent))
        elif isinstance(event, NarSymlink):
            self.entries.append(TreeEntry(event.path, "symlink", target=event.target, parent=parent))
        elif isinstance(event, NarDirectoryStart):
            self.entries.append(TreeEntry(event.path, "directory", parent=parent))
            self._open.append((index, []))
        elif isinstance(event, NarEnd):
            self.ended.append(event.size)
        else:
            directory, children = self._open.pop()
            return Listed(directory, children)
        return None

    def add_run(self, run: NarRun) -> tuple[list[Listed], list[int]]:
        """Record a run of events as :meth:`add` does each: the directories it ends, and the
        entry indices of its files (in order)."""
        entries, opened = self.entries, self._open
        listed: list[Listed] = []
        files: list[int] = []
        sizes, targets = iter(run.sizes), iter(run.targets)
        for kind, path in zip(run.kinds, run.paths):
            if kind == RUN_END:
                directory, children = opened.pop()
                listed.append(Listed(directory, children))
                continue
            index = len(entries)
            parent = opened[-1][0]  # a run is always inside the root directory
            opened[-1][1].append(index)
            if kind in (RUN_FILE, RUN_EXECUTABLE):
                entries.append(TreeEntry(path, "file", next(sizes), kind == RUN_EXECUTABLE, parent=parent))
                files.append(index)
            elif kind == RUN_DIRECTORY:
                entries.append(TreeEntry(path, "directory", parent=parent))
                opened.append((index, []))
            else:
                entries.append(TreeEntry(path, "symlink", target=next(targets), parent=parent))
        return listed, files


class _DigestsOnly:
    """Files that need only their digest, recorded together: a :class:`HashedBatch` every
    :data:`_SINGLES_BATCH` files, and the rest at the end."""

    def __init__(self) -> None:
        self._batch = BlobBatchBuilder()

    def add(self, index: int, digest: bytes, size: int) -> None:
        self._batch.add_single(index, digest, size, NOT_MEASURED)

    def add_many(self, indices: list[int], digests: bytes, sizes: list[int]) -> None:
        if indices:
            self._batch.add_singles(indices, digests, array("Q", sizes))

    def due(self, final: bool = False) -> Iterator[HashedBatch]:
        """The batch, when it is full (or, ``final``, not empty)."""
        if len(self._batch) >= _SINGLES_BATCH or (final and len(self._batch)):
            yield HashedBatch([self._batch.build()])
            self._batch = BlobBatchBuilder()


def check_chunkings(options: IngestOptions) -> None:
    """Refuse, before any work, chunkings a NAR ingest cannot make."""
    files = [options.chunker, *options.also]
    for spec in files:
        make_chunker(spec)
        if spec.is_stream:
            raise ConfigError(f"{spec.id}: a stream chunking goes in streams (--stream-chunking), not among the per-file ones")
    check_stream_specs(options.streams, "nar")
    if len({spec.id for spec in [*files, *options.streams]}) != len(files) + len(options.streams):
        raise ConfigError("the same chunking is named twice")


_BATCH_FILES = 512
"""Files per batch when a NAR is cut under several chunkings."""
_PARALLEL_FROM = 64 * 1024
"""Files from this size on are cut under several chunkings at once, one thread each."""


def nar_events_every_chunking(
    nar: BinaryIO,
    name: str,
    entries: list[TreeEntry],
    options: IngestOptions,
    known: dict[bytes, int],
    store: BlobStore | None,
    ended: list[int],
) -> Iterator[IngestEvent]:
    """:func:`nar_events` for several per-file chunkings (``options.chunker`` and
    ``options.also``): each file is cut under every one as its bytes pass (on this thread),
    the blobs reported in batches, one per chunking. Only the first chunking writes to ``store``."""
    uploader = make_uploader(store, options.upload)
    with _decompression_errors(name), uploader if uploader is not None else nullcontext():
        specs = [options.chunker, *options.also]
        hashers = [
            blob_hasher(spec, options.zstd_level, known, store if k == 0 else None, uploader if k == 0 else None, options.rewrite)
            for k, spec in enumerate(specs)
        ]  # fmt: skip
        builders = [BlobBatchBuilder() for _ in specs]
        tree = _NarEntries(entries, ended)

        def flush() -> Iterator[IngestEvent]:
            if len(builders[0]):
                yield HashedBatch([builder.build() for builder in builders])
                builders[:] = [BlobBatchBuilder() for _ in specs]

        with ThreadPoolExecutor(len(specs)) as pool, ByteProgress(f"ingest {name.rsplit('/', 1)[-1]}", options.progress) as bar:
            for event in read_nar(nar, name):
                listed = tree.add(event)
                if listed is not None:
                    yield listed
                elif isinstance(event, NarFile):
                    index = len(entries) - 1
                    for builder, info in zip(builders, _cut_every_way(hashers, event.size, event.pieces, pool), strict=True):
                        builder.add(index, info)
                    bar.advance(1, event.size)
                    if len(builders[0]) >= _BATCH_FILES:
                        yield from flush()
            yield from flush()
            hashers[0].drain()


def _cut_every_way(hashers: Sequence[BlobHasher], size: int, pieces: Iterable[bytes], pool: ThreadPoolExecutor) -> list[BlobInfo]:
    """One file's blob under each hasher's chunking, its bytes read once: a small file held
    whole and cut here; a larger one cut under every chunking at once on ``pool``'s threads
    (chunking, BLAKE3 and zstd let go of the GIL), fed piece by piece when it is large."""
    if size < _THREAD_FROM or any(h.rewrite is not None for h in hashers):
        data = b"".join(pieces)
        if size < _PARALLEL_FROM:
            return [hasher.hash_held(data) for hasher in hashers]  # each with its own rewrite, if any
        return list(pool.map(lambda h: h.hash_held(data), hashers))
    feeds: list[queue.Queue[bytes | None]] = [queue.Queue(maxsize=8) for _ in hashers]
    futures = [pool.submit(hasher.hash_pieces, size, iter(feed.get, None)) for hasher, feed in zip(hashers, feeds)]
    try:
        for piece in pieces:
            for feed, future in zip(feeds, futures):
                _feed(feed, piece, future)
    finally:
        for feed in feeds:
            with contextlib.suppress(queue.Full):
                feed.put(None, timeout=1)
    return [future.result() for future in futures]


def _feed(pieces: queue.Queue[bytes | None], piece: bytes | None, hashing: Future[BlobInfo]) -> None:
    """Hand a piece of a large file to the thread hashing it. The thread may have died (a
    store write failed): then its error is raised here, instead of waiting on a full queue
    for ever (and the wait stays short, so Ctrl-C is heard)."""
    while True:
        try:
            pieces.put(piece, timeout=0.1)
            return
        except queue.Full:
            if hashing.done():
                hashing.result()  # raises what ended the thread
                raise AssertionError("the hashing thread ended before its file did") from None


def _check_narinfo(info: NarInfo, nar: dict, name: str) -> None:
    if info.nar_size is not None and info.nar_size != nar["nar_size"]:
        raise InputError(f"{name}: the narinfo says NarSize {info.nar_size}, the NAR has {nar['nar_size']} bytes")
    claimed = (info.nar_hash or "").removeprefix("sha256:")
    ours = nar["nar_hash"].removeprefix("sha256:")
    if claimed and claimed not in (ours, nar["nar_sha256"].hex()):  # nix-base32 or base16
        raise InputError(f"{name}: the narinfo says NarHash {info.nar_hash}, the NAR hashes to {nar['nar_hash']}")


@contextlib.contextmanager
def _decompression_errors(name: str) -> Iterator[None]:
    """A NAR that cannot be decompressed is an :class:`~storelab.errors.InputError` naming it."""
    try:
        yield
    except (lzma.LZMAError, EOFError, zstandard.ZstdError) as err:
        raise InputError(f"{name}: cannot decompress: {err}") from None
    except OSError as err:
        if not getattr(err, "errno", None):  # bz2 reports bad data so
            raise InputError(f"{name}: cannot decompress: {err}") from None
        raise


def nar_events(
    nar: BinaryIO,
    name: str,
    entries: list[TreeEntry],
    options: IngestOptions,
    known: dict[bytes, int],
    store: BlobStore | None,
    ended: list[int],
) -> Iterator[IngestEvent]:
    """A NAR stream as ingest events: its entries go into ``entries`` as they are parsed, its
    files are hashed (and written to ``store``) as their bytes pass; the NAR's size is put in
    ``ended`` when its end is read. A NAR that cannot be decompressed is an
    :class:`~storelab.errors.InputError` naming it."""
    uploader = make_uploader(store, options.upload)
    with _decompression_errors(name), uploader if uploader is not None else nullcontext():
        hasher = blob_hasher(options.chunker, options.zstd_level, known, store, uploader, options.rewrite)
        # Large files are hashed on a second thread while this one goes on parsing: BLAKE3,
        # FastCDC and zstd run outside the GIL. It has its own hasher (zstd contexts are per
        # thread) and shares what has been measured, the store and the uploader.
        big_hasher = blob_hasher(options.chunker, options.zstd_level, hasher.known_sizes, store, uploader, options.rewrite)
        tree = _NarEntries(entries, ended)
        in_flight: deque[tuple[int, Future[BlobInfo]]] = deque()
        feeding: queue.Queue[bytes | None] | None = None
        # Files that need only their digest (one chunk; nothing stored, rewritten or measured)
        # go straight into a batch: most of a binary cache's files, few KB each.
        digest_only = hasher.digest_only_max
        singles = _DigestsOnly()
        inline_max = hasher.chunker.single_chunk_max  # one chunk: hashed here when more than its digest is wanted

        def harvest(wait: bool) -> Iterator[IngestEvent]:
            while in_flight and (wait or in_flight[0][1].done() or len(in_flight) > _IN_FLIGHT):
                done_index, future = in_flight.popleft()
                yield Hashed(done_index, future.result())

        with ThreadPoolExecutor(1) as pool, ByteProgress(f"ingest {name.rsplit('/', 1)[-1]}", options.progress) as bar:
            try:
                for event in read_nar(nar, name, digest_files_upto=digest_only if digest_only >= 0 else None):
                    if isinstance(event, NarRun):  # many entries read at once, small files hashed
                        closed, files = tree.add_run(event)
                        yield from closed
                        singles.add_many(files, event.digests, event.sizes)
                        bar.advance(len(files), sum(event.sizes))
                        yield from singles.due()
                        continue
                    listed = tree.add(event)
                    if listed is not None:
                        yield listed
                    elif isinstance(event, NarFile):
                        index = len(entries) - 1
                        if event.size <= digest_only:
                            singles.add(index, blake3.blake3(b"".join(event.pieces)).digest(), event.size)
                            yield from singles.due()
                        elif event.size <= inline_max:
                            yield Hashed(index, hasher.hash_pieces(event.size, event.pieces))
                        elif event.size < _THREAD_FROM:  # held whole, hashed on the other thread
                            in_flight.append((index, pool.submit(big_hasher.hash_held, b"".join(event.pieces))))
                        else:
                            feeding = queue.Queue(maxsize=8)
                            future = pool.submit(big_hasher.hash_pieces, event.size, iter(feeding.get, None))
                            in_flight.append((index, future))
                            for piece in event.pieces:
                                _feed(feeding, piece, future)
                            _feed(feeding, None, future)
                            feeding = None
                        if in_flight:
                            yield from harvest(wait=False)
                        bar.advance(1, event.size)
                yield from singles.due(final=True)
                yield from harvest(wait=True)
                hasher.drain()  # every blob is in the store before the snapshot can commit
            except BaseException:
                if feeding is not None:  # a hashing thread waiting for pieces can finish; the pool can close
                    with contextlib.suppress(queue.Full):
                        feeding.put_nowait(None)
                raise
