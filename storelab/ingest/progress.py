"""A progress bar for long work: bytes, files and MB/s on a terminal, silent elsewhere."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["ByteProgress", "wants_progress"]


def wants_progress(quiet: bool) -> bool:
    """Show a bar only for a person watching a terminal, and never in CI."""
    return not quiet and sys.stderr.isatty()


class ByteProgress:
    """``with ByteProgress("ingest", total_bytes, total_files, enabled) as p: p.advance(files, nbytes)``"""

    def __init__(self, verb: str, total_bytes: int, total_files: int, enabled: bool) -> None:
        self._verb = verb
        self._total_files = total_files
        self._files = 0
        self._progress: Any = None  # a rich Progress, loaded only when a bar is shown
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(self._describe(), total=total_bytes)

    def _describe(self) -> str:
        return f"{self._verb} {self._files}/{self._total_files} files"

    def __enter__(self) -> ByteProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def grow(self, files: int, nbytes: int) -> None:
        """More work found (the scan goes on while work is done)."""
        self._total_files += files
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, total=(task.total or 0) + nbytes, description=self._describe())

    def advance(self, files: int, nbytes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._files += files
            self._progress.update(self._task, advance=nbytes, description=self._describe())
