"""The ``storelab`` command's first moments.

Commands that hash files on worker processes start the workers' fork server before anything
else is imported, so its boot overlaps the command line's own imports instead of following
them (about a tenth of a second on a two-core machine, on every ingest).
"""

from __future__ import annotations

import os
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


PROCESS_DEFAULTS = {
    # Arrow's default allocator (mimalloc) hands freed pages back to the kernel and faults them
    # in again as transparent huge pages, each zeroed whole: in a profile of an ingest that was
    # a tenth of the recording process's time. glibc's malloc keeps them.
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # numpy's OpenBLAS starts a thread per core that spins after each call; storelab never
    # calls BLAS, and the spinning takes CPU from the hashing workers.
    "OPENBLAS_NUM_THREADS": "1",
}
"""Environment the ``storelab`` command sets for itself (a value already set is kept)."""


def configure_process(environ: dict[str, str] | None = None) -> None:
    """Set :data:`PROCESS_DEFAULTS` before Arrow and numpy load.

    >>> env = {"OPENBLAS_NUM_THREADS": "4"}
    >>> configure_process(env)
    >>> env["OPENBLAS_NUM_THREADS"], env["ARROW_DEFAULT_MEMORY_POOL"]
    ('4', 'system')
    """
    target = os.environ if environ is None else environ
    for name, value in PROCESS_DEFAULTS.items():
        target.setdefault(name, value)


def run() -> None:
    """Console-script entry point. Ctrl-C while the command is still loading (a second or so
    of imports) is the same one line as later on, not a traceback."""
    try:
        configure_process()
        if wants_workers(sys.argv[1:]):
            from storelab.ingest.forkserver import start_in_background

            start_in_background()
        from storelab.cli import run as cli_run
    except KeyboardInterrupt:
        print("storelab: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    cli_run()
