"""Fetching NARs named in a list: local paths, ``http(s)://`` and ``s3://`` URLs.

Downloads run ahead of the ingest on a few threads, each into a temporary file, and are
handed over in list order; at most ``concurrency`` are fetched or waiting at once, so disk
use stays bounded by that many NARs. A fetch that fails names its URL in one line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from storelab.downloads import download
from storelab.errors import InputError, InputNotFoundError

__all__ = ["read_source_list", "fetch_sources", "is_remote"]


def read_source_list(path: str | os.PathLike[str]) -> list[str]:
    """The sources a list file names: one a line; blank lines and ``#`` comments skipped. A
    relative path is relative to the list's own folder (so a list travels with what it names).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "l.txt"; _ = f.write_text("# cache slice\\na.nar\\n\\n https://c/b.nar.xz \\n/abs.nar\\n")
    >>> [s.replace(str(f.parent), "LIST") for s in read_source_list(f)]
    ['LIST/a.nar', 'https://c/b.nar.xz', '/abs.nar']
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the list: {err}") from None
    folder = Path(path).parent
    sources = [line.strip() for line in text.splitlines()]
    return [s if is_remote(s) or os.path.isabs(s) else str(folder / s) for s in sources if s and not s.startswith("#")]


def is_remote(source: str) -> bool:
    return source.startswith(("http://", "https://", "s3://"))


def _download(source: str, folder: str) -> Path:
    name = source.rstrip("/").rsplit("/", 1)[-1] or "nar"
    target = Path(tempfile.mkdtemp(dir=folder)) / name
    try:
        if source.startswith("s3://"):
            _download_s3(source, target)
        else:  # transient errors retried, a broken transfer resumed (storelab.downloads)
            download(source, target)
    except OSError as err:
        raise InputError(f"{source}: cannot fetch: {getattr(err, 'strerror', None) or err}") from None
    return target


def _download_s3(source: str, target: Path) -> None:
    import obstore

    from storelab.errors import StoreError
    from storelab.stores.backends import obstore_errors, open_obstore

    bucket, _, key = source[len("s3://") :].partition("/")
    store = open_obstore(f"s3://{bucket}")
    try:
        with obstore_errors(source, "fetch", key):
            result = obstore.get(store, key)
            with open(target, "wb") as out:
                for piece in result.stream():
                    out.write(piece)
    except FileNotFoundError:
        raise InputNotFoundError(f"{source}: no such object") from None
    except StoreError as err:  # the NAR is this run's input: an input that cannot be read
        raise InputError(str(err)) from None


def fetch_sources(sources: Iterable[str], concurrency: int = 4) -> Iterator[tuple[str, Path]]:
    """Yield ``(source, local path)`` in order; remote ones are fetched ahead, up to
    ``concurrency`` at once, and their temporary copy is deleted once the caller moves on."""
    if concurrency < 1:
        raise ValueError("concurrency is at least 1")
    with tempfile.TemporaryDirectory(prefix="storelab-fetch-") as folder, ThreadPoolExecutor(concurrency) as pool:
        pending: deque[tuple[str, Future[Path] | None]] = deque()
        queue = iter(sources)
        try:
            while True:
                while len(pending) < concurrency:
                    source = next(queue, None)
                    if source is None:
                        break
                    pending.append((source, pool.submit(_download, source, folder) if is_remote(source) else None))
                if not pending:
                    return
                source, future = pending.popleft()
                if future is None:
                    yield source, Path(source)
                    continue
                local = future.result()
                try:
                    yield source, local
                finally:
                    shutil.rmtree(local.parent, ignore_errors=True)
        finally:
            for _, future in pending:
                if future is not None:
                    future.cancel()
