"""The fork server that worker processes start from, and starting it early.

Light on purpose (the standard library only): the ``storelab`` command starts the fork server
before it imports its own command-line machinery, so workers are ready by the time the scan
has found work for them.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.context import ForkServerContext

__all__ = ["PRELOAD", "context", "start_in_background"]

PRELOAD = ["storelab.ingest.worker_signals", "storelab.ingest.workers"]
"""What the fork server imports once, so each worker forks from it ready to run. The signal
set-up first: it makes the fork server ignore Ctrl-C before the longer import of the workers'
modules (Ctrl-C at that moment would otherwise end the fork server with a traceback)."""


def context() -> ForkServerContext:
    """The multiprocessing context worker pools use."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_in_background() -> None:
    """Start the fork server now, on a thread (its preloads take a moment, spent beside the
    caller's own imports)."""
    from multiprocessing import forkserver

    context()
    threading.Thread(target=forkserver.ensure_running, daemon=True).start()
