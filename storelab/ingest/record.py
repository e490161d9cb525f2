"""Turn what a source yields (tree entries and their blobs) into rows of a snapshot.

Shared by every source (directory trees, NAR archives): the castore model is built here,
once, so a tree and its NAR give the same rows.

Directories are built while the blobs are still arriving: each directory is encoded as soon
as it has been listed and every file below it has been hashed, so the work overlaps the
hashing and memory holds only the directories still open.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import blake3

from storelab.castore import DirectoryNode, FileNode, Node, SymlinkNode
from storelab.castore.nodes import (
    encode_directory_node,
    encode_file_entries,
    encode_symlink_node,
)
from storelab.castore.protobuf import bytes_field
from storelab.chunking import ChunkerSpec
from storelab.ingest.batch import BlobBatch, BlobBatchBuilder, merge_batches
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.tree import TreeEntry
from storelab.nar.writer import NAR_HEADER_SIZE, nar_entry_size, nar_file_entry_size, nar_node_size

if TYPE_CHECKING:
    from storelab.ingest.subtrees import AssembledRows
    from storelab.tables import SnapshotWriter

__all__ = ["Child", "FileRows", "RecordedTree", "SnapshotRecorder", "TreeAssembler", "root_fields"]

_SINGLE_BLOB_FLUSH = 4096
# Rows are turned into Arrow columns in batches this large while the workers still run: left to
# the end, a tree's directory and symlink rows (30,000 on the debian-cache slice) were a tenth of
# a second of one core's work with the other idle.
_NODE_ROWS_PER_WRITE = 16384
_ASSEMBLED_FILES_PER_WRITE = 16384

# A final child of a directory still open: (kind, entry index, its field in the parent's
# encoding, castore size (directories), file bytes below it, bytes of its NAR entry, digest).
# Sorted, (kind, index) is castore's order: directories, files, symlinks, each by name.
_Child = tuple[int, int, bytes, int, int, int, "bytes | None"]
Child = _Child
"""An entry final in its directory (see above); what a subtree's assembler hands back."""
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


@dataclass(slots=True)
class FileRows:
    """Rows of the ``nodes`` table for files, as flat columns (cheap to pickle and to turn
    into Arrow arrays): path, size, execute bit, and 32 bytes of digest per file."""

    paths: list[bytes] = field(default_factory=list)
    sizes: array = field(default_factory=lambda: array("Q"))
    executables: list[bool] = field(default_factory=list)
    digests: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.paths)

    def extend(self, other: FileRows) -> None:
        self.paths += other.paths
        self.sizes.extend(other.sizes)
        self.executables += other.executables
        self.digests += other.digests


