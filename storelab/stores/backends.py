"""Object storage under a store: keys → bytes, through obstore (the Python face of the Rust
``object_store`` crate snix itself uses), plus the layers storelab puts around it.

- :class:`ObstoreBackend`: ``file:///path`` (or a plain path), ``memory://``, ``s3://bucket/prefix``;
- :class:`RetryingBackend`: retries what is safe to retry (every operation here: objects are
  content-addressed, so a repeated PUT writes the same bytes);
- :class:`CountingBackend`: counts every request and its bytes (the cost model's input);
- :class:`LatencyBackend` (in :mod:`storelab.stores.latency`): a slow, lossy link, simulated.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from storelab.errors import ConfigError, StoreError, StorelabError, TransientStoreError  # noqa: F401 — raised here, defined with the rest of the error tree

__all__ = [
    "ObjectBackend",
    "ObstoreBackend",
    "RetryingBackend",
    "CountingBackend",
    "StoreOps",
    "StoreError",
    "TransientStoreError",
    "classify_obstore_error",
    "obstore_errors",
    "open_backend",
    "open_obstore",
]


@runtime_checkable
class ObjectBackend(Protocol):
    """Keys to bytes. ``head`` answers None for a missing key; the rest raise :class:`StoreError`."""

    url: str
    shareable: bool
    """True when another process can open the same objects from ``url`` (not ``memory://``)."""

    def head(self, key: str) -> int | None: ...

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> None: ...

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix``."""
        ...


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class ObstoreBackend:
    """One obstore store, chosen by URL.

    ``s3://`` takes the usual settings from the environment (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``…); an ``http://`` endpoint
    (a local S3-compatible server) is allowed without TLS.

    >>> backend = ObstoreBackend("memory://")
    >>> backend.put("a/b", b"hi"); backend.head("a/b"), backend.get("a/b"), backend.head("a/c")
    (2, b'hi', None)
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.shareable = not url.startswith("memory://")
        self._store = open_obstore(url, create)

    def __getstate__(self) -> dict:
        if not self.shareable:
            raise StoreError(f"{self.url}: a memory store cannot be shared with another process")
        return {"url": self.url}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    def head(self, key: str) -> int | None:
        import obstore

        try:
            with obstore_errors(self.url, "HEAD", key):
                return int(obstore.head(self._store, key)["size"])
        except FileNotFoundError:
            return None

    def get(self, key: str) -> bytes:
        import obstore

        try:
            with obstore_errors(self.url, "GET", key):
                return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            raise StoreError(f"{self.url}: {key} is not in the store") from None

    def put(self, key: str, data: bytes) -> None:
        import obstore

        with obstore_errors(self.url, "PUT", key):
            obstore.put(self._store, key, data)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        import obstore

        with obstore_errors(self.url, "LIST", prefix):
            for page in obstore.list(self._store, prefix):
                for meta in page:
                    yield meta["path"], int(meta["size"])


_PERMANENT_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG,
                                  errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL, errno.EFBIG})  # fmt: skip
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def classify_obstore_error(err: BaseException) -> type[StoreError] | None:
    """Which storelab error an exception from obstore is: :class:`TransientStoreError` for what
    may pass when tried again (network failures, timeouts, 5xx after obstore's own retries),
    :class:`StoreError` for what will not (denied, invalid, a local disk full), ``None`` for
    what is neither a storage failure nor obstore's (a bug: it propagates as it is). A missing
    object (``FileNotFoundError``) is left to the caller, for whom it is an answer.

    >>> import obstore.exceptions as oe
    >>> classify_obstore_error(oe.GenericError("Generic S3 error: HTTP error: error sending request")).__name__
    'TransientStoreError'
    >>> classify_obstore_error(oe.GenericError("Generic LocalFileSystem error: No space left on device (os error 28)")).__name__
    'StoreError'
    >>> classify_obstore_error(oe.PermissionDeniedError("denied")).__name__, classify_obstore_error(TypeError("bug"))
    ('StoreError', None)
    """
    import obstore.exceptions as oe

    if isinstance(err, (TimeoutError, ConnectionError)):
        return TransientStoreError
    if isinstance(err, oe.GenericError) or isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        code = getattr(err, "errno", None)
        found = _OS_ERROR.search(str(err))
        code = code if code is not None else int(found.group(1)) if found else None
        if code is not None:
            return StoreError if code in _PERMANENT_OS_ERRORS else TransientStoreError
        return StoreError if "LocalFileSystem" in str(err).split(":", 1)[0] else TransientStoreError
    if isinstance(err, oe.BaseError):  # denied, unauthenticated, invalid path, not supported, …
        return StoreError
    return None


@contextlib.contextmanager
def obstore_errors(where: str, verb: str, key: str) -> Iterator[None]:
    """The one map from obstore's errors to storelab's: each becomes one line naming the
    store, the request and the key (:func:`classify_obstore_error` says which kind)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as err:
        kind = classify_obstore_error(err)
        if kind is None:
            raise
        raise kind(f"{where}: cannot {verb} {key}: {_first_line(err)}") from None


def s3_client_options() -> dict[str, Any]:
    """obstore client options for ``s3://`` URLs: timeouts, and plain HTTP when the endpoint
    in the environment is a local ``http://`` server."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or ""
    client: dict[str, Any] = {"timeout": timedelta(seconds=30), "connect_timeout": timedelta(seconds=5)}
    if endpoint.startswith("http://"):
        client["allow_http"] = True
    return client


