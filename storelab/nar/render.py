"""Render a NAR from its castore description and a blob store, without producing it whole.

The layout — the literal header bytes, and where each file's contents sit — is computed from
the directories first; reading then fetches only the blobs (for chunked blobs, only the
chunks) that the requested range covers.
"""

from __future__ import annotations

import io
import os
import struct
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate

import blake3

from storelab.castore import Directory, DirectoryNode, FileNode, Node, SymlinkNode
from storelab.errors import DatasetError
from storelab.nar.writer import TOKENS as _S
from storelab.nar.writer import nar_string
from storelab.stores.backends import StoreError
from storelab.stores.base import BlobStore, ChunkMeta
from storelab.tables import Dataset

__all__ = ["NarLayout", "nar_layout", "open_nar", "castore_from_snapshot", "render_nar"]


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: bytes
    size: int


@dataclass(frozen=True, slots=True)
class NarLayout:
    """The NAR as segments: literal bytes, or a blob's contents; ``starts[i]`` is where
    segment ``i`` begins."""

    segments: tuple[bytes | _Blob, ...]
    starts: tuple[int, ...]
    size: int


def nar_layout(root: Node, directories: Mapping[bytes, Directory]) -> NarLayout:
    """Lay out the NAR of ``root`` (directories looked up by digest)."""
    segments: list[bytes | _Blob] = []
    literal: list[bytes] = [_S[b"nix-archive-1"]]

    def flush() -> None:
        if literal:
            segments.append(b"".join(literal))
            literal.clear()

    # an explicit stack: ("node", node) to emit a node, ("close", b"") to close an entry
    stack: list[tuple[str, object]] = [("node", root)]
    while stack:
        what, item = stack.pop()
        if what == "literal":
            literal.append(item)  # type: ignore[arg-type]
            continue
        node = item
        literal += (_S[b"("], _S[b"type"])
        if isinstance(node, FileNode):
            literal.append(_S[b"regular"])
            if node.executable:
                literal += (_S[b"executable"], _S[b""])
            literal += (_S[b"contents"], struct.pack("<Q", node.size))
            if node.size:
                flush()
                segments.append(_Blob(node.digest, node.size))
            literal += (bytes((-node.size) % 8), _S[b")"])
        elif isinstance(node, SymlinkNode):
            literal += (_S[b"symlink"], _S[b"target"], nar_string(node.target), _S[b")"])
        else:
            assert isinstance(node, DirectoryNode)
            directory = directories.get(node.digest)
            if directory is None:
                raise DatasetError(f"directory {node.digest.hex()} is missing from the castore description")
            literal.append(_S[b"directory"])
            entries: list[Node] = [*directory.directories, *directory.files, *directory.symlinks]
            children = sorted(entries, key=lambda n: n.name)
            stack.append(("literal", _S[b")"]))
            for child in reversed(children):
                stack.append(("literal", _S[b")"]))
                stack.append(("node", child))
                stack.append(("literal", _S[b"entry"] + _S[b"("] + _S[b"name"] + nar_string(child.name) + _S[b"node"]))
    flush()
    sizes = [len(s) if isinstance(s, bytes) else s.size for s in segments]
    starts = tuple(accumulate(sizes, initial=0))
    return NarLayout(tuple(segments), starts[:-1], starts[-1])


class _NarReader(io.RawIOBase):
    def __init__(self, layout: NarLayout, store: BlobStore) -> None:
        self.layout = layout
        self.store = store
        self.position = 0
        self._chunk_lists: dict[bytes, tuple[list[ChunkMeta], list[int]]] = {}
        self._last_chunk: tuple[bytes, bytes] | None = None

    def readable(self) -> bool:
        return True

    def readall(self) -> bytes:
        parts = []
        while piece := self.read(4 << 20):
            parts.append(piece)
        return b"".join(parts)

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.layout.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written = 0
        layout = self.layout
        while written < len(view) and self.position < layout.size:
            i = bisect_right(layout.starts, self.position) - 1
            segment = layout.segments[i]
            inner = self.position - layout.starts[i]
            want = len(view) - written
            if isinstance(segment, bytes):
                piece = segment[inner : inner + want]
            else:
                piece = self._blob_range(segment, inner, want)
            view[written : written + len(piece)] = piece
            written += len(piece)
            self.position += len(piece)
        return written

    def _blob_range(self, blob: _Blob, start: int, want: int) -> bytes:
        """Bytes of ``blob`` from ``start``: from the one chunk that holds ``start`` onward."""
        if blob.digest not in self._chunk_lists:
            chunks = self.store.chunks(blob.digest, blob.size)
            self._chunk_lists = {blob.digest: (chunks, list(accumulate((c.size for c in chunks), initial=0)))}
        chunks, offsets = self._chunk_lists[blob.digest]
        k = bisect_right(offsets, start) - 1
        chunk = chunks[k]
        if self._last_chunk is None or self._last_chunk[0] != chunk.digest:
            self._last_chunk = (chunk.digest, self.store.read_chunk(chunk.digest, chunk.size))
        data = self._last_chunk[1]
        inner = start - offsets[k]
        return data[inner : inner + want]


