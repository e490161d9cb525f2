"""Turn what a source yielded (tree entries and their blobs) into rows of a snapshot.

Shared by every source (directory trees, NAR archives): the castore model is built here,
once, so a tree and its NAR give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storelab.castore import Directory, DirectoryNode, FileNode, Node, SymlinkNode
from storelab.chunking import ChunkerSpec
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.columns import blob_columns, chunk_columns
from storelab.ingest.tree import TreeEntry
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


class SnapshotRecorder:
    """Writes blob, chunk, node and directory rows for one snapshot through a writer.

    Blobs arrive as batches (or one at a time) keyed by the index of their file entry; each
    distinct blob is written once per snapshot, however often it occurs. Then
    :meth:`record_tree` builds the directories and writes the nodes.
    """

    def __init__(self, writer: SnapshotWriter, spec: ChunkerSpec) -> None:
        self.writer = writer
        self.snapshot_id = writer.snapshot_id
        self.chunker_id = spec.id
        self._seen: set[bytes] = set()
        self.chunk_rows = 0
        self._file_digest: dict[int, bytes] = {}
        self._file_size: dict[int, int] = {}
        self._pending = BlobBatchBuilder()

    @property
    def blob_count(self) -> int:
        return len(self._seen)

    def add_blob(self, index: int, info: BlobInfo) -> None:
        """Record the blob of file entry ``index``."""
        self._pending.add(index, info)
        if len(self._pending) >= _SINGLE_BLOB_FLUSH:
            self.add_batch(self._pending.build())

    def add_batch(self, batch: BlobBatch) -> None:
        """Record a batch of blobs (errors in it are the caller's to report)."""
        keep = np.zeros(len(batch), dtype=bool)
        seen = self._seen
        digests = batch.digests
        file_digest, file_size = self._file_digest, self._file_size
        for i, (index, size) in enumerate(zip(batch.indices, batch.sizes)):
            digest = digests[32 * i : 32 * i + 32]
            file_digest[index] = digest
            file_size[index] = size
            if digest not in seen:
                seen.add(digest)
                keep[i] = True
        if not keep.any():
            return
        sid = {"snapshot_id": self.snapshot_id}
        self.writer.append_columns("blobs", blob_columns(batch, keep), sid)
        chunks = chunk_columns(batch, keep)
        self.chunk_rows += len(chunks["digest"])
        self.writer.append_columns("chunks", chunks, {**sid, "chunker_id": self.chunker_id})

    def _flush_pending(self) -> None:
        if len(self._pending):
            self.add_batch(self._pending.build())

    def record_tree(self, entries: Sequence[TreeEntry]) -> RecordedTree:
        """Build every directory bottom-up and write the nodes and directories tables.

        ``entries`` are in pre-order (each directory before its contents, the root first).
        File entries whose blob was never added (skipped files) are left out.
        """
        self._flush_pending()
        count = len(entries)
        children: list[list[Node] | None] = [None] * count
        file_bytes = [0] * count
        dir_nodes: dict[int, DirectoryNode] = {}
        written_dirs: set[bytes] = set()
        file_digest, file_size = self._file_digest, self._file_size
        n_files = n_dirs = n_links = 0
        root: Node | None = None
        for index in range(count - 1, -1, -1):
            entry = entries[index]
            name = entry.path.rpartition(b"/")[2]
            node: Node
            kind = entry.kind
            if kind == "file":
                digest = file_digest.get(index)
                if digest is None:
                    continue
                size = file_size[index]
                node = FileNode(name, digest, size, entry.executable)
                n_files += 1
                file_bytes[index] = size
            elif kind == "symlink":
                assert entry.target is not None
                node = SymlinkNode(name, entry.target)
                n_links += 1
            else:
                directory = _directory_of(children[index])
                children[index] = None  # free as we go up
                node = dir_nodes[index] = directory.node(name)
                n_dirs += 1
                if node.digest not in written_dirs:
                    written_dirs.add(node.digest)
                    self.writer.append(
                        "directories",
                        {
                            "snapshot_id": self.snapshot_id,
                            "digest": node.digest,
                            "encoded_size": len(directory.encoded),
                            "directory_entries": len(directory.directories),
                            "file_entries": len(directory.files),
                            "symlink_entries": len(directory.symlinks),
                            "size": node.size,
                            "file_bytes": file_bytes[index],
                        },
                    )
            parent = entry.parent
            if parent >= 0:
                siblings = children[parent]
                if siblings is None:
                    siblings = children[parent] = []
                siblings.append(node)
                file_bytes[parent] += file_bytes[index]
            else:
                root = node
        if root is None:
            raise ValueError("the tree has no root entry")
        self._write_nodes(entries, dir_nodes)
        return RecordedTree(root, n_files, n_dirs, n_links, file_bytes[0] if count else 0)

    def _write_nodes(self, entries: Sequence[TreeEntry], dir_nodes: dict[int, DirectoryNode]) -> None:
        file_digest, file_size = self._file_digest, self._file_size
        for start in range(0, len(entries), _NODE_ROWS_PER_WRITE):
            paths: list[bytes] = []
            kinds: list[str] = []
            sizes: list[int | None] = []
            executables: list[bool | None] = []
            digests: list[bytes | None] = []
            targets: list[bytes | None] = []
            for index in range(start, min(start + _NODE_ROWS_PER_WRITE, len(entries))):
                entry = entries[index]
                kind = entry.kind
                if kind == "file":
                    digest = file_digest.get(index)
                    if digest is None:
                        continue
                    sizes.append(file_size[index])
                    executables.append(entry.executable)
                    digests.append(digest)
                    targets.append(None)
                elif kind == "directory":
                    node = dir_nodes[index]
                    sizes.append(node.size)
                    executables.append(None)
                    digests.append(node.digest)
                    targets.append(None)
                else:
                    sizes.append(None)
                    executables.append(None)
                    digests.append(None)
                    targets.append(entry.target)
                paths.append(entry.path)
                kinds.append(kind)
            self.writer.append_columns(
                "nodes",
                {
                    "path": paths,
                    "kind": kinds,
                    "size": sizes,
                    "executable": executables,
                    "digest": digests,
                    "symlink_target": targets,
                },
                {"snapshot_id": self.snapshot_id},
            )


def _directory_of(nodes: list[Node] | None) -> Directory:
    """A directory from the nodes gathered for it.

    The scan lists each directory sorted by name and checks every name, and the walk up the
    tree visits entries in reverse, so the nodes arrive valid and in exactly reverse order.
    """
    if not nodes:
        return Directory()
    nodes.reverse()
    dirs = tuple(n for n in nodes if type(n) is DirectoryNode)
    files = tuple(n for n in nodes if type(n) is FileNode)
    links = tuple(n for n in nodes if type(n) is SymlinkNode)
    return Directory.trusted(dirs, files, links)  # type: ignore[arg-type]


def root_fields(root: Node) -> dict[str, object]:
    """The ``root_*`` columns of a snapshots row."""
    if isinstance(root, FileNode):
        return {"root_kind": "file", "root_digest": root.digest, "root_size": root.size, "root_executable": root.executable}
    if isinstance(root, DirectoryNode):
        return {"root_kind": "directory", "root_digest": root.digest, "root_size": root.size}
    return {"root_kind": "symlink", "root_symlink_target": root.target}
