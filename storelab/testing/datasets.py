"""The conformance suite every dataset storage passes (:class:`~storelab.tables.storage.DatasetStorage`:
a local folder, an object store).

A backend's test module subclasses :class:`DatasetStorageTests` and says how to make a fresh,
empty storage::

    class TestFolderStorage(DatasetStorageTests):
        def make_storage(self, tmp_path, request):
            return FolderStorage(tmp_path / "ds")
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storelab.errors import DatasetError
from storelab.tables.storage import DatasetStorage

__all__ = ["DatasetStorageTests", "race_to_create"]


class DatasetStorageTests:
    """What every dataset storage must do: whole-file publishing, listing one level, deleting
    idempotently, local copies for readers, staging areas for writers."""

    def make_storage(self, tmp_path: Path, request: pytest.FixtureRequest) -> DatasetStorage:
        """A fresh, empty storage of the backend under test."""
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path, request: pytest.FixtureRequest) -> DatasetStorage:
        return self.make_storage(tmp_path, request)

    @staticmethod
    def _publish(storage: DatasetStorage, tmp_path: Path, key: str, data: bytes) -> None:
        local = tmp_path / f"local-{abs(hash((key, data)))}"
        local.write_bytes(data)
        storage.publish(local, key)

    def test_a_missing_file_reads_as_none(self, storage: DatasetStorage) -> None:
        assert storage.read("nodes/nothing.parquet") is None
        assert not storage.exists("nodes/nothing.parquet")
        assert storage.list("nodes") == []

    def test_published_files_read_back_whole_and_replace(self, storage: DatasetStorage, tmp_path: Path) -> None:
        self._publish(storage, tmp_path, "nodes/a.parquet", b"first")
        assert storage.read("nodes/a.parquet") == b"first" and storage.exists("nodes/a.parquet")
        self._publish(storage, tmp_path, "nodes/a.parquet", b"second, longer")
        assert storage.read("nodes/a.parquet") == b"second, longer"

    def test_list_is_one_level_sorted(self, storage: DatasetStorage, tmp_path: Path) -> None:
        for key in ("nodes/b.parquet", "nodes/a.parquet", "nodes/deeper/c.parquet", "blobs/x.parquet"):
            self._publish(storage, tmp_path, key, key.encode())
        assert [f.key for f in storage.list("nodes")] == ["nodes/a.parquet", "nodes/b.parquet"]

    def test_delete_is_idempotent(self, storage: DatasetStorage, tmp_path: Path) -> None:
        self._publish(storage, tmp_path, "nodes/a.parquet", b"a")
        storage.delete(["nodes/a.parquet", "nodes/never.parquet"])
        storage.delete(["nodes/a.parquet"])
        assert storage.read("nodes/a.parquet") is None and storage.list("nodes") == []

    def test_local_path_holds_the_bytes(self, storage: DatasetStorage, tmp_path: Path) -> None:
        self._publish(storage, tmp_path, "nodes/a.parquet", b"local")
        path, temporary = storage.local_path("nodes/a.parquet")
        try:
            assert path.read_bytes() == b"local"
        finally:
            if temporary:
                path.unlink()
        with pytest.raises(DatasetError):
            storage.local_path("nodes/gone.parquet")

    def test_staging_areas_are_local_and_dropped(self, storage: DatasetStorage) -> None:
        folder = storage.staging("part-1", None)
        assert folder.is_dir()
        (folder / "nodes.parquet").write_bytes(b"x")
        assert "part-1" not in storage.dead_staging()  # its writer, this process, is alive
        storage.drop_staging("part-1", folder)
        assert not folder.exists()

    def test_create_once_lets_one_writer_win(self, storage: DatasetStorage) -> None:
        assert storage.create_once("marker.json", b"first")
        assert not storage.create_once("marker.json", b"second")
        assert storage.read("marker.json") == b"first"

    def test_the_maintenance_lock_is_held(self, storage: DatasetStorage) -> None:
        storage.scratch()  # the location exists
        with storage.maintenance_lock() as held:
            assert held

    def test_scratch_folders_are_local_and_dropped(self, storage: DatasetStorage) -> None:
        folder = storage.scratch()
        (folder / "f").write_bytes(b"x")
        storage.drop_scratch(folder)
        assert not folder.exists()

    def test_the_index_lives_locally(self, storage: DatasetStorage) -> None:
        path = storage.index_path("dataset-id")
        assert isinstance(path, Path)
        path.parent.mkdir(parents=True, exist_ok=True)


def race_to_create(location: str, tree: Path, writers: int = 8, env: dict[str, str] | None = None) -> list[str]:
    """``writers`` ``storelab ingest-dir`` processes started at once into a dataset none of them
    finds: what each printed on stderr, for a test to hold empty (all succeed, none warns)."""
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "storelab.cli", "ingest-dir", str(tree), "-o", location, "-q", "-j", "0", "-l", f"w{i}", "--zstd-level", "0"],
            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
        )  # fmt: skip
        return done.stderr if done.returncode == 0 else f"exit {done.returncode}: {done.stderr}"

    with ThreadPoolExecutor(writers) as pool:
        return [err for err in pool.map(one, range(writers)) if err.strip()]
