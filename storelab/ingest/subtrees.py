"""Whole subtrees listed, hashed and assembled where the hashing happens.

On a tree of many small files (a binary cache's store paths average tens of kilobytes) the
work per path — listing it, reading its metadata, encoding its node and its directory — costs
as much as hashing its bytes. Done in the one process that records the snapshot, it would set
the ingest's pace while the workers wait; so a worker takes a whole directory, lists
everything below it, hashes the files, encodes the directories bottom-up
(:class:`~storelab.ingest.record.TreeAssembler`) and hands back flat rows
(:class:`AssembledRows`). The recording process only writes them and joins the subtrees.

A task stays small enough to share the work out: it takes its directory's subdirectories
whole, in name order, while it holds fewer than :data:`TASK_ENTRIES` entries and
:data:`TASK_BYTES` file bytes; a subdirectory found to be larger than
:data:`WHOLE_ENTRIES` / :data:`WHOLE_BYTES` while being listed is dropped and handed back,
as are the subdirectories after the budget ran out and the files of
:data:`~storelab.ingest.hashing.BATCH_BYTES` or more (or past the byte budget). What is handed back becomes tasks of its own (directories)
or file batches (files); the task's directory is then *open*, and the recording process
completes it once they are done. Every directory is listed whole by exactly one task; a
dropped subdirectory is listed again by its own task (at most :data:`WHOLE_ENTRIES`
entries of work thrown away per dropped subdirectory).

With a digest-only hasher the listing itself reads and hashes the single-chunk files
(:class:`~storelab.ingest.tree.SmallReads`): up to :data:`TASK_BYTES` of them in the task's
directory, and as much again in each subdirectory taken whole (what a dropped subdirectory had
read is read again by its own task). Their blobs go first in the task's batch.

Plain Python and BLAKE3 only: worker processes import this, and boot fast.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from storelab.ingest.batch import BlobBatch, BlobBatchBuilder
from storelab.ingest.blobs import BlobHasher
from storelab.ingest.hashing import BATCH_BYTES, FileJob, hash_batches
from storelab.ingest.record import Child, FileRows, TreeAssembler
from storelab.ingest.tree import Listing, SmallReads, Tree, TreeEntry, list_directory

__all__ = [
    "AssembledRows",
    "SubtreeResult",
    "SubtreeTask",
    "TASK_BYTES",
    "TASK_ENTRIES",
    "WHOLE_BYTES",
    "WHOLE_ENTRIES",
    "walk_subtree",
]

TASK_ENTRIES = 1024
"""A task takes in no further subdirectory once it holds this many entries…"""
TASK_BYTES = 16 * 1024 * 1024
"""…or this many bytes of files."""
WHOLE_ENTRIES = 16384
"""A subdirectory with more entries below it than this is handed back, not taken whole…"""
WHOLE_BYTES = 64 * 1024 * 1024
"""…and so is one with more file bytes below it than this."""


@dataclass(frozen=True, slots=True)
class SubtreeTask:
    """A directory of the tree to list, hash and assemble whole."""

    index: int
    """Its entry index in the recording process."""
    path: bytes
    """Its path relative to the tree's root (``b""`` for the root itself)."""
    absolute: bytes
    """Where it is."""


@dataclass(frozen=True, slots=True)
class AssembledRows:
    """What a worker made of a subtree, as flat rows for the recording process to write."""

    files: FileRows
    """The ``nodes`` rows of its files (paths relative to the tree's root)."""
    nodes: dict[str, list]
    """The ``nodes`` rows of its directories and symlinks."""
    directories: dict[str, list]
    """The ``directories`` rows, each distinct directory once."""
    directory_messages: dict[bytes, tuple[bytes, tuple[bytes, ...]]] | None
    """Encoded directories by digest (kept only when a store gets the closure)."""
    batches: Sequence[BlobBatch]
    """The files' blobs, one batch per chunking, in the order of the file rows."""
    skipped: Sequence[tuple[bytes, str]]
    """Paths left out (relative to the tree's root), and why."""
    store_ops: Sequence[tuple[int, ...]]
    """Store requests made for these blobs (:class:`~storelab.stores.backends.StoreOps` as tuples)."""

    @property
    def file_bytes(self) -> int:
        return sum(self.files.sizes)


@dataclass(frozen=True, slots=True)
class SubtreeResult:
    """One task's outcome: rows, and either its directory final or what is left of it.

    When ``root`` is None the directory is open: ``children`` are its entries (paths are
    names; files left out are not among them), ``finals`` the ones final here (position in
    ``children``, final child), ``deferred`` the positions of the directories and files
    handed back. Its symlinks are in neither: they are final where the directory is."""

    task: SubtreeTask
    rows: AssembledRows
    root: Child | None
    children: Sequence[TreeEntry] = ()
    finals: Sequence[tuple[int, Child]] = ()
    deferred: Sequence[int] = ()