class TreeAssembler:
    """castore directories built bottom-up from a tree's entries as their children become
    final — the part of recording that needs no dataset, so that a worker process can
    assemble a whole subtree and hand back its rows (:mod:`~storelab.ingest.subtrees`).

    The caller reports, in any interleaving:

    - :meth:`listed` — a directory's children are all in ``entries`` (its listing is done);
    - :meth:`add_file_nodes` — the digests of file entries;
    - :meth:`skip` — a file entry that will have no blob (unreadable, vanished).

    ``entries`` is the list of :class:`TreeEntry` in pre-order (it may still be growing),
    the children of each directory in name order. ``prefix`` goes before every path in the
    rows (a subtree's place in the whole tree); ``root_name`` is the name the root has in
    its parent (a subtree's root; empty for a snapshot's root). Rows collect in
    :attr:`node_rows`, :attr:`file_rows` and :attr:`directory_rows` (each distinct
    directory once); :attr:`root` is the root's final child once everything is reported.

    >>> entries = [TreeEntry(b"", "directory"), TreeEntry(b"link", "symlink", target=b"x", parent=0)]
    >>> tree = TreeAssembler(entries, prefix=b"top", root_name=b"top")
    >>> tree.listed(0, [1])
    >>> tree.node_rows["path"], tree.root is not None
    ([b'top/link', b'top'], True)
    """

    def __init__(self, entries: Sequence[TreeEntry], prefix: bytes = b"", root_name: bytes = b"", keep_directories: bool = False) -> None:
        self.entries = entries
        self.prefix = prefix + b"/" if prefix else b""
        self.root_name = root_name
        # digest → (encoded message, child directory digests), kept to store the closure
        self.directory_messages: dict[bytes, tuple[bytes, tuple[bytes, ...]]] | None = {} if keep_directories else None
        self._children: dict[int, list[_Child | None]] = {}  # None: a child left out
        self._waiting: dict[int, int] = {}  # listed directory → children not yet resolved
        self._written_dirs: set[bytes] = set()
        self.root: _Child | None = None
        """The root's final child, once it is final."""
        self.root_index = -1
        self.counts = {"file": 0, "directory": 0, "symlink": 0}
        """Node rows made, by kind."""
        self.file_bytes = 0
        self.node_rows: dict[str, list] = _empty_node_columns()
        """Rows of the ``nodes`` table for directories and symlinks."""
        self.file_rows = FileRows()
        """Rows of the ``nodes`` table for files."""
        self.directory_rows: dict[str, list] = _empty_directory_columns()
        """Rows of the ``directories`` table, each distinct directory once."""

    def _full_path(self, path: bytes) -> bytes:
        return self.prefix + path if path else self.prefix[:-1]

    def add_file_nodes(self, indices: Sequence[int], digests: bytes | bytearray, sizes: Sequence[int]) -> None:
        """File entries ``indices`` have these digests (32 bytes each) and sizes: their node
        rows, and their place in their directories."""
        entries, rows = self.entries, self.file_rows
        digests = bytes(digests[: 32 * len(indices)])
        files = [entries[index] for index in indices]
        paths = [entry.path for entry in files]
        executables = [entry.executable for entry in files]
        prefix = self.prefix
        rows.paths += [prefix + path if path else prefix[:-1] for path in paths] if prefix else paths
        rows.executables += executables
        names = [path.rpartition(b"/")[2] for path in paths]
        fields = encode_file_entries(names, digests, sizes, executables)
        run: list[_Child | None] = []  # consecutive files of one directory, resolved together
        run_parent = -1
        for k, (index, entry, name, size, encoded) in enumerate(zip(indices, files, names, sizes, fields)):
            child = (_FILE, index, encoded, 0, size, nar_file_entry_size(len(name), size, entry.executable), digests[32 * k : 32 * k + 32])
            parent = entry.parent
            if parent < 0:  # a single-file tree
                self._resolve(index, child)
                continue
            if parent != run_parent and run:
                self._resolve_run(run_parent, run)
                run = []
            run_parent = parent
            run.append(child)
        if run:
            self._resolve_run(run_parent, run)
        rows.sizes.extend(sizes)
        rows.digests += digests
        self.counts["file"] += len(indices)
        self.file_bytes += sum(sizes)

    def skip(self, index: int) -> None:
        """File entry ``index`` will have no blob: leave it out of its directory."""
        self._resolve(index, None)

    def resolve(self, index: int, child: _Child) -> None:
        """Entry ``index`` is final, assembled elsewhere (``child``'s own index is replaced)."""
        self._resolve(index, (child[0], index, *child[2:]))

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
        name = path.rpartition(b"/")[2] or self.root_name
        nar = nar_entry_size(name, nar_node_size("symlink", target=target))
        return (_SYMLINK, index, bytes_field(_SYMLINK, encode_symlink_node(name, target)), 0, 0, nar, None)

    def _resolve_run(self, parent: int, kids: list[_Child | None]) -> None:
        """Entries of directory ``parent`` final together (:meth:`_resolve` of each, at once)."""
        known = self._children.get(parent)
        if known is None:
            self._children[parent] = kids
        else:
            known += kids
        left = self._waiting.get(parent)
        if left is None:  # the parent is not listed yet
            return
        if left > len(kids):
            self._waiting[parent] = left - len(kids)
            return
        del self._waiting[parent]
        self._resolve(parent, self._build(parent))

    def _resolve(self, index: int, child: _Child | None) -> None:
        """Entry ``index`` is final (None: left out); complete its parent if it was the last."""
        entries, children, waiting = self.entries, self._children, self._waiting
        while True:
            parent = entries[index].parent
            if parent < 0:
                self.root_index, self.root = index, child
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

    def final_children(self, directory: int) -> list[_Child]:
        """The children of a directory never listed here that are final so far (taken)."""
        return [kid for kid in self._children.pop(directory, ()) if kid is not None]

    def _build(self, index: int) -> _Child:
        """Encode a directory whose children are all final; collect its rows."""
        kids = [kid for kid in self._children.pop(index, ()) if kid is not None]
        kids.sort()  # (kind, index): castore's field order, each list in name order
        # one column per part of the children (a directory's castore size is 0 but for directories)
        kinds, _, fields, sizes, bytes_below, nar_sizes, digests = zip(*kids) if kids else ((),) * 7
        encoded = b"".join(fields)
        digest = blake3.blake3(encoded).digest()
        dirs = kinds.count(_DIRECTORY)  # first, being sorted
        size = 2 * len(kids) + sum(sizes)
        file_bytes = sum(bytes_below)
        nar = nar_node_size("directory", entries=sum(nar_sizes))
        entry = self.entries[index]
        path = entry.path
        self._node_row(path, "directory", size, None, None, digest)
        if digest not in self._written_dirs:
            self._written_dirs.add(digest)
            if self.directory_messages is not None:
                self.directory_messages[digest] = (encoded, digests[:dirs])
            files = kinds.count(_FILE)
            rows = self.directory_rows
            rows["digest"].append(digest)
            rows["encoded_size"].append(len(encoded))
            rows["directory_entries"].append(dirs)
            rows["file_entries"].append(files)
            rows["symlink_entries"].append(len(kids) - dirs - files)
            rows["size"].append(size)
            rows["file_bytes"].append(file_bytes)
            self._directory_row_added()
        name = path.rpartition(b"/")[2] if path else self.root_name
        if not name:  # the snapshot's root: no entry around it
            return (_DIRECTORY, index, b"", size, file_bytes, nar, digest)
        child_field = bytes_field(_DIRECTORY, encode_directory_node(name, digest, size))
        return (_DIRECTORY, index, child_field, size, file_bytes, nar_entry_size(name, nar), digest)

    def _node_row(
        self, path: bytes, kind: str, size: int | None, executable: bool | None, target: bytes | None, digest: bytes | None = None
    ) -> None:
        """The node row of a final directory or symlink (files go in as columns)."""
        self.counts[kind] += 1
        rows = self.node_rows
        rows["path"].append(self._full_path(path))
        rows["kind"].append(kind)
        rows["size"].append(size)
        rows["executable"].append(executable)
        rows["digest"].append(digest)
        rows["symlink_target"].append(target)
        self._node_row_added()

    def _node_row_added(self) -> None:
        """Hook: a node row was collected (a recorder writes them out in batches)."""

    def _directory_row_added(self) -> None:
        """Hook: a directory row was collected."""


