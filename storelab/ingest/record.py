"""Turn what a source yielded (tree entries and their blobs) into rows of a snapshot.

Shared by every source (directory trees, NAR archives): the castore model is built here,
once, so a tree and its NAR give the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storelab.castore import Directory, DirectoryNode, FileNode, Node, SymlinkNode
from storelab.castore.protobuf import bytes_field, varint_field
from storelab.chunking import ChunkerSpec
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.tree import TreeEntry
from storelab.tables import SnapshotWriter

__all__ = ["SnapshotRecorder", "RecordedTree", "blob_index_size"]


def blob_index_size(info: BlobInfo) -> int:
    """Bytes of the blob index object snix's object store writes for this blob.

    ``StatBlobResponse{repeated ChunkMeta chunks = 2}``, ``ChunkMeta{digest 1, size 2}``;
    a blob of fewer than two chunks gets an empty (0-byte) index.
    """
    if info.chunk_count < 2:
        return 0
    return sum(
        len(bytes_field(2, bytes_field(1, info.chunk_digest(i)) + varint_field(2, size)))
        for i, size in enumerate(info.chunk_sizes)
    )


@dataclass(frozen=True, slots=True)
class RecordedTree:
    """The castore root of a recorded tree, and its totals."""

    root: Node
    files: int
    directories: int
    symlinks: int
    file_bytes: int


class SnapshotRecorder:
    """Writes blob, chunk, node and directory rows for one snapshot through a writer."""

    def __init__(self, writer: SnapshotWriter, spec: ChunkerSpec) -> None:
        self.writer = writer
        self.snapshot_id = writer.snapshot_id
        self.chunker_id = spec.id
        self._blobs_seen: set[bytes] = set()
        self.chunk_rows = 0

    @property
    def blob_count(self) -> int:
        return len(self._blobs_seen)

    def add_blob(self, info: BlobInfo) -> None:
        """Record a blob and its chunks, once per snapshot however often it occurs."""
        if info.digest in self._blobs_seen:
            return
        self._blobs_seen.add(info.digest)
        compressed = info.chunk_compressed
        append = self.writer.append
        append(
            "blobs",
            {
                "snapshot_id": self.snapshot_id,
                "digest": info.digest,
                "size": info.size,
                "chunk_count": info.chunk_count,
                "compressed_size": sum(compressed) if compressed is not None else None,
                "index_size": blob_index_size(info),
            },
        )
        offset = 0
        for index, size in enumerate(info.chunk_sizes):
            append(
                "chunks",
                {
                    "snapshot_id": self.snapshot_id,
                    "chunker_id": self.chunker_id,
                    "blob_digest": info.digest,
                    "index": index,
                    "offset": offset,
                    "size": size,
                    "digest": info.chunk_digest(index),
                    "compressed_size": compressed[index] if compressed is not None else None,
                },
            )
            offset += size
        self.chunk_rows += info.chunk_count

    def record_tree(self, entries: Sequence[TreeEntry], blobs: Mapping[int, BlobInfo]) -> RecordedTree:
        """Build every directory bottom-up and write the nodes and directories tables.

        ``entries`` are in pre-order (each directory before its contents, the root first);
        ``blobs`` maps the index of each file entry that was read to its blob. File entries
        without a blob (skipped) are left out of the snapshot.
        """
        count = len(entries)
        children: list[list[Node] | None] = [None] * count
        file_bytes = [0] * count
        directories: dict[int, Directory] = {}
        written_dirs: set[bytes] = set()
        n_files = n_dirs = n_links = 0
        for index in range(count - 1, -1, -1):
            entry = entries[index]
            name = entry.path.rsplit(b"/", 1)[-1] if entry.path else b""
            node: Node
            if entry.kind == "file":
                info = blobs.get(index)
                if info is None:
                    continue
                node = FileNode(name, info.digest, info.size, entry.executable)
                n_files += 1
                file_bytes[index] = info.size
            elif entry.kind == "symlink":
                assert entry.target is not None
                node = SymlinkNode(name, entry.target)
                n_links += 1
            else:
                directory = Directory.from_nodes(children[index] or ())
                directories[index] = directory
                node = directory.node(name)
                n_dirs += 1
                if directory.digest not in written_dirs:
                    written_dirs.add(directory.digest)
                    self.writer.append(
                        "directories",
                        {
                            "snapshot_id": self.snapshot_id,
                            "digest": directory.digest,
                            "encoded_size": len(directory.encoded),
                            "directory_entries": len(directory.directories),
                            "file_entries": len(directory.files),
                            "symlink_entries": len(directory.symlinks),
                            "size": directory.size,
                            "file_bytes": file_bytes[index],
                        },
                    )
                children[index] = None  # free as we go up
            if entry.parent >= 0:
                siblings = children[entry.parent]
                if siblings is None:
                    siblings = children[entry.parent] = []
                siblings.append(node)
                file_bytes[entry.parent] += file_bytes[index]
            else:
                root = node
        self._write_nodes(entries, blobs, directories)
        return RecordedTree(root, n_files, n_dirs, n_links, file_bytes[0] if count else 0)

    def _write_nodes(
        self, entries: Sequence[TreeEntry], blobs: Mapping[int, BlobInfo], directories: Mapping[int, Directory]
    ) -> None:
        append = self.writer.append
        sid = self.snapshot_id
        for index, entry in enumerate(entries):
            if entry.kind == "file":
                info = blobs.get(index)
                if info is None:
                    continue
                row = {"path": entry.path, "kind": "file", "size": info.size, "executable": entry.executable, "digest": info.digest}
            elif entry.kind == "symlink":
                row = {"path": entry.path, "kind": "symlink", "symlink_target": entry.target}
            else:
                directory = directories[index]
                row = {"path": entry.path, "kind": "directory", "size": directory.size, "digest": directory.digest}
            row["snapshot_id"] = sid
            append("nodes", row)


def root_fields(root: Node) -> dict[str, object]:
    """The ``root_*`` columns of a snapshots row."""
    if isinstance(root, FileNode):
        return {"root_kind": "file", "root_digest": root.digest, "root_size": root.size, "root_executable": root.executable}
    if isinstance(root, DirectoryNode):
        return {"root_kind": "directory", "root_digest": root.digest, "root_size": root.size}
    return {"root_kind": "symlink", "root_symlink_target": root.target}
