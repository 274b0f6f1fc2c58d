"""Children that end with the process that started them, however it ends (SIGKILL included).

`make run` starts Redis and the services in sessions of their own, so that a terminal's Ctrl-C
reaches only the supervisor, which stops them in order; but then nothing stopped them when the
supervisor itself was killed. On Linux the kernel sends a child a chosen signal when the thread
that started it ends (PR_SET_PDEATHSIG): every Popen here runs on the main thread. Elsewhere the
children outlive a killed supervisor, as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def ending_with_us(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for Popen that has the child sent `sig` when this process ends; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    parent, number = os.getpid(), int(sig)

    def arm() -> None:  # in the child, between fork and exec (the setting survives exec)
        prctl(PR_SET_PDEATHSIG, number)
        if os.getppid() != parent:  # the parent ended before the line above: no signal will come
            os.kill(os.getpid(), number)

    return arm