def open_obstore(url: str, create: bool = True) -> Any:  # obstore's store classes share no public base
    """The obstore store a URL names (``file://``, plain path, ``memory://``, ``s3://``)."""
    from obstore.store import LocalStore, MemoryStore, S3Store

    if url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"store URL {url!r} names no bucket (s3://BUCKET/PREFIX)")
        client: Any = s3_client_options()  # obstore's ClientConfig, a TypedDict
        retry: Any = {
            "max_retries": 2,
            "backoff": {"init_backoff": timedelta(milliseconds=50), "max_backoff": timedelta(seconds=1), "base": 2},
            "retry_timeout": timedelta(seconds=10),
        }
        try:
            return S3Store(bucket, prefix=prefix.strip("/") or None, client_options=client, retry_config=retry)
        except Exception as err:  # noqa: BLE001 — obstore refuses a bad configuration with errors of several kinds
            raise ConfigError(f"store {url}: {_first_line(err)}") from None
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"unsupported store URL {url!r} (storelab knows file:///path, memory://, s3://bucket/prefix)")
    path = url[len("file://") :] if url.startswith("file://") else url
    if not path:
        raise ConfigError(f"store URL {url!r} names no folder")
    if not create and not os.path.isdir(path):
        raise StoreError(f"{url}: no such store (no folder {path})")
    try:
        os.makedirs(path, exist_ok=True)
        return LocalStore(os.path.abspath(path))
    except OSError as err:
        raise StoreError(f"cannot use {path} as a store: {err.strerror or err}") from None


class RetryingBackend:
    """Retries :class:`TransientStoreError` with exponential backoff and jitter.

    Every operation is safe to repeat: keys are content digests, so a PUT that may or may not
    have landed writes the same bytes again.
    """

    def __init__(self, inner: ObjectBackend, attempts: int = 4, backoff: float = 0.05) -> None:
        self.inner = inner
        self.url = inner.url
        self.shareable = inner.shareable
        self.attempts = attempts
        self.backoff = backoff
        self.retries = 0
        self._lock = threading.Lock()

    def _retry(self, call, *args):
        for attempt in range(self.attempts):
            try:
                return call(*args)
            except TransientStoreError:
                if attempt == self.attempts - 1:
                    raise
                with self._lock:
                    self.retries += 1
                time.sleep(self.backoff * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def head(self, key: str) -> int | None:
        return self._retry(self.inner.head, key)

    def get(self, key: str) -> bytes:
        return self._retry(self.inner.get, key)

    def put(self, key: str, data: bytes) -> None:
        self._retry(self.inner.put, key, data)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        # a listing is retried as a whole: it yields nothing until it has every page
        return iter(self._retry(lambda: list(self.inner.list(prefix))))


@dataclass(frozen=True, slots=True)
class StoreOps:
    """Requests a store received, and their payload bytes.

    >>> StoreOps(put_count=2, put_bytes=10) + StoreOps(put_count=1, head_count=3)
    StoreOps(put_count=3, put_bytes=10, get_count=0, get_bytes=0, head_count=3, list_count=0, retry_count=0)
    """

    put_count: int = 0
    put_bytes: int = 0
    get_count: int = 0
    get_bytes: int = 0
    head_count: int = 0
    list_count: int = 0
    retry_count: int = 0

    def __add__(self, other: StoreOps) -> StoreOps:
        return StoreOps(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: StoreOps) -> StoreOps:
        return StoreOps(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @property
    def requests(self) -> int:
        return self.put_count + self.get_count + self.head_count + self.list_count

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


class CountingBackend:
    """Counts every request that reaches the layer below (retries show in ``retry_count``)."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner
        self.url = inner.url
        self.shareable = inner.shareable
        self._lock = threading.Lock()
        self._counts = {f.name: 0 for f in fields(StoreOps)}

    def _add(self, count: str, nbytes_field: str | None = None, nbytes: int = 0) -> None:
        with self._lock:
            self._counts[count] += 1
            if nbytes_field:
                self._counts[nbytes_field] += nbytes

    @property
    def ops(self) -> StoreOps:
        with self._lock:
            counts = dict(self._counts)
        counts["retry_count"] = getattr(self.inner, "retries", 0)
        return StoreOps(**counts)

    def head(self, key: str) -> int | None:
        self._add("head_count")
        return self.inner.head(key)

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self._add("get_count", "get_bytes", len(data))
        return data

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        self._add("put_count", "put_bytes", len(data))

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        self._add("list_count")
        return self.inner.list(prefix)


def open_backend(url: str, create: bool = True) -> CountingBackend:
    """The backend stack a store URL gets: counting over retrying over obstore. Without
    ``create``, a local store must already exist (reading never makes one)."""
    return CountingBackend(RetryingBackend(ObstoreBackend(url, create)))
