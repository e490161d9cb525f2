"""Preloaded by the fork server of :mod:`storelab.ingest.workers`; does nothing elsewhere.

Worker processes are forked from the fork server with the signal handlers it had after its
preloads. Ignoring SIGINT there means a worker is born ignoring Ctrl-C: the parent handles
it, and a worker still booting when the user presses Ctrl-C prints no traceback of its own.
Any other importer (a test collector, a curious user) is left alone.

Workers also die with the command that started them (:func:`die_with`): a ``storelab`` killed
with SIGKILL, or given SIGTERM alone, leaves no worker behind to go on writing into a store or a
dataset. The command is not a worker's parent — the fork server is — so a worker watches the
command itself (a pidfd); once the workers are gone, the fork server and the resource tracker
see their pipes close and end too.
"""

import ctypes
import os
import select
import signal
import sys
import threading
import time
from types import FrameType

__all__ = ["die_with", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.5
"""How often a process without pidfds checks that the command still lives."""


def die_with_parent() -> None:
    """Have the kernel send this process SIGKILL when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``); if the parent is gone already, exit now. Elsewhere, nothing.

    >>> die_with_parent()  # in a test process whose parent lives: nothing happens
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: die_with's watch still ends us
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def die_with(command: int) -> None:
    """End this process (at once, as SIGKILL would) when process ``command`` ends, and when its
    own parent does. A daemon thread waits on a pidfd of ``command`` (Linux ≥ 5.3), or polls it.

    The watch is a daemon thread: it costs nothing while the command lives.
    """
    die_with_parent()
    threading.Thread(target=_watch, args=(command,), name="storelab-die-with", daemon=True).start()


def _watch(command: int) -> None:
    try:
        fd = os.pidfd_open(command)
    except (AttributeError, OSError):  # an older kernel: poll
        fd = None
    if fd is None:
        while _alive(command):
            time.sleep(_POLL_SECONDS)
    else:
        select.select([fd], [], [])  # readable once the process has ended
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists.

    >>> _alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
