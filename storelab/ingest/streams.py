"""Stream chunkings: one stream per snapshot cut whole, beside the per-file chunking.

attic, nix-casync and ncps chunk a store path's NAR as one stream (so chunks cross file
boundaries and include NAR framing); studies of chunking compare that with per-file chunking
and with the files concatenated in other orders. A stream chunking is a
:class:`~storelab.chunking.ChunkerSpec` whose ``scope`` is ``nar``, ``files-by-name`` or
``files-by-size``; its snapshot gets one blob row (the stream: BLAKE3 digest, size) and the
stream's chunk rows, with offsets into the stream.

>>> from storelab.chunking import spec_from_id
>>> cutters = StreamCutters([(1, spec_from_id("fixed/size=4KiB@nar"))], zstd_level=0)
>>> cutters.feed(bytes(10_000))
>>> [(event.chunking, list(event.blob.chunk_sizes)) for event in cutters.finish()]
[(1, [4096, 4096, 1808])]
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import ConfigError, InputError
from storelab.ingest.blobs import BlobHasher, _StreamCut
from storelab.ingest.core import StreamHashed

__all__ = ["StreamCutters", "check_stream_specs", "concatenated_streams"]

_IN_FLIGHT = 8
"""Pieces queued per chunking's thread."""
_LARGE = 1 << 40  # a stream's size is not known up front: hash it as a large blob (BLAKE3 on every core)


def check_stream_specs(specs: Sequence[ChunkerSpec], source_kind: str) -> None:
    """Refuse stream chunkings a source cannot give (a NAR has no file order but its own)."""
    for spec in specs:
        if not spec.is_stream:
            raise ConfigError(f"{spec.id}: a stream chunking needs a scope (…@nar, …@files-by-name, …@files-by-size)")
        make_chunker(spec)
        if source_kind == "nar" and spec.scope != "nar":
            raise ConfigError(f"{spec.id}: a NAR is cut as one stream only as it is (@nar); @{spec.scope} needs a tree (ingest-dir)")


class StreamCutters:
    """One stream cut under several stream chunkings at once, fed piece by piece.

    ``specs`` pairs each stream chunking with its index among the snapshot's specs. Each
    chunking is cut on a thread of its own (chunking, BLAKE3 and zstd let go of the GIL), so
    several chunkings of one NAR use every core; memory holds, per chunking, one read window,
    the chunker's lookahead and a few pieces in flight.
    """

    def __init__(self, specs: Sequence[tuple[int, ChunkerSpec]], zstd_level: int, known: dict[bytes, int] | None = None) -> None:
        self._cuts = [(k, _StreamCut(BlobHasher(make_chunker(spec), zstd_level, known), _LARGE)) for k, spec in specs]
        self._queues: list[queue.Queue[bytes | None]] = [queue.Queue(maxsize=_IN_FLIGHT) for _ in self._cuts]
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(cut, q), daemon=True) for (_, cut), q in zip(self._cuts, self._queues)]
        for thread in self._threads:
            thread.start()

    def _run(self, cut: _StreamCut, pieces: queue.Queue[bytes | None]) -> None:
        try:
            while (piece := pieces.get()) is not None:
                cut.feed(piece)
        except BaseException as err:  # noqa: BLE001 — handed to the feeding thread by finish()
            self._errors.append(err)
            while pieces.get() is not None:  # keep taking pieces, so the feeder never blocks
                pass

    def __bool__(self) -> bool:
        return bool(self._cuts)

    def feed(self, piece: bytes | memoryview) -> None:
        block = bytes(piece)  # one immutable copy, shared by every chunking's thread
        for pieces in self._queues:
            pieces.put(block)

    def close(self) -> None:
        """Stop the threads (after :meth:`finish`, or when the ingest failed)."""
        for pieces, thread in zip(self._queues, self._threads):
            if thread.is_alive():
                pieces.put(None)
                thread.join()

    def finish(self) -> list[StreamHashed]:
        """One event per stream chunking: its stream's blob, cut whole."""
        self.close()
        if self._errors:
            raise self._errors[0]
        return [StreamHashed(k, cut.finish()) for k, cut in self._cuts]


def _file_order(files: Sequence[tuple[bytes, int]], scope: str) -> list[bytes]:
    """The files' paths in the stream's order: by name as the NAR has them (a directory's
    entries by name, depth first), or by size (then name).

    >>> files = [(b"b", 1), (b"a/z", 3), (b"a.txt", 2)]
    >>> _file_order(files, "files-by-name"), _file_order(files, "files-by-size")
    ([b'a/z', b'a.txt', b'b'], [b'b', b'a.txt', b'a/z'])
    """
    if scope == "files-by-size":
        return [path for path, _ in sorted(files, key=lambda item: (item[1], item[0]))]
    return sorted((path for path, _ in files), key=lambda path: path.split(b"/"))


def concatenated_streams(
    files: Sequence[tuple[bytes, int]], root: bytes, specs: Sequence[tuple[int, ChunkerSpec]],
    zstd_level: int, known: dict[bytes, int] | None = None,
) -> list[StreamHashed]:  # fmt: skip
    """A tree's files (path relative to ``root``, size; the files its snapshot recorded)
    concatenated by name (the NAR's order) or by size, read again after its ingest and cut
    under the ``files-by-*`` chunkings in ``specs``. A file that cannot be read again is an
    :class:`InputError` naming it: the stream would not be the snapshot's."""
    events: list[StreamHashed] = []
    for scope in ("files-by-name", "files-by-size"):
        scoped = [(k, spec) for k, spec in specs if spec.scope == scope]
        if not scoped:
            continue
        cutters = StreamCutters(scoped, zstd_level, known)
        try:
            for relative in _file_order(files, scope):
                path = root + b"/" + relative if relative else root
                try:
                    with open(path, "rb", buffering=0) as f:
                        while piece := f.read(1 << 20):
                            cutters.feed(piece)
                except OSError as err:
                    raise InputError(f"{os.fsdecode(path)}: cannot read it again for the {scope} stream: {err.strerror or err}") from None
            events += cutters.finish()
        finally:
            cutters.close()
    return events