def open_nar(root: Node, directories: Mapping[bytes, Directory], blob_store: BlobStore) -> io.RawIOBase:
    """A seekable file object over the NAR of ``root``: ``read``, ``readinto``, ``seek``, ``tell``.

    Unbuffered on purpose: a read fetches exactly the chunks its range covers, no read-ahead
    (``read(n)`` still returns ``n`` bytes unless the NAR ends first).

    >>> from storelab.stores import open_store
    >>> nar = open_nar(Directory().node(), {Directory().digest: Directory()}, open_store("memory://"))
    >>> len(nar.read())
    96
    """
    return _NarReader(nar_layout(root, directories), blob_store)


def render_nar(root: Node, directories: Mapping[bytes, Directory], blob_store: BlobStore) -> Iterator[bytes]:
    """The NAR of ``root`` as a stream of pieces (literal runs and whole chunks).

    Every chunk is checked against its digest as it is read, and every file against its
    blob's digest once its last chunk has passed (a swapped or corrupt blob index names real
    chunks of another blob): a mismatch raises :class:`StoreError` before the stream ends, so
    a caller writing the pieces out never finishes a wrong NAR. :func:`open_nar`, which reads
    ranges, checks chunks only.

    One thread on purpose: reading ahead on a second thread was slower here, the two
    fighting over the GIL between system calls.
    """
    for segment in nar_layout(root, directories).segments:
        if isinstance(segment, bytes):
            yield segment
            continue
        whole = blake3.blake3()
        for chunk in blob_store.chunks(segment.digest, segment.size):
            data = blob_store.read_chunk(chunk.digest, chunk.size)
            whole.update(data)
            yield data
        if whole.digest() != segment.digest:
            raise StoreError(
                f"{getattr(blob_store, 'url', 'the store')}: blob {segment.digest.hex()} does not match its digest "
                "(its index names other chunks)"
            )


def castore_from_snapshot(dataset: str | os.PathLike[str], snapshot: str) -> tuple[Node, dict[bytes, Directory]]:
    """Rebuild a snapshot's castore root and directories from its ``nodes`` rows (and check
    every rebuilt directory against the digest recorded for it). ``snapshot``: id or label."""
    ds = Dataset.open(dataset)
    snapshots = ds.read_table("snapshots").select(["snapshot_id", "label"]).to_pylist()
    ids = [row["snapshot_id"] for row in snapshots if snapshot in (row["snapshot_id"], row["label"])]
    if len(ids) != 1:
        found = "no snapshot" if not ids else f"{len(ids)} snapshots"
        raise DatasetError(f"{ds.location}: {found} with id or label {snapshot!r}" + ("; give its id" if ids else ""))
    nodes = ds.read_table("nodes", ids)
    columns = [nodes.column(name).to_pylist() for name in ("path", "kind", "size", "executable", "digest", "symlink_target")]
    children: dict[bytes, list[Node]] = {}
    recorded: list[tuple[bytes, bytes, int]] = []
    root: Node | None = None
    for path, kind, size, executable, digest, target in zip(*columns):
        name = path.rpartition(b"/")[2]
        if kind == "file":
            node: Node = FileNode(name, digest, size, bool(executable))
        elif kind == "symlink":
            node = SymlinkNode(name, target)
        else:
            recorded.append((path, digest, size))
            node = DirectoryNode(name, digest, size)
        if path == b"":
            root = node
        else:
            children.setdefault(path.rpartition(b"/")[0], []).append(node)
    if root is None:
        raise DatasetError(f"snapshot {snapshot!r} has no root node")
    directories: dict[bytes, Directory] = {}
    for path, digest, size in recorded:
        # names were checked when the snapshot was ingested; the digest check below catches
        # any row that does not belong
        kids = sorted(children.get(path, []), key=_name)
        directory = Directory.trusted(
            tuple(n for n in kids if isinstance(n, DirectoryNode)),
            tuple(n for n in kids if isinstance(n, FileNode)),
            tuple(n for n in kids if isinstance(n, SymlinkNode)),
        )
        if directory.digest != digest or directory.size != size:
            raise DatasetError(f"snapshot {snapshot!r}: directory {path!r} does not rebuild to its recorded digest")
        directories[digest] = directory
    return root, directories


def _name(node: Node) -> bytes:
    return node.name
