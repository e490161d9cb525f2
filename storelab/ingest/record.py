"""Turn what a source yields (tree entries and their blobs) into rows of a snapshot.

Shared by every source (directory trees, NAR archives): the castore model is built here,
once, so a tree and its NAR give the same rows.

Directories are built while the blobs are still arriving: each directory is encoded as soon
as it has been listed and every file below it has been hashed, so the work overlaps the
hashing and memory holds only the directories still open.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from storelab.castore import DirectoryNode, FileNode, Node, SymlinkNode
from storelab.castore.nodes import (
    encode_directory_node,
    encode_file_node,
    encode_symlink_node,
)
from storelab.castore.protobuf import bytes_field
from storelab.chunking import ChunkerSpec
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.tree import TreeEntry
from storelab.nar.writer import NAR_HEADER_SIZE, nar_entry_size, nar_node_size

if TYPE_CHECKING:
    from storelab.tables import SnapshotWriter

__all__ = ["SnapshotRecorder", "RecordedTree", "root_fields"]

_SINGLE_BLOB_FLUSH = 4096
_NODE_ROWS_PER_WRITE = 65536

# A final child of a directory still open: (kind, entry index, its field in the parent's
# encoding, castore size (directories), file bytes below it, bytes of its NAR entry, digest).
# Sorted, (kind, index) is castore's order: directories, files, symlinks, each by name.
_Child = tuple[int, int, bytes, int, int, int, "bytes | None"]
_DIRECTORY, _FILE, _SYMLINK = 1, 2, 3  # the Directory message's field numbers


@dataclass(frozen=True, slots=True)
class RecordedTree:
    """The castore root of a recorded tree, and its totals."""

    root: Node
    files: int
    directories: int
    symlinks: int
    file_bytes: int
    nar_size: int = 0
    """Bytes of the tree's NAR (what ``nix-store --dump`` writes)."""


