"""Output files written whole or not at all — one policy for every file storelab writes
outside a dataset (NARs, reports, tables and figures of studies, manifests).

A file is written under a fresh temporary name beside its target (``tempfile.mkstemp``:
created with ``O_EXCL``, so never through an existing name or a symlink planted where the
temporary would go), flushed to disk, then renamed over the target: a reader sees the old
file or the new one, two writers to one target leave one of their files whole, and a failure
leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "atomic_write"]

_MODE = 0o644
"""Outputs are for people and other tools to read (mkstemp would make them private)."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents into; they replace ``path`` when the
    ``with`` block ends without an error.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output(target) as f:
    ...     _ = f.write(b"whole")
    >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
    (b'whole', ['out.txt'])
    """
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (:func:`atomic_output`)."""
    with atomic_output(path) as handle:
        handle.write(data)
