"""Progress for long work: bytes, files, rate and time left on a terminal, silent elsewhere.

The bar never goes backwards. While a scan is still finding work (``scanning=True``) the
total is unknown, so the bar pulses and shows what is done, the rate and what has been found
so far; once the scan is over (:meth:`ByteProgress.scan_done`) the total is fixed, and the bar
fills with a time left.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Self

__all__ = ["ByteProgress", "CountProgress", "wants_progress"]


def wants_progress(quiet: bool) -> bool:
    """Show a bar only for a person watching a terminal, and never in CI."""
    return not quiet and sys.stderr.isatty()


class _Bar:
    """A rich progress display on stderr (``_progress`` None: nothing is shown), started and
    stopped as a context manager."""

    _progress: Any = None
    _task: Any = None

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()


class ByteProgress(_Bar):
    """``with ByteProgress("ingest", enabled, total_bytes=n) as p: p.advance(files, nbytes)``

    ``total_bytes`` None (or ``scanning``): the total is found as the work goes on
    (:meth:`grow`), and shown once :meth:`scan_done` says it is complete.
    """

    def __init__(
        self, verb: str, enabled: bool, total_bytes: int | None = None, total_files: int | None = None, scanning: bool = False
    ) -> None:
        self._verb = verb
        self._scanning = scanning or total_bytes is None
        self._found_files = total_files or 0
        self._found_bytes = total_bytes or 0
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
            self._task = self._progress.add_task(self._describe(), total=None if self._scanning else total_bytes)

    def _describe(self) -> str:
        if self._scanning:
            found = f", {self._found_files:,} found so far" if self._found_files else ""
            return f"{self._verb}: {self._files:,} files{found} (scanning)"
        return f"{self._verb}: {self._files:,}/{self._found_files:,} files"

    def grow(self, files: int, nbytes: int) -> None:
        """More work found (the scan goes on while work is done)."""
        self._found_files += files
        self._found_bytes += nbytes
        if self._progress is not None:
            self._progress.update(self._task, description=self._describe())

    def scan_done(self) -> None:
        """Everything there is to do has been found: the bar gets its total."""
        self._scanning = False
        if self._progress is not None:
            self._progress.update(self._task, total=self._found_bytes, description=self._describe())

    def advance(self, files: int, nbytes: int) -> None:
        self._files += files
        if self._progress is not None:
            self._progress.update(self._task, advance=nbytes, description=self._describe())

    def describe(self, text: str) -> None:
        """Change the words before the bar (e.g. which of many sources is being read)."""
        self._verb = text
        if self._progress is not None:
            self._progress.update(self._task, description=self._describe())


class CountProgress(_Bar):
    """``with CountProgress("ingest-nar", enabled, total, "NARs") as p: p.advance(1, name)`` — a
    bar over a known number of items, with the rate and time left."""

    def __init__(self, verb: str, enabled: bool, total: int | None, unit: str) -> None:
        self.enabled = enabled
        self._verb, self._unit = verb, unit
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(verb, total=total)

    def advance(self, count: int = 1, current: str = "", total: int | None = None) -> None:
        """``count`` more done (``current``: the item just done; ``total``: once it is known)."""
        if self._progress is not None:
            from rich.markup import escape

            extra = {"total": total} if total is not None else {}
            self._progress.update(self._task, advance=count, description=f"{self._verb} {escape(current)}"[:60], **extra)
