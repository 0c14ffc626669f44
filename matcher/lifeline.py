"""Make a process exit when its parent does, even when the parent dies by SIGKILL.

Used by run.py for every child it starts (in the child, between fork and exec) and by a
matcher for its snapshot child (docs/operations.md, "The supervisor"): no orphan keeps a
port, a journal lock or a snapshot folder busy after the process that owned it is gone.

Linux only (prctl PR_SET_PDEATHSIG). Elsewhere `exit_with_parent` returns False and the
caller goes on without the guarantee.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Loaded here, in the parent, so that the child calls a function already resolved: no
# import or dlopen between fork and exec.
_prctl = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def exit_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies.

    Call it in the child right after fork, with the parent's pid read before the fork:
    if the parent died before the request was made, no signal would ever come, so this
    checks `getppid()` afterwards and exits at once in that case (the race closed).
    `signum` is reset to its default action first: a handler inherited from the parent
    must not swallow the signal before an exec replaces it.

    Returns True when the guarantee is in place, False when the platform has no prctl.
    """
    if _prctl is None:
        return False
    if signum != signal.SIGKILL:
        signal.signal(signum, signal.SIG_DFL)
    if _prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent is already gone: never start without one
    return True
