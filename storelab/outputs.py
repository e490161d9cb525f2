"""Output files written whole or not at all — one policy for every file storelab writes
outside a dataset (NARs, reports, tables and figures of studies, manifests).

A file is written under a fresh temporary name beside its target (``tempfile.mkstemp``:
created with ``O_EXCL``, so never through an existing name or a symlink planted where the
temporary would go), flushed to disk, then renamed over the target: a reader sees the old
file or the new one, two writers to one target leave one of their files whole, and a failure
leaves no temporary behind. A file that cannot be written is an
:class:`~storelab.errors.OutputError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from storelab.errors import OutputError

__all__ = ["atomic_output", "atomic_write", "output_folder"]

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
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or pieces of them) to ``path`` whole or not at all
    (:func:`atomic_output`)."""
    with atomic_output(path) as handle:
        if isinstance(data, (bytes, bytearray, memoryview)):
            handle.write(data)
        else:
            for piece in data:
                handle.write(piece)


def output_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder to write outputs into, made if missing.

    >>> import tempfile
    >>> output_folder(tempfile.mkdtemp() + "/a/b").is_dir()
    True
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {folder}: {error.strerror or error}") from None
    return folder
