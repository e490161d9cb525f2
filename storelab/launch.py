"""The ``storelab`` command's first moments.

Commands that hash files on worker processes start the workers' fork server before anything
else is imported, so its boot overlaps the command line's own imports instead of following
them (about a tenth of a second on a two-core machine, on every ingest).
"""

from __future__ import annotations

import sys

_HASHING_COMMANDS = frozenset({"ingest-dir", "sweep"})


def wants_workers(argv: list[str]) -> bool:
    """Whether a command line will hash on local worker processes.

    >>> wants_workers(["ingest-dir", "tree", "-o", "ds"]), wants_workers(["ingest-dir", "tree", "-j", "0"])
    (True, False)
    >>> wants_workers(["stats", "ds"]), wants_workers(["sweep", "t", "--scheduler", "local"])
    (False, False)
    """
    if not argv or argv[0] not in _HASHING_COMMANDS or "--help" in argv or "-h" in argv:
        return False
    for i, arg in enumerate(argv):
        if arg.startswith("--scheduler"):
            return False
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-j", "--workers") and value == "0" or arg in ("-j0", "--workers=0"):
            return False
    return True


def run() -> None:
    """Console-script entry point."""
    if wants_workers(sys.argv[1:]):
        from storelab.ingest.forkserver import start_in_background

        start_in_background()
    from storelab.cli import run as cli_run

    cli_run()
