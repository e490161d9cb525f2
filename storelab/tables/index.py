"""The dataset index: what an ingest must know of a dataset, looked up instead of re-read.

An append must cost the same whatever the dataset holds, so nothing an ingest needs is
found by reading earlier snapshots' rows. It needs:

- the compressed size of every distinct chunk already measured at its zstd level (so each
  chunk is compressed once per dataset, not once per snapshot: zstd is the slowest step);
- which snapshots use a label (to warn of a duplicate).

Both live in one SQLite file (B-trees: a lookup costs O(log n) whatever the snapshot count).
The index is a **cache**, never the truth: every fact in it is derived from the tables, it is
brought up to date from any committed part it has not seen (:meth:`DatasetIndex.sync`: the
parts it has absorbed are listed in it), and deleting it costs one re-read of the tables. A
folder dataset keeps it as ``_index.sqlite``; a dataset in an object store keeps it in the
local cache folder (``$XDG_CACHE_HOME/storelab/index/``), so each machine has its own.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DatasetIndex", "IndexedDataset", "IndexedPart", "KnownSizes"]


class IndexedPart(Protocol):
    """What the index needs of a committed part: its id, and the parts it replaces."""

    @property
    def part_id(self) -> str: ...

    @property
    def replaces(self) -> tuple[str, ...]: ...


class IndexedDataset(Protocol):
    """What the index reads of a dataset (:class:`~storelab.tables.Dataset` is one): its live
    parts, each part's ``snapshots`` rows, and its table files."""

    def live_parts(self) -> Sequence[IndexedPart]:
        """The committed parts readers see."""
        ...

    def part_rows(self, part: Any) -> pa.Table:
        """The ``snapshots`` rows of one part."""
        ...

    def table_keys(self, table: str) -> list[str]:
        """The keys of one table's files in the live parts."""
        ...

    def read_file(self, key: str, table: str) -> pa.Table:
        """One table file, checked against the table's schema."""
        ...

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_sizes (level INTEGER, digest BLOB, size INTEGER, PRIMARY KEY (level, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (label TEXT, snapshot_id TEXT, PRIMARY KEY (label, snapshot_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (part_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""


def measuring_method() -> str:
    """How chunk sizes are measured: another method (or libzstd) gives other sizes, so an
    index that learnt them another way is emptied and learns again from the tables."""
    import zstandard

    return "zstd stream, libzstd " + ".".join(map(str, zstandard.ZSTD_VERSION))


BUSY_SECONDS = 120.0
"""How long a process waits for the index when other processes hold it, before giving up."""


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err)
    return "locked" in text or "busy" in text


def _use_wal(con: sqlite3.Connection) -> None:
    """Put the index in WAL mode (readers never wait for a writer), once per file.

    Switching the journal mode takes an exclusive lock and SQLite does *not* call the busy
    handler for it: processes opening a new index at the same moment get "database is locked"
    at once, whatever the timeout. So the mode is read first (a file already in WAL mode needs
    nothing), and the switch is retried with a short, growing pause.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if not _is_busy(err) or time.monotonic() > deadline:
                raise
        time.sleep(pause * (1 + random.random()))
        pause = min(pause * 2, 0.5)


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    _use_wal(con)
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(_SCHEMA)
    method = measuring_method()
    row = con.execute("SELECT value FROM meta WHERE key = 'method'").fetchone()
    if row is None or row[0] != method:
        con.execute("BEGIN IMMEDIATE")
        con.execute("DELETE FROM chunk_sizes")
        con.execute("DELETE FROM parts")  # every part is absorbed again (its labels too)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('method', ?)", (method,))
        con.execute("COMMIT")
    return con


class DatasetIndex:
    """The index of one dataset, in the SQLite file at ``path`` (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._synced: frozenset[str] = frozenset()  # the live parts at the last sync

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = _connect(self.path)
        return self._con

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def absorbed(self, part_ids: Iterable[str]) -> set[str]:
        """Which of ``part_ids`` the index holds the facts of (looked up one by one: the index
        remembers every part it ever absorbed, and that list only grows)."""
        query = "SELECT 1 FROM parts WHERE part_id = ?"
        return {p for p in part_ids if self.con.execute(query, (p,)).fetchone() is not None}

    def sync(self, dataset: IndexedDataset) -> None:
        """Absorb every live part of ``dataset`` the index has not seen (a part written by a
        compaction of absorbed parts is only noted: it holds nothing new)."""
        live = dataset.live_parts()
        ids = frozenset(p.part_id for p in live)
        if ids == self._synced:
            return
        seen = self.absorbed(ids)
        for part in live:
            if part.part_id in seen:
                continue
            if part.replaces and set(part.replaces) <= self.absorbed(part.replaces):
                self._note([part.part_id])
            else:
                self.absorb(dataset, part)
        self._synced = ids

    def absorb(self, dataset: IndexedDataset, part: Any) -> None:
        """Read one part's chunk sizes and labels into the index."""
        import pyarrow as pa

        snapshots = dataset.part_rows(part)
        keys = [k for k in dataset.table_keys("chunkings") if k.startswith(f"chunkings/{part.part_id}")]
        chunkings = pa.concat_tables(dataset.read_file(k, "chunkings") for k in keys) if keys else None
        sizes: list[tuple[int, bytes, int]] = []
        # Only chunkings measured at a zstd level have sizes to learn. Checked in Python first:
        # an Arrow filter with a literal makes pyarrow import pandas (half a second) to see
        # whether the literal is a pandas object, and a zstd-off ingest needs none of it.
        if chunkings is not None and any(level for level in chunkings.column("zstd_level").to_pylist()):
            import pyarrow.compute as pc  # only here: a zstd-off ingest is spared its import (55 ms)

            levels = chunkings.select(["snapshot_id", "chunker_id", "zstd_level"]).filter(pc.greater(chunkings.column("zstd_level"), 0))
            for key in [k for k in dataset.table_keys("chunks") if k.startswith(f"chunks/{part.part_id}")] if levels.num_rows else []:
                chunks = dataset.read_file(key, "chunks").select(["snapshot_id", "chunker_id", "digest", "compressed_size"])
                chunks = chunks.filter(pc.is_valid(chunks.column("compressed_size")))
                chunks = chunks.set_column(1, "chunker_id", chunks.column("chunker_id").cast(pa.string()))
                joined = chunks.join(levels, keys=["snapshot_id", "chunker_id"], join_type="inner")
                sizes += zip(joined["zstd_level"].to_pylist(), joined["digest"].to_pylist(), joined["compressed_size"].to_pylist())
        labels = zip(snapshots.column("label").to_pylist(), snapshots.column("snapshot_id").to_pylist())
        self.add(sizes, [(label, sid) for label, sid in labels if label is not None], part.part_id)

    def add(self, sizes: Iterable[tuple[int, bytes, int]], labels: Iterable[tuple[str, str]], part_id: str) -> None:
        """Record facts of a part, and that it was absorbed."""
        with self._transaction() as con:
            con.executemany("INSERT OR IGNORE INTO chunk_sizes VALUES (?, ?, ?)", sizes)
            con.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?)", labels)
            con.execute("INSERT OR IGNORE INTO parts VALUES (?)", (part_id,))

    def _note(self, part_ids: Iterable[str]) -> None:
        with self._transaction() as con:
            con.executemany("INSERT OR IGNORE INTO parts VALUES (?)", [(p,) for p in part_ids])

    def forget(self, snapshot_ids: Iterable[str]) -> None:
        """Snapshots were removed: their labels are free again (chunk sizes stay true)."""
        with self._transaction() as con:
            con.executemany("DELETE FROM labels WHERE snapshot_id = ?", [(s,) for s in snapshot_ids])

    def snapshots_labelled(self, label: str) -> list[str]:
        """The snapshots that use ``label``."""
        return [row[0] for row in self.con.execute("SELECT snapshot_id FROM labels WHERE label = ?", (label,))]

    def chunk_size_count(self, level: int) -> int:
        return self.con.execute("SELECT count(*) FROM chunk_sizes WHERE level = ?", (level,)).fetchone()[0]

    def known_sizes(self, level: int) -> KnownSizes:
        """The chunk sizes measured at ``level``, as a lookup workers can take along."""
        return KnownSizes(str(self.path) if level else None, level)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class KnownSizes(dict[bytes, int]):
    """Chunk digest → compressed size at one zstd level: what this process measured (the dict
    itself), then the dataset index (read-only, one connection per thread).

    It pickles as the index's path alone, so worker processes open the index themselves
    instead of receiving every size the dataset knows.

    >>> sizes = KnownSizes(None, 3)
    >>> sizes[b"a" * 32] = 10
    >>> sizes.get(b"a" * 32), sizes.get(b"b" * 32)
    (10, None)
    """

    def __init__(self, path: str | None, level: int) -> None:
        super().__init__()
        self.path = path
        self.level = level
        self._local = threading.local()
        self._empty: bool | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (KnownSizes, (self.path, self.level))

    def _cursor(self) -> sqlite3.Connection | None:
        con = getattr(self._local, "con", None)
        if con is None and self.path is not None and Path(self.path).exists():
            con = self._local.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
            if self._empty is None:
                self._empty = con.execute("SELECT 1 FROM chunk_sizes WHERE level = ? LIMIT 1", (self.level,)).fetchone() is None
        return con

    def get(self, digest: bytes, default: Any = None) -> Any:
        size = dict.get(self, digest)
        if size is not None or self.path is None or self._empty:
            return size if size is not None else default
        con = self._cursor()
        if con is None or self._empty:
            return default
        row = con.execute("SELECT size FROM chunk_sizes WHERE level = ? AND digest = ?", (self.level, digest)).fetchone()
        return row[0] if row else default
