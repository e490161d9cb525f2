"""The dataset index: what an ingest must know of a dataset, looked up instead of re-read.

An append must cost the same whatever the dataset holds, so nothing an ingest needs is
found by reading earlier snapshots' rows. It needs:

- the compressed size of every distinct chunk already measured at its zstd level (so each
  chunk is compressed once per dataset, not once per snapshot: zstd is the slowest step);
- which snapshots use a label (to warn of a duplicate).

Both live in one SQLite file (B-trees: a lookup costs O(log n) whatever the snapshot count).
The index is a **cache**, never the truth:

- it learns from the lake's own change feed: the rows inserted since the version it absorbed
  last (:meth:`DatasetIndex.sync`), and everything again when that version is gone;
- **its values are checked before they are used**: each chunk size is stored with a checksum
  of (level, digest, size), verified on every lookup (a value that fails is not used: the chunk
  is measured again) and on a sample each time an ingest opens it — a failed sample means the
  file was damaged or edited, and the index is rebuilt from the tables, saying so in one line;
- deleting it costs one re-read of the tables.

A folder dataset keeps it as ``_index.sqlite``; a dataset in an object store keeps it in the
local cache folder (``$XDG_CACHE_HOME/storelab/index/``), so each machine has its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storelab.tables.dataset import Dataset

__all__ = ["DatasetIndex", "KnownSizes", "size_check"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_sizes (level INTEGER, digest BLOB, size INTEGER, "check" BLOB, PRIMARY KEY (level, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (label TEXT, snapshot_id TEXT, PRIMARY KEY (label, snapshot_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""
SAMPLE = 64
"""Entries checked each time an ingest opens the index."""


def size_check(level: int, digest: bytes, size: int) -> bytes:
    """The checksum stored beside a chunk size: any change to the level, digest or size
    (bit rot, a hand edit) makes it fail.

    >>> size_check(3, b"a" * 32, 10) == size_check(3, b"a" * 32, 20)
    False
    """
    return hashlib.blake2b(level.to_bytes(2, "little", signed=True) + digest + size.to_bytes(8, "little"), digest_size=8).digest()


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


def use_wal(con: sqlite3.Connection) -> None:
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
    use_wal(con)
    con.execute("PRAGMA synchronous=NORMAL")
    columns = {row[1] for row in con.execute("PRAGMA table_info(chunk_sizes)")}
    if columns and "check" not in columns:  # an index of an older storelab: learnt again
        con.executescript("DROP TABLE IF EXISTS chunk_sizes; DROP TABLE IF EXISTS parts; DELETE FROM meta WHERE key = 'version';")
    con.executescript(_SCHEMA)
    method = measuring_method()
    row = con.execute("SELECT value FROM meta WHERE key = 'method'").fetchone()
    if row is None or row[0] != method:
        con.execute("BEGIN IMMEDIATE")
        con.execute("DELETE FROM chunk_sizes")
        con.execute("DELETE FROM labels")
        con.execute("DELETE FROM meta WHERE key = 'version'")  # everything is absorbed again
        con.execute("INSERT OR REPLACE INTO meta VALUES ('method', ?)", (method,))
        con.execute("COMMIT")
    return con


class DatasetIndex:
    """The index of one dataset, in the SQLite file at ``path`` (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._checked = False

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

    def _meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def absorbed_version(self) -> int:
        """The lake version whose facts the index holds (-1: none yet)."""
        value = self._meta("version")
        return -1 if value is None else int(value)

    def sync(self, dataset: Dataset) -> None:
        """Learn every row committed since the version absorbed last: from the lake's change
        feed, or from the whole tables when that version was expired (or the index is new or
        failed its check)."""
        if not self._checked:
            self._checked = True
            if not self.verify_sample():
                print(f"storelab: {dataset.location}: the index's values failed their check (damaged or edited); rebuilt from the tables",
                      file=sys.stderr)  # fmt: skip
                self.clear()
        current = dataset.current_version()
        absorbed = self.absorbed_version()
        if current == absorbed or not dataset.has_tables():
            return
        if absorbed < 0 or current < absorbed:  # new, or another dataset made anew at the same place
            self.clear()
            self._absorb(dataset, None, current)
            return
        try:
            self._absorb(dataset, absorbed, current)
        except Exception:  # noqa: BLE001 — the change feed of an expired version is gone: learn it all again
            self.clear()
            self._absorb(dataset, None, current)

    def _absorb(self, dataset: Dataset, after: int | None, upto: int) -> None:
        """Chunk sizes and labels of the rows inserted after version ``after`` (all rows when
        None) up to ``upto``."""
        def rows(table: str, alias: str) -> str:
            if after is None:
                return f"lake.{table} AS {alias} AT (VERSION => {upto})"
            return f"ducklake_table_insertions('lake', 'main', '{table}', {after + 1}, {upto}) AS {alias}"

        con = dataset.lake()
        sizes = con.execute(
            f"SELECT DISTINCT k.zstd_level, c.digest, c.compressed_size FROM {rows('chunks', 'c')} "
            f"JOIN lake.chunkings AS k AT (VERSION => {upto}) ON k.snapshot_id = c.snapshot_id AND k.chunker_id = c.chunker_id "
            "WHERE k.zstd_level > 0 AND c.compressed_size IS NOT NULL"
        ).fetchall()
        labels = con.execute(f"SELECT label, snapshot_id FROM {rows('snapshots', 's')} WHERE label IS NOT NULL").fetchall()
        self.add(sizes, labels, upto)

    def add(self, sizes: Iterable[tuple[int, bytes, int]], labels: Iterable[tuple[str, str]], version: int | None = None) -> None:
        """Record facts (and, with ``version``, that the lake's rows up to it are absorbed)."""
        checked = [(level, bytes(digest), size, size_check(level, bytes(digest), size)) for level, digest, size in sizes]
        with self._transaction() as con:
            con.executemany('INSERT OR REPLACE INTO chunk_sizes (level, digest, size, "check") VALUES (?, ?, ?, ?)', checked)
            con.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?)", labels)
            if version is not None:
                con.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))

    def clear(self) -> None:
        """Forget everything learnt (it is learnt again from the tables)."""
        with self._transaction() as con:
            con.execute("DELETE FROM chunk_sizes")
            con.execute("DELETE FROM labels")
            con.execute("DELETE FROM meta WHERE key IN ('version', 'compacted')")

    def verify_sample(self, count: int = SAMPLE) -> bool:
        """Whether ``count`` entries from a random place in the index pass their checksum (a
        B-tree seek: the cost does not grow with the index)."""
        start = random.randbytes(32)
        rows = self.con.execute('SELECT level, digest, size, "check" FROM chunk_sizes WHERE digest >= ? LIMIT ?', (start, count)).fetchall()
        rows += self.con.execute('SELECT level, digest, size, "check" FROM chunk_sizes LIMIT ?', (max(0, count - len(rows)),)).fetchall()
        return all(check == size_check(level, digest, size) for level, digest, size, check in rows)

    def forget(self, snapshot_ids: Iterable[str]) -> None:
        """Snapshots were removed: their labels are free again (chunk sizes stay true)."""
        with self._transaction() as con:
            con.executemany("DELETE FROM labels WHERE snapshot_id = ?", [(s,) for s in snapshot_ids])

    def snapshots_labelled(self, label: str) -> list[str]:
        """The snapshots that use ``label``."""
        return [row[0] for row in self.con.execute("SELECT snapshot_id FROM labels WHERE label = ?", (label,))]

    def chunk_size_count(self, level: int) -> int:
        return int(self.con.execute("SELECT count(*) FROM chunk_sizes WHERE level = ?", (level,)).fetchone()[0])

    def compacted_at(self) -> int:
        """The lake version of the last compaction this machine ran after a commit (0: none)."""
        value = self._meta("compacted")
        return 0 if value is None else int(value)

    def note_compaction(self, version: int) -> None:
        with self._transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('compacted', ?)", (str(version),))

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
        row = con.execute('SELECT size, "check" FROM chunk_sizes WHERE level = ? AND digest = ?', (self.level, digest)).fetchone()
        if row is None or row[1] != size_check(self.level, digest, row[0]):
            return default  # unknown, or a value that fails its check: measured again
        return row[0]
