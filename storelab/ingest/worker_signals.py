"""Preloaded by the fork server of :mod:`storelab.ingest.workers`; does nothing elsewhere.

Worker processes are forked from the fork server with the signal handlers it had after its
preloads. Ignoring SIGINT there means a worker is born ignoring Ctrl-C: the parent handles
it, and a worker still booting when the user presses Ctrl-C prints no traceback of its own.
Any other importer (a test collector, a curious user) is left alone.
"""

import signal
import sys
from types import FrameType


def _in_fork_server() -> bool:
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename.endswith("multiprocessing/forkserver.py"):
            return True
        frame = frame.f_back
    return False


if _in_fork_server():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