class SnapshotRecorder(TreeAssembler):
    """Writes node and directory rows for one snapshot through a writer, and blob and chunk
    rows once per chunking (``specs``: several when one reading of the tree feeds a sweep).

    Besides :class:`TreeAssembler`'s reports, the caller hands over blobs
    (:meth:`add_batch`, :meth:`add_blob`) and subtrees other processes assembled
    (:meth:`add_assembled`). Each distinct blob is written once per snapshot, however often
    it occurs. :meth:`finish` returns the root once everything has been reported.

    Directories are encoded from their children's encodings, without building node objects:
    this runs for every directory the recording process assembles itself
    (``Directory.encoded`` is the reference; a test holds the two equal).
    """

    def __init__(
        self, writer: SnapshotWriter, specs: Sequence[ChunkerSpec], entries: Sequence[TreeEntry], keep_directories: bool = False
    ) -> None:
        super().__init__(entries, keep_directories=keep_directories)
        self.writer = writer
        self.snapshot_id = writer.snapshot_id
        self.chunker_ids = [spec.id for spec in specs]
        self._file_chunkings = [k for k, spec in enumerate(specs) if not spec.is_stream]
        """The specs per-file batches come in for (stream chunkings get :meth:`add_stream`)."""
        self._seen: set[bytes] = set()
        self.chunk_rows = [0] * len(specs)
        """Chunk rows written, per chunking."""
        self._pending_blobs = BlobBatchBuilder()
        self._pending_assembled: list[AssembledRows] = []
        self._pending_files = 0

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
        first = batches[0]
        fresh = self.add_files(first.indices, first.digests, first.sizes)
        for index, _ in first.errors:
            self.skip(index)
        self._write_blobs(batches, fresh)

    def _write_blobs(self, batches: Sequence[BlobBatch], fresh: list[bool]) -> None:
        # numpy and Arrow load with the first batch, not before the scan: the tree is walked
        # and the workers busy while they do
        import numpy as np

        from storelab.ingest.columns import blob_columns, chunk_columns

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

    def _fresh(self, digests: bytes | bytearray, count: int) -> list[bool]:
        """Per file, whether its blob is new to this snapshot (and now seen)."""
        seen = self._seen
        data = bytes(digests[: 32 * count])
        # set.add returns None: a digest not seen yet is added, and is fresh
        return [not (digest in seen or seen.add(digest)) for digest in [data[i : i + 32] for i in range(0, len(data), 32)]]  # type: ignore[func-returns-value]

    def add_files(self, indices: Sequence[int], digests: bytes, sizes: Sequence[int]) -> list[bool]:
        """Record file entries — their nodes, not their blob rows (:meth:`add_batch` writes
        those; a cluster task writes its own). Returns, per file, whether its blob is new to
        this snapshot. The node rows go in as columns."""
        fresh = self._fresh(digests, len(indices))
        self.add_file_nodes(indices, digests, sizes)
        self._flush_files()
        return fresh

    def add_assembled(self, rows: AssembledRows, finals: Sequence[tuple[int, _Child]]) -> None:
        """Record a subtree another process assembled: its rows (written in batches of
        several subtrees), and ``finals``, the entries here it completes (entry index, its
        final child as the assembler returned it)."""
        self.counts["file"] += len(rows.files)
        self.counts["directory"] += rows.nodes["kind"].count("directory")
        self.counts["symlink"] += rows.nodes["kind"].count("symlink")
        self.file_bytes += rows.file_bytes
        nodes = self.node_rows
        for name, values in rows.nodes.items():
            nodes[name] += values
        written, mine = self._written_dirs, self.directory_rows
        theirs = rows.directories
        new = [i for i, digest in enumerate(theirs["digest"]) if digest not in written]  # distinct within a subtree
        written.update(theirs["digest"])
        if len(new) == len(theirs["digest"]):
            for name, values in theirs.items():
                mine[name] += values
        else:
            for name, values in theirs.items():
                mine[name] += [values[i] for i in new]
        if self.directory_messages is not None and rows.directory_messages:
            self.directory_messages.update(rows.directory_messages)
        if len(rows.files):
            self._pending_assembled.append(rows)
            self._pending_files += len(rows.files)
        for index, child in finals:
            self.resolve(index, child)
        if self._pending_files >= _ASSEMBLED_FILES_PER_WRITE:
            self._flush_assembled()
        self._node_row_added()
        self._directory_row_added()

    def _flush_assembled(self) -> None:
        """Write the file, blob and chunk rows of the subtrees received since the last time."""
        pending, self._pending_assembled, self._pending_files = self._pending_assembled, [], 0
        if not pending:
            return
        files = FileRows()
        for rows in pending:
            files.extend(rows.files)
        self.file_rows.extend(files)
        batches = [merge_batches([rows.batches[k] for rows in pending]) for k in range(len(pending[0].batches))]
        fresh = self._fresh(files.digests, len(files))
        self._flush_files()
        self._write_blobs(batches, fresh)

    def _flush_files(self) -> None:
        rows = self.file_rows
        if not len(rows):
            return
        from storelab.ingest.columns import file_node_columns

        self.writer.append_columns(
            "nodes",
            file_node_columns(rows.paths, rows.sizes, rows.executables, bytes(rows.digests)),
            {"snapshot_id": self.snapshot_id, "kind": "file", "symlink_target": None},
        )
        self.file_rows = FileRows()

    # the tree ------------------------------------------------------------------------------

    def _node_row_added(self) -> None:
        if len(self.node_rows["path"]) >= _NODE_ROWS_PER_WRITE:
            self._flush_nodes()

    def _directory_row_added(self) -> None:
        if len(self.directory_rows["digest"]) >= _NODE_ROWS_PER_WRITE:
            self._flush_directories()

    def _flush_nodes(self) -> None:
        if self.node_rows["path"]:
            self.writer.append_columns("nodes", self.node_rows, {"snapshot_id": self.snapshot_id})
            self.node_rows = _empty_node_columns()

    def _flush_directories(self) -> None:
        if self.directory_rows["digest"]:
            self.writer.append_columns("directories", self.directory_rows, {"snapshot_id": self.snapshot_id})
            self.directory_rows = _empty_directory_columns()

    def finish(self) -> RecordedTree:
        """Everything is reported: write the last rows and return the root."""
        self._flush_blobs()
        self._flush_assembled()
        if self.root is None and self.entries and self.entries[0].kind == "symlink":
            target = self.entries[0].target
            assert target is not None
            self._resolve(0, self._symlink(0, b"", target))  # a symlink root has no listing
        if self.root is None and self.entries and self.entries[0].kind == "directory":
            raise ValueError(f"the tree is incomplete: {len(self._waiting)} directories still wait for entries")
        if self.root is None:
            raise ValueError("the tree has no root (its only file was skipped)")
        self._flush_nodes()
        self._flush_directories()
        kind, _, _, size, file_bytes, nar, digest = self.root
        entry = self.entries[self.root_index]
        root: Node
        if kind == _DIRECTORY:
            root = DirectoryNode(b"", digest, size)  # type: ignore[arg-type]
        elif kind == _FILE:  # a single-file tree
            root = FileNode(b"", digest, file_bytes, entry.executable)  # type: ignore[arg-type]
            nar = nar_node_size("file", file_bytes, entry.executable)
        else:
            assert entry.target is not None
            root = SymlinkNode(b"", entry.target)
            nar = nar_node_size("symlink", target=entry.target)
        return RecordedTree(
            root, self.counts["file"], self.counts["directory"], self.counts["symlink"], self.file_bytes, NAR_HEADER_SIZE + nar
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
        if self.directory_messages is None or self.root is None or self.root[0] != _DIRECTORY:
            return []
        order: list[bytes] = []
        root_digest = self.root[6]
        assert root_digest is not None
        seen = {root_digest}
        queue = deque([root_digest])
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


def _empty_directory_columns() -> dict[str, list]:
    return {name: [] for name in ("digest", "encoded_size", "directory_entries", "file_entries", "symlink_entries", "size", "file_bytes")}


def root_fields(root: Node) -> dict[str, object]:
    """The ``root_*`` columns of a snapshots row."""
    if isinstance(root, FileNode):
        return {"root_kind": "file", "root_digest": root.digest, "root_size": root.size, "root_executable": root.executable}
    if isinstance(root, DirectoryNode):
        return {"root_kind": "directory", "root_digest": root.digest, "root_size": root.size}
    return {"root_kind": "symlink", "root_symlink_target": root.target}