class SnapshotRecorder:
    """Writes node and directory rows for one snapshot through a writer, and blob and chunk
    rows once per chunking (``specs``: several when one reading of the tree feeds a sweep).

    The caller reports, in any interleaving:

    - :meth:`listed` — a directory's children are all in ``entries`` (its listing is done);
    - :meth:`add_batch` / :meth:`add_blob` — the blobs of file entries;
    - :meth:`skip` — a file entry that will have no blob (unreadable, vanished).

    ``entries`` is the source's list of :class:`TreeEntry` in pre-order (it may still be
    growing), and the children of each directory appear in it in name order. Each distinct
    blob is written once per snapshot, however often it occurs. :meth:`finish` returns the
    root once everything has been reported.

    Directories are encoded here from their children's encodings, without building node
    objects: this runs for every file of every tree, in the one process all workers report
    to (``Directory.encoded`` is the reference; a test holds the two equal).
    """

    def __init__(
        self, writer: SnapshotWriter, specs: Sequence[ChunkerSpec], entries: Sequence[TreeEntry], keep_directories: bool = False
    ) -> None:
        self.writer = writer
        # digest → (encoded message, child directory digests), kept to store the closure
        self.directory_messages: dict[bytes, tuple[bytes, tuple[bytes, ...]]] | None = {} if keep_directories else None
        self.snapshot_id = writer.snapshot_id
        self.chunker_ids = [spec.id for spec in specs]
        self._file_chunkings = [k for k, spec in enumerate(specs) if not spec.is_stream]
        """The specs per-file batches come in for (stream chunkings get :meth:`add_stream`)."""
        self.entries = entries
        self._seen: set[bytes] = set()
        self.chunk_rows = [0] * len(specs)
        """Chunk rows written, per chunking."""
        self._pending_blobs = BlobBatchBuilder()
        self._children: dict[int, list[_Child | None]] = {}  # None: a child left out
        self._waiting: dict[int, int] = {}  # listed directory → children not yet resolved
        self._written_dirs: set[bytes] = set()
        self._root: Node | None = None
        self._root_nar = 0
        self._counts = {"file": 0, "directory": 0, "symlink": 0}
        self._file_bytes = 0
        self._rows: dict[str, list] = _empty_node_columns()

    @property
    def blob_count(self) -> int:
        return len(self._seen)

    # blobs ---------------------------------------------------------------------------------

    def add_blob(self, index: int, info: BlobInfo) -> None:
        """Record the blob of file entry ``index`` (a recorder of one chunking)."""
        self._pending_blobs.add(index, info)
        if len(self._pending_blobs) >= _SINGLE_BLOB_FLUSH:
            self._flush_blobs()

    def _flush_blobs(self) -> None:
        if len(self._pending_blobs):
            self.add_batch(self._pending_blobs.build())

    def add_batch(self, batch: BlobBatch) -> None:
        """Record a batch of blobs (a recorder of one chunking); its errors become skipped files."""
        self.add_batches([batch])

    def add_batches(self, batches: Sequence[BlobBatch]) -> None:
        """Record the same files' blobs under each chunking, in the order of ``specs``."""
        # numpy and Arrow load with the first batch, not before the scan: the tree is walked
        # and the workers busy while they do
        import numpy as np

        from storelab.ingest.columns import blob_columns, chunk_columns

        first = batches[0]
        fresh = self.add_files(first.indices, first.digests, first.sizes)
        for index, _ in first.errors:
            self.skip(index)
        keep = np.array(fresh, dtype=bool)
        if keep.any():
            for batch, i in zip(batches, self._file_chunkings, strict=True):
                constants = {"snapshot_id": self.snapshot_id, "chunker_id": self.chunker_ids[i]}
                self.writer.append_columns("blobs", blob_columns(batch, keep), constants)
                chunks = chunk_columns(batch, keep)
                self.chunk_rows[i] += len(chunks["digest"])
                self.writer.append_columns("chunks", chunks, constants)

    def add_stream(self, chunking: int, info: BlobInfo) -> None:
        """Record the stream of stream chunking ``chunking``: its one blob row and its chunks."""
        import numpy as np

        from storelab.ingest.columns import blob_columns, chunk_columns

        builder = BlobBatchBuilder()
        builder.add(0, info)
        batch = builder.build()
        keep = np.ones(1, dtype=bool)
        constants = {"snapshot_id": self.snapshot_id, "chunker_id": self.chunker_ids[chunking]}
        self.writer.append_columns("blobs", blob_columns(batch, keep), constants)
        chunks = chunk_columns(batch, keep)
        self.chunk_rows[chunking] += len(chunks["digest"])
        self.writer.append_columns("chunks", chunks, constants)

    def add_files(self, indices: Sequence[int], digests: bytes, sizes: Sequence[int]) -> list[bool]:
        """Record file entries — their nodes, not their blob rows (:meth:`add_batch` writes
        those; a cluster task writes its own). Returns, per file, whether its blob is new to
        this snapshot. The node rows go in as columns."""
        entries, seen = self.entries, self._seen
        fresh: list[bool] = []
        paths: list[bytes] = []
        executables: list[bool] = []
        total = 0
        for i, (index, size) in enumerate(zip(indices, sizes)):
            digest = digests[32 * i : 32 * i + 32]
            if digest in seen:
                fresh.append(False)
            else:
                seen.add(digest)
                fresh.append(True)
            entry = entries[index]
            path, executable = entry.path, entry.executable
            paths.append(path)
            executables.append(executable)
            total += size
            name = path.rpartition(b"/")[2]
            field = bytes_field(_FILE, encode_file_node(name, digest, size, executable))
            nar = nar_entry_size(name, nar_node_size("file", size, executable))
            self._resolve(index, (_FILE, index, field, 0, size, nar, digest))
        if paths:
            self._counts["file"] += len(paths)
            self._file_bytes += total
            from storelab.ingest.columns import file_node_columns

            self.writer.append_columns(
                "nodes",
                file_node_columns(paths, sizes, executables, digests),
                {"snapshot_id": self.snapshot_id, "kind": "file", "symlink_target": None},
            )
        return fresh

    def skip(self, index: int) -> None:
        """File entry ``index`` will have no blob: leave it out of its directory."""
        self._resolve(index, None)

    # the tree ------------------------------------------------------------------------------

    def listed(self, directory: int, children: Sequence[int]) -> None:
        """Directory entry ``directory`` has exactly these children (entry indices)."""
        entries = self.entries
        for child in children:
            entry = entries[child]
            if entry.kind == "symlink":
                assert entry.target is not None
                self._resolve(child, self._symlink(child, entry.path, entry.target))
        left = len(children) - len(self._children.get(directory, ()))
        if left:
            self._waiting[directory] = left
        else:
            self._resolve(directory, self._build(directory))

    def _symlink(self, index: int, path: bytes, target: bytes) -> _Child:
        """A symlink entry, final: its node row now, its place in the parent."""
        self._node_row(path, "symlink", None, None, target)
        name = path.rpartition(b"/")[2]
        nar = nar_entry_size(name, nar_node_size("symlink", target=target))
        return (_SYMLINK, index, bytes_field(_SYMLINK, encode_symlink_node(name, target)), 0, 0, nar, None)

    def _resolve(self, index: int, child: _Child | None) -> None:
        """Entry ``index`` is final (None: left out); complete its parent if it was the last."""
        entries, children, waiting = self.entries, self._children, self._waiting
        while True:
            parent = entries[index].parent
            if parent < 0:
                self._set_root(index, child)
                return
            kids = children.get(parent)
            if kids is None:
                children[parent] = kids = []
            kids.append(child)
            left = waiting.get(parent)
            if left is None:  # the parent is not listed yet
                return
            if left > 1:
                waiting[parent] = left - 1
                return
            del waiting[parent]
            index, child = parent, self._build(parent)

    def _set_root(self, index: int, child: _Child | None) -> None:
        if child is None:
            return
        kind, _, _, size, file_bytes, nar, digest = child
        entry = self.entries[index]
        if kind == _DIRECTORY:
            self._root = DirectoryNode(b"", digest, size)  # type: ignore[arg-type]
            self._root_nar = nar
        elif kind == _FILE:  # a single-file tree
            self._root = FileNode(b"", digest, file_bytes, entry.executable)  # type: ignore[arg-type]
            self._root_nar = nar_node_size("file", file_bytes, entry.executable)
        else:
            assert entry.target is not None
            self._root = SymlinkNode(b"", entry.target)
            self._root_nar = nar_node_size("symlink", target=entry.target)

    def _build(self, index: int) -> _Child:
        """Encode a directory whose children are all final; write its rows."""
        kids = [kid for kid in self._children.pop(index, ()) if kid is not None]
        kids.sort()  # (kind, index): castore's field order, each list in name order
        encoded = b"".join([kid[2] for kid in kids])
        digest = blake3.blake3(encoded).digest()
        dirs = [kid for kid in kids if kid[0] == _DIRECTORY]
        size = 2 * len(kids) + sum(kid[3] for kid in dirs)
        file_bytes = sum(kid[4] for kid in kids)
        nar = nar_node_size("directory", entries=sum(kid[5] for kid in kids))
        path = self.entries[index].path
        self._node_row(path, "directory", size, None, None, digest)
        if digest not in self._written_dirs:
            self._written_dirs.add(digest)
            if self.directory_messages is not None:
                self.directory_messages[digest] = (encoded, tuple(kid[6] for kid in dirs))  # type: ignore[misc]
            files = sum(1 for kid in kids if kid[0] == _FILE)
            self.writer.append(
                "directories",
                {
                    "snapshot_id": self.snapshot_id,
                    "digest": digest,
                    "encoded_size": len(encoded),
                    "directory_entries": len(dirs),
                    "file_entries": files,
                    "symlink_entries": len(kids) - len(dirs) - files,
                    "size": size,
                    "file_bytes": file_bytes,
                },
            )
        if self.entries[index].parent < 0:
            return (_DIRECTORY, index, b"", size, file_bytes, nar, digest)
        name = path.rpartition(b"/")[2]
        field = bytes_field(_DIRECTORY, encode_directory_node(name, digest, size))
        return (_DIRECTORY, index, field, size, file_bytes, nar_entry_size(name, nar), digest)

    def _node_row(
        self, path: bytes, kind: str, size: int | None, executable: bool | None, target: bytes | None, digest: bytes | None = None
    ) -> None:
        """The node row of a final directory or symlink (files go in as columns)."""
        self._counts[kind] += 1
        rows = self._rows
        rows["path"].append(path)
        rows["kind"].append(kind)
        rows["size"].append(size)
        rows["executable"].append(executable)
        rows["digest"].append(digest)
        rows["symlink_target"].append(target)
        if len(rows["path"]) >= _NODE_ROWS_PER_WRITE:
            self._flush_nodes()

    def _flush_nodes(self) -> None:
        if self._rows["path"]:
            self.writer.append_columns("nodes", self._rows, {"snapshot_id": self.snapshot_id})
            self._rows = _empty_node_columns()

    def finish(self) -> RecordedTree:
        """Everything is reported: write the last rows and return the root."""
        self._flush_blobs()
        if self._root is None and self.entries and self.entries[0].kind == "symlink":
            root = self.entries[0]
            assert root.target is not None
            self._resolve(0, self._symlink(0, b"", root.target))  # a symlink root has no listing
        if self._root is None and self.entries and self.entries[0].kind == "directory":
            raise ValueError(f"the tree is incomplete: {len(self._waiting)} directories still wait for entries")
        if self._root is None:
            raise ValueError("the tree has no root (its only file was skipped)")
        self._flush_nodes()
        return RecordedTree(
            self._root,
            self._counts["file"],
            self._counts["directory"],
            self._counts["symlink"],
            self._file_bytes,
            NAR_HEADER_SIZE + self._root_nar,
        )

    def directory_closure(self) -> list[bytes]:
        """The root directory's closure, encoded, from the root to the leaves (each once), in
        the order snix's object store writes it; empty unless the root is a directory and the
        recorder was asked to keep directories.

        snix's ``ObjectStoreDirectoryPutter`` keeps the closure as a petgraph ``DiGraph`` (one
        node per digest, one edge per child directory entry, added in name order) and drains
        it with ``Bfs`` from the root; petgraph lists a node's neighbours newest edge first,
        so each directory's children are visited in reverse name order, a digest met again
        (a shared subtree) not again."""
        if self.directory_messages is None or not isinstance(self._root, DirectoryNode):
            return []
        order: list[bytes] = []
        seen = {self._root.digest}
        queue = deque([self._root.digest])
        while queue:
            digest = queue.popleft()
            encoded, kids = self.directory_messages[digest]
            order.append(encoded)
            for kid in reversed(kids):
                if kid not in seen:
                    seen.add(kid)
                    queue.append(kid)
        return order

    def record_tree(self, entries: Sequence[TreeEntry]) -> RecordedTree:
        """Report the listing of every directory of a complete ``entries`` list, then finish."""
        self._flush_blobs()
        children: dict[int, list[int]] = {}
        for index, entry in enumerate(entries):
            if entry.parent >= 0:
                children.setdefault(entry.parent, []).append(index)
        for index, entry in enumerate(entries):
            if entry.kind == "directory":
                self.listed(index, children.get(index, []))
        return self.finish()


def _empty_node_columns() -> dict[str, list]:
    return {"path": [], "kind": [], "size": [], "executable": [], "digest": [], "symlink_target": []}


def root_fields(root: Node) -> dict[str, object]:
    """The ``root_*`` columns of a snapshots row."""
    if isinstance(root, FileNode):
        return {"root_kind": "file", "root_digest": root.digest, "root_size": root.size, "root_executable": root.executable}
    if isinstance(root, DirectoryNode):
        return {"root_kind": "directory", "root_digest": root.digest, "root_size": root.size}
    return {"root_kind": "symlink", "root_symlink_target": root.target}