def walk_subtree(task: SubtreeTask, hashers: Sequence[BlobHasher], keep_directories: bool = False, report_ops: bool = False) -> SubtreeResult:
    """List, hash and assemble the directory of ``task`` (see the module's rules);
    ``report_ops``: the hashers' store requests go in the rows (a worker process's store is
    not the recording process's, whose counts would miss them).

    >>> import tempfile, pathlib
    >>> from storelab.chunking import default_spec, make_chunker
    >>> top = pathlib.Path(tempfile.mkdtemp()); (top / "d").mkdir(); _ = (top / "d" / "f").write_bytes(b"hi")
    >>> result = walk_subtree(SubtreeTask(0, b"", os.fsencode(top)), [BlobHasher(make_chunker(default_spec()), 0)])
    >>> result.rows.files.paths, result.rows.nodes["path"], result.root is not None
    ([b'd/f'], [b'd', b''], True)
    """
    tree = Tree(Path(os.fsdecode(task.absolute)), root_bytes=task.absolute)
    entries, skipped = tree.entries, tree.skipped
    entries.append(TreeEntry(b"", "directory"))
    reads = hashers[0].listing_reads() if len(hashers) == 1 else None
    pending: list[int] = []
    top = list_directory(tree, task.absolute, 0, pending, reads, TASK_BYTES)
    subdirectories = pending[::-1]  # name order
    listings: list[Listing] = []
    read = _ReadFiles(entries)
    read.add(top)
    jobs: list[int] = []
    deferred: list[int] = []
    used_bytes = read.bytes
    for index in top.files:
        size = entries[index].size
        if size >= BATCH_BYTES or used_bytes >= TASK_BYTES:
            deferred.append(index)
        else:
            jobs.append(index)
            used_bytes += size
    used_entries = len(top.children)
    for index in subdirectories:
        if used_entries >= TASK_ENTRIES or used_bytes >= TASK_BYTES:
            deferred.append(index)
            continue
        taken = _take_whole(tree, task.absolute, index, reads)
        if taken is None:
            deferred.append(index)
            continue
        found, found_read, files, nbytes = taken
        listings += found
        read.take(found_read)
        jobs += files
        used_entries += sum(len(listing.children) for listing in found)
        used_bytes += nbytes
    batches = hash_batches(hashers, [FileJob(i, task.absolute + b"/" + entries[i].path, entries[i].size) for i in jobs], report_ops)
    if read.indices:  # one hasher: the files read while listing go first
        first = batches[0]
        batches = [replace(read.batch(then=first), errors=first.errors, store_ops=first.store_ops)]
    name = task.path.rpartition(b"/")[2]
    assembler = TreeAssembler(entries, prefix=task.path, root_name=name, keep_directories=keep_directories)
    for listing in listings:
        assembler.listed(listing.directory, listing.children)  # type: ignore[arg-type]
    first = batches[0]
    assembler.add_file_nodes(first.indices, first.digests, first.sizes)
    left_out = {index for index, _ in first.errors}
    for index in left_out:
        assembler.skip(index)
    prefix = task.path + b"/" if task.path else b""
    gone = [(prefix + item.path if item.path else task.path, item.reason) for item in skipped]
    gone += [(prefix + entries[index].path, reason) for index, reason in first.errors]
    if not deferred:
        assembler.listed(0, top.children)
    rows = AssembledRows(
        assembler.file_rows,
        assembler.node_rows,
        assembler.directory_rows,
        assembler.directory_messages,
        [replace(batch, errors=(), store_ops=()) for batch in batches],
        gone,
        [batch.store_ops for batch in batches if batch.store_ops],
    )
    if not deferred:
        return SubtreeResult(task, rows, assembler.root)
    kept = [index for index in top.children if index not in left_out]
    position = {index: k for k, index in enumerate(kept)}
    return SubtreeResult(
        task,
        rows,
        None,
        [entries[index] for index in kept],
        [(position[child[1]], child) for child in assembler.final_children(0)],
        sorted(position[index] for index in deferred),
    )


def _take_whole(tree: Tree, root: bytes, directory: int, reads: SmallReads | None) -> tuple[list[Listing], _ReadFiles, list[int], int] | None:
    """List everything below ``directory`` (reading small files on the way, at most
    :data:`TASK_BYTES` of them): its listings, the files read, its files left to read and the
    bytes of all its files — or None, with the tree as it was, once it proves larger than a task may take
    whole (what was read is then read again by the subdirectory's own task)."""
    entries, skipped = tree.entries, tree.skipped
    mark, mark_skipped = len(entries), len(skipped)
    listings: list[Listing] = []
    read = _ReadFiles(entries)
    files: list[int] = []
    nbytes = 0
    stack = [directory]
    while stack:
        listing = list_directory(tree, root, stack.pop(), stack, reads, TASK_BYTES - read.bytes)
        listings.append(listing)
        files += listing.files
        nbytes += read.add(listing) + sum(entries[i].size for i in listing.files)
        if len(entries) - mark > WHOLE_ENTRIES or nbytes > WHOLE_BYTES:
            del entries[mark:]
            del skipped[mark_skipped:]
            return None
    return listings, read, files, nbytes


class _ReadFiles:
    """The files of a task read and hashed while their directories were listed."""

    def __init__(self, entries: list[TreeEntry]) -> None:
        self.entries = entries
        self.indices: list[int] = []
        self.digests: list[bytes] = []
        self.sizes = array("Q")
        self.bytes = 0

    def add(self, listing: Listing) -> int:
        """Take the files ``listing`` read; the bytes they hold."""
        if not listing.read:
            return 0
        sizes = [self.entries[i].size for i in listing.read]
        self.indices += listing.read
        self.digests.append(listing.digests)
        self.sizes.extend(sizes)
        added = sum(sizes)
        self.bytes += added
        return added

    def take(self, other: _ReadFiles) -> None:
        """Take every file ``other`` holds (a subdirectory taken whole), after these."""
        self.indices += other.indices
        self.digests += other.digests
        self.sizes.extend(other.sizes)
        self.bytes += other.bytes

    def batch(self, then: BlobBatch) -> BlobBatch:
        """Their blobs (each its one chunk, its size not measured: a digest-only hasher's),
        followed by the files of ``then`` (its errors and store requests not taken)."""
        builder = BlobBatchBuilder()
        builder.add_singles(self.indices, b"".join(self.digests), self.sizes)
        builder.add_batch(then)
        return builder.build()
