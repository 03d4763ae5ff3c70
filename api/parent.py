"""A follower process (``voucher-ledger project``) that ``serve`` starts ends with its server,
however the server ends: a SIGKILL of the server left its followers running, writing views
and chaining for no one, and holding the database's connections."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PARENT_ENV = "LEDGER_SERVE_PID"  # set by api.server for the processes it starts
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the server that started this process dies (Linux's
    ``PR_SET_PDEATHSIG``); if it died already, end now. Nothing without the variable."""
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(expected):  # it died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)
