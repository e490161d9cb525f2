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

from storelab.castore import Directory, DirectoryNode, FileNode, Node, SymlinkNode
from storelab.chunking import ChunkerSpec
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.tree import TreeEntry
from storelab.nar.writer import NAR_HEADER_SIZE, nar_entry_size, nar_node_size
from storelab.tables import SnapshotWriter

__all__ = ["SnapshotRecorder", "RecordedTree", "root_fields"]

_SINGLE_BLOB_FLUSH = 4096
_NODE_ROWS_PER_WRITE = 65536


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
    """Writes blob, chunk, node and directory rows for one snapshot through a writer.

    The caller reports, in any interleaving:

    - :meth:`listed` — a directory's children are all in ``entries`` (its listing is done);
    - :meth:`add_batch` / :meth:`add_blob` — the blobs of file entries;
    - :meth:`skip` — a file entry that will have no blob (unreadable, vanished).

    ``entries`` is the source's list of :class:`TreeEntry` in pre-order (it may still be
    growing), and the children of each directory appear in it in name order. Each distinct
    blob is written once per snapshot, however often it occurs. :meth:`finish` returns the
    root once everything has been reported.
    """

    def __init__(
        self, writer: SnapshotWriter, spec: ChunkerSpec, entries: Sequence[TreeEntry], keep_directories: bool = False
    ) -> None:
        self.writer = writer
        # digest → (encoded message, child directory digests), kept to store the closure
        self.directory_messages: dict[bytes, tuple[bytes, tuple[bytes, ...]]] | None = {} if keep_directories else None
        self.snapshot_id = writer.snapshot_id
        self.chunker_id = spec.id
        self.entries = entries
        self._seen: set[bytes] = set()
        self.chunk_rows = 0
        self._pending_blobs = BlobBatchBuilder()
        self._children: dict[int, list[tuple[int, Node | None]]] = {}
        self._waiting: dict[int, int] = {}  # listed directory → children not yet resolved
        self._dir_file_bytes: dict[int, int] = {}
        self._nar_sizes: dict[int, int] = {}  # finished entry → bytes of its NAR node
        self._written_dirs: set[bytes] = set()
        self._root: Node | None = None
        self._counts = {"file": 0, "directory": 0, "symlink": 0}
        self._file_bytes = 0
        self._rows: dict[str, list] = _empty_node_columns()

    @property
    def blob_count(self) -> int:
        return len(self._seen)

    # blobs ---------------------------------------------------------------------------------

    def add_blob(self, index: int, info: BlobInfo) -> None:
        """Record the blob of file entry ``index``."""
        self._pending_blobs.add(index, info)
        if len(self._pending_blobs) >= _SINGLE_BLOB_FLUSH:
            self._flush_blobs()

    def _flush_blobs(self) -> None:
        if len(self._pending_blobs):
            self.add_batch(self._pending_blobs.build())

    def add_batch(self, batch: BlobBatch) -> None:
        """Record a batch of blobs; its errors become skipped files."""
        # numpy and Arrow load with the first batch, not before the scan: the tree is walked
        # and the workers busy while they do
        import numpy as np

        from storelab.ingest.columns import blob_columns, chunk_columns

        keep = np.zeros(len(batch), dtype=bool)
        seen = self._seen
        digests = batch.digests
        entries = self.entries
        for i, (index, size) in enumerate(zip(batch.indices, batch.sizes)):
            digest = digests[32 * i : 32 * i + 32]
            if digest not in seen:
                seen.add(digest)
                keep[i] = True
            entry = entries[index]
            self._resolve(index, FileNode(entry.path.rpartition(b"/")[2], digest, size, entry.executable))
        for index, _ in batch.errors:
            self.skip(index)
        if keep.any():
            sid = {"snapshot_id": self.snapshot_id}
            self.writer.append_columns("blobs", blob_columns(batch, keep), sid)
            chunks = chunk_columns(batch, keep)
            self.chunk_rows += len(chunks["digest"])
            self.writer.append_columns("chunks", chunks, {**sid, "chunker_id": self.chunker_id})

    def add_files(self, indices: Sequence[int], digests: bytes, sizes: Sequence[int]) -> list[bool]:
        """Record file entries whose blob rows someone else writes (a cluster task): resolve
        their nodes only. Returns, per file, whether its blob is new to this snapshot."""
        entries = self.entries
        new = []
        for i, (index, size) in enumerate(zip(indices, sizes)):
            digest = digests[32 * i : 32 * i + 32]
            fresh = digest not in self._seen
            if fresh:
                self._seen.add(digest)
            new.append(fresh)
            entry = entries[index]
            self._resolve(index, FileNode(entry.path.rpartition(b"/")[2], digest, int(size), entry.executable))
        return new

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
                self._resolve(child, SymlinkNode(entry.path.rpartition(b"/")[2], entry.target))
        left = len(children) - len(self._children.get(directory, ()))
        if left:
            self._waiting[directory] = left
        else:
            self._complete(directory)

    def _resolve(self, index: int, node: Node | None) -> None:
        """Entry ``index`` is final (None: left out); complete its parent if it was the last."""
        while True:
            parent = self.entries[index].parent
            if parent < 0:
                self._root = node
                if node is not None:
                    self._count(index, node)
                return
            self._children.setdefault(parent, []).append((index, node))
            left = self._waiting.get(parent)
            if left is None:  # the parent is not listed yet
                return
            if left > 1:
                self._waiting[parent] = left - 1
                return
            del self._waiting[parent]
            index, node = parent, self._build(parent)

    def _complete(self, directory: int) -> None:
        self._resolve(directory, self._build(directory))

    def _build(self, index: int) -> DirectoryNode:
        """Encode a directory whose children are all final; write their rows."""
        kids = self._children.pop(index, [])
        kids.sort(key=_by_index)
        file_bytes = 0
        entries_nar = 0
        dirs: list[DirectoryNode] = []
        files: list[FileNode] = []
        links: list[SymlinkNode] = []
        for child, node in kids:
            if node is None:
                continue
            self._count(child, node)
            entries_nar += nar_entry_size(node.name, self._node_nar(child, node))
            if type(node) is FileNode:
                files.append(node)
                file_bytes += node.size
            elif type(node) is DirectoryNode:
                dirs.append(node)
                file_bytes += self._dir_file_bytes.pop(child)
            else:
                links.append(node)  # type: ignore[arg-type]
        directory = Directory.trusted(tuple(dirs), tuple(files), tuple(links))
        node = directory.node(self.entries[index].path.rpartition(b"/")[2])
        self._dir_file_bytes[index] = file_bytes
        self._nar_sizes[index] = nar_node_size("directory", entries=entries_nar)
        if node.digest not in self._written_dirs:
            self._written_dirs.add(node.digest)
            if self.directory_messages is not None:
                self.directory_messages[node.digest] = (directory.encoded, tuple(d.digest for d in dirs))
            self.writer.append(
                "directories",
                {
                    "snapshot_id": self.snapshot_id,
                    "digest": node.digest,
                    "encoded_size": len(directory.encoded),
                    "directory_entries": len(dirs),
                    "file_entries": len(files),
                    "symlink_entries": len(links),
                    "size": node.size,
                    "file_bytes": file_bytes,
                },
            )
        return node

    def _node_nar(self, index: int, node: Node) -> int:
        """Bytes of a final entry's NAR node (a directory's were summed when it was built)."""
        if type(node) is FileNode:
            return nar_node_size("file", node.size, node.executable)
        if type(node) is DirectoryNode:
            return self._nar_sizes.pop(index)
        return nar_node_size("symlink", target=node.target)  # type: ignore[union-attr]

    def _count(self, index: int, node: Node) -> None:
        """Write the node row of a final entry (each entry exactly once)."""
        rows = self._rows
        rows["path"].append(self.entries[index].path)
        if type(node) is FileNode:
            self._counts["file"] += 1
            self._file_bytes += node.size
            rows["kind"].append("file")
            rows["size"].append(node.size)
            rows["executable"].append(node.executable)
            rows["digest"].append(node.digest)
            rows["symlink_target"].append(None)
        elif type(node) is DirectoryNode:
            self._counts["directory"] += 1
            rows["kind"].append("directory")
            rows["size"].append(node.size)
            rows["executable"].append(None)
            rows["digest"].append(node.digest)
            rows["symlink_target"].append(None)
        else:
            self._counts["symlink"] += 1
            rows["kind"].append("symlink")
            rows["size"].append(None)
            rows["executable"].append(None)
            rows["digest"].append(None)
            rows["symlink_target"].append(node.target)  # type: ignore[union-attr]
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
            self._resolve(0, SymlinkNode(b"", root.target))  # a symlink root has no listing
        if self._root is None and self.entries and self.entries[0].kind == "directory":
            raise ValueError(f"the tree is incomplete: {len(self._waiting)} directories still wait for entries")
        if self._root is None:
            raise ValueError("the tree has no root (its only file was skipped)")
        self._flush_nodes()
        nar_size = NAR_HEADER_SIZE + self._node_nar(0, self._root)
        return RecordedTree(
            self._root, self._counts["file"], self._counts["directory"], self._counts["symlink"], self._file_bytes, nar_size
        )

    def directory_closure(self) -> list[bytes]:
        """The root directory's closure, encoded, from the root to the leaves (each once),
        as snix's object store keeps it; empty unless the root is a directory and the
        recorder was asked to keep directories."""
        if self.directory_messages is None or not isinstance(self._root, DirectoryNode):
            return []
        order: list[bytes] = []
        seen = {self._root.digest}
        queue = deque([self._root.digest])
        while queue:
            digest = queue.popleft()
            encoded, kids = self.directory_messages[digest]
            order.append(encoded)
            for kid in kids:
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


def _by_index(item: tuple[int, Node | None]) -> int:
    return item[0]


def _empty_node_columns() -> dict[str, list]:
    return {"path": [], "kind": [], "size": [], "executable": [], "digest": [], "symlink_target": []}


def root_fields(root: Node) -> dict[str, object]:
    """The ``root_*`` columns of a snapshots row."""
    if isinstance(root, FileNode):
        return {"root_kind": "file", "root_digest": root.digest, "root_size": root.size, "root_executable": root.executable}
    if isinstance(root, DirectoryNode):
        return {"root_kind": "directory", "root_digest": root.digest, "root_size": root.size}
    return {"root_kind": "symlink", "root_symlink_target": root.target}
