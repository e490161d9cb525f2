"""Where a dataset's own files live: a folder, or an object store (``s3://bucket/prefix``).

The tables themselves are DuckLake's (:mod:`storelab.tables.dataset`); what storelab keeps
beside them goes through the :class:`DatasetStorage` protocol: the marker (created once, the
first writer winning a race), the staging areas of snapshots being written (each naming the
process that owns it, so a dead writer's leftovers can be told apart and removed), and files
published whole or not at all (a rename in a folder, a single PUT in an object store).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from storelab.errors import DatasetError, OutputError, StorelabError, VanishedError
from storelab.stores.backends import obstore_errors, open_obstore

__all__ = ["DatasetStorage", "FolderStorage", "ObjectStorage", "StoredFile", "LEFTOVER_AGE", "describe_os_error"]

LEFTOVER_AGE = timedelta(days=1)
"""In an object store, staged files older than this belong to a dead run (nothing there says
which process staged them)."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a dataset: its key (``nodes/<part>.parquet``) and when it was written."""

    key: str
    modified: datetime | None
    """When it was written, where the storage needs it to judge leftovers (object stores);
    None in a folder, whose writers are judged by their process instead."""


class DatasetStorage(Protocol):
    """The file operations a dataset needs. Keys are ``/``-separated, relative to the dataset.

    A failure is one line naming the dataset and the key: :class:`~storelab.errors.OutputError`
    from a folder, :class:`~storelab.errors.StoreError` from an object store (obstore's errors
    mapped in one place, :func:`~storelab.stores.backends.obstore_errors`)."""

    location: str
    """The dataset's folder or URL, as messages name it."""

    def read(self, key: str) -> bytes | None:
        """The file's bytes; None when there is no such file."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the file is there now."""
        ...

    def local_path(self, key: str) -> tuple[Path, bool]:
        """A local file holding ``key``'s bytes, and whether it is a temporary copy the caller
        deletes. Raises :class:`DatasetError` when the file is gone."""
        ...

    def list(self, folder: str) -> list[StoredFile]:
        """Every file directly under ``folder`` (empty when the folder does not exist)."""
        ...

    def publish(self, local: Path, key: str) -> None:
        """Make the finished local file ``local`` appear as ``key``, whole (it may be moved)."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Remove files; missing ones are not an error."""
        ...

    def create_once(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists (atomically: of writers racing, one wins); whether
        this call wrote it."""
        ...

    def scratch(self) -> Path:
        """A new local folder for a file on its way to :meth:`publish`."""
        ...

    def maintenance_lock(self, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Held while a compaction or a removal runs (whether it was got; without ``wait``, at
        once or not at all): DuckLake's SQLite catalog must not see the two at once."""
        ...

    def drop_scratch(self, folder: Path) -> None:
        """Remove a :meth:`scratch` folder."""
        ...

    def staging(self, part_id: str, owner: str | None) -> Path:
        """A new local folder where a writer of ``part_id`` builds its files (it may hold the
        storage's own bookkeeping, e.g. the owner file of a folder dataset); ``owner``
        (``"host pid"``) is the process whose life keeps it from clean-ups."""
        ...

    def drop_staging(self, part_id: str, folder: Path | None) -> None:
        """Remove a writer's staging area (after its commit or abort); ``folder``: the local
        folder :meth:`staging` gave, when this process has it."""
        ...

    def dead_staging(self) -> builtins.list[str]:
        """Staging areas of writers known to be dead, removed here; their part ids."""
        ...

    def url(self, key: str) -> str:
        """What DuckDB reads ``key`` as (after :meth:`register`)."""
        ...

    def index_path(self, dataset_id: str) -> Path:
        """Where the index (a cache, :mod:`storelab.tables.index`) of the dataset created as
        ``dataset_id`` lives locally."""
        ...


STAGING = "_staging"


def describe_os_error(err: OSError, path: Path | str) -> str:
    """One line for a failed write: a full disk and a quota say so plainly."""
    if err.errno == errno.ENOSPC:
        return f"no space left on device while writing {path}"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {path}"
    return f"cannot write {path}: {err.strerror or err}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderStorage:
    """A dataset in a local folder: renames publish, ``flock`` on ``_lock`` orders commits,
    and a staging folder names its owner process (``_staging/<part>/owner``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise DatasetError(f"{self.root / key}: cannot read: {err.strerror or err}") from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def local_path(self, key: str) -> tuple[Path, bool]:
        path = self.root / key
        if not path.exists():
            raise VanishedError(f"{path}: vanished while being read")
        return path, False

    def list(self, folder: str) -> list[StoredFile]:
        try:
            entries = list(os.scandir(self.root / folder))
        except FileNotFoundError:
            return []
        # no stat: a folder's leftovers are judged by their writer's process, not their age
        return sorted((StoredFile(f"{folder}/{e.name}", None) for e in entries if e.is_file()), key=lambda f: f.key)

    def publish(self, local: Path, key: str) -> None:
        target = self.root / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)
            _fsync_dir(target.parent)
        except OSError as err:
            raise OutputError(describe_os_error(err, target)) from None

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                (self.root / key).unlink()

    def create_once(self, key: str, data: bytes) -> bool:
        target = self.root / key
        folder = self.scratch()
        try:
            (folder / "new").write_bytes(data)
            os.link(folder / "new", target)  # fails if the target exists: the first writer wins
            _fsync_dir(target.parent)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            raise OutputError(describe_os_error(err, target)) from None
        finally:
            self.drop_scratch(folder)

    @contextlib.contextmanager
    def maintenance_lock(self, wait: bool = True) -> Iterator[bool]:
        try:
            handle = open(self.root / "_lock", "a+b")  # noqa: SIM115 - held across the yield
        except OSError as err:
            raise OutputError(describe_os_error(err, self.root)) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def scratch(self) -> Path:
        try:
            (self.root / STAGING).mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=_SCRATCH, dir=self.root / STAGING))
        except OSError as err:
            raise OutputError(describe_os_error(err, self.root / STAGING)) from None

    def drop_scratch(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / STAGING).rmdir()

    def staging(self, part_id: str, owner: str | None) -> Path:
        folder = self.root / STAGING / part_id
        # Made under a hidden name with its owner file, then renamed: another writer's clean-up
        # never sees a staging folder without its owner (and takes it for a dead writer's).
        building = self.root / STAGING / f"{_BUILDING}{part_id}-{secrets.token_hex(4)}"
        try:
            building.mkdir(parents=True)
            (building / "owner").write_text((owner or f"{socket.gethostname()} {os.getpid()}") + "\n")
            if folder.exists():  # an earlier attempt at this very part: start afresh
                shutil.rmtree(folder)
            os.rename(building, folder)
        except OSError as err:
            shutil.rmtree(building, ignore_errors=True)
            raise OutputError(describe_os_error(err, folder)) from None
        return folder

    def drop_staging(self, part_id: str, folder: Path | None) -> None:
        shutil.rmtree(folder or self.root / STAGING / part_id, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / STAGING).rmdir()

    def dead_staging(self) -> builtins.list[str]:
        staging = self.root / STAGING
        if not staging.is_dir():
            return []
        dead = []
        for folder in staging.iterdir():
            if folder.name.startswith((_BUILDING, _SCRATCH)) and not _older_than(folder, _BUILDING_AGE):
                continue  # being made by a writer right now
            if not _owner_alive(folder):
                shutil.rmtree(folder, ignore_errors=True)
                dead.append(folder.name)
        with contextlib.suppress(OSError):
            staging.rmdir()
        return dead

    def url(self, key: str) -> str:
        return str(self.root / key)


    def index_path(self, dataset_id: str) -> Path:
        return self.root / "_index.sqlite"  # beside the tables: a folder made anew has a new one


_BUILDING = ".new-"
"""Prefix of a staging folder still being made (it has no owner file yet)."""
_SCRATCH = ".scratch-"
"""Prefix of a folder holding one file on its way to being published."""
_BUILDING_AGE = timedelta(minutes=10)
"""A folder being made or a scratch folder older than this was left by a writer that died."""


def _older_than(path: Path, age: timedelta) -> bool:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC) < datetime.now(UTC) - age
    except OSError:
        return False


def _owner_alive(staging_folder: Path) -> bool:
    try:
        host, pid = (staging_folder / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return True  # another machine's writer: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ObjectStorage:
    """A dataset in an object store, through obstore: a single PUT publishes, nothing locks
    (commits are PUTs of distinct names), and an uncommitted part is a live writer's while it
    is younger than :data:`LEFTOVER_AGE`. Settings come from the environment as for an
    ``s3://`` store (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, …)."""

    def __init__(self, url: str) -> None:
        self.location = url.rstrip("/")
        try:
            self._store = open_obstore(self.location)
        except StorelabError as err:
            raise DatasetError(str(err)) from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectStorage, (self.location,))  # a cluster task opens its own connection

    def read(self, key: str) -> bytes | None:
        import obstore

        try:
            with obstore_errors(self.location, "read", key):
                return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        import obstore

        try:
            with obstore_errors(self.location, "check", key):
                obstore.head(self._store, key)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> tuple[Path, bool]:
        data = self.read(key)
        if data is None:
            raise VanishedError(f"{self.location}: {key} vanished while being read")
        fd, name = tempfile.mkstemp(prefix="storelab-", suffix=".parquet")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return Path(name), True

    def list(self, folder: str) -> list[StoredFile]:
        import obstore

        with obstore_errors(self.location, "list", folder):
            pages = obstore.list(self._store, folder + "/")
            found = [StoredFile(m["path"], m["last_modified"]) for page in pages for m in page]
        return sorted((f for f in found if "/" not in f.key[len(folder) + 1 :]), key=lambda f: f.key)

    def publish(self, local: Path, key: str) -> None:
        import obstore

        with obstore_errors(self.location, "write", key):
            obstore.put(self._store, key, local)

    def delete(self, keys: Sequence[str]) -> None:
        import obstore

        if keys:
            with obstore_errors(self.location, "delete", keys[0]):
                obstore.delete(self._store, list(keys))

    def create_once(self, key: str, data: bytes) -> bool:
        import obstore

        try:
            obstore.put(self._store, key, data, mode="create")  # a conditional PUT (If-None-Match: *)
        except Exception as err:
            if isinstance(err, FileExistsError) or type(err).__name__ in ("AlreadyExistsError", "PreconditionError"):
                return False
            with obstore_errors(self.location, "write", key):
                raise
        return True

    @contextlib.contextmanager
    def maintenance_lock(self, wait: bool = True) -> Iterator[bool]:
        yield True  # the PostgreSQL catalog orders them itself

    def scratch(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="storelab-put-"))

    def drop_scratch(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def staging(self, part_id: str, owner: str | None) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"storelab-{part_id}-"))

    def drop_staging(self, part_id: str, folder: Path | None) -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def dead_staging(self) -> builtins.list[str]:
        import obstore

        with obstore_errors(self.location, "list", STAGING):
            found = [m for page in obstore.list(self._store, STAGING + "/") for m in page]
        dead = [m["path"] for m in found if m["last_modified"] < datetime.now(UTC) - LEFTOVER_AGE]
        self.delete(dead)
        return sorted({key.split("/")[1] for key in dead})

    def url(self, key: str) -> str:
        return f"{self.location}/{key}"

    def index_path(self, dataset_id: str) -> Path:
        import hashlib

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "storelab" / "index"
        cache.mkdir(parents=True, exist_ok=True)
        # keyed by the dataset's identity too: a dataset made anew at the same URL starts afresh
        return cache / (hashlib.sha256(f"{self.location}\0{dataset_id}".encode()).hexdigest()[:32] + ".sqlite")
