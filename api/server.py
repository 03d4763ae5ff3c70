"""``voucher-ledger serve``: the HTTP front of ``api.front`` on uvicorn's event loop, the WSGI
application on a pool of threads, one ledger per worker process.

Threads matter more than processes here: a worker's requests share its group-commit writer, so
the requests in flight become a few transactions. Workers write the same hot aggregates (a
provider's year counter, a funding source), and a batch that loses a race to another worker is
run again command by command; so one worker per two cores, the other core for PostgreSQL and
the kernel.

16 threads: more threads than clients in flight only hand the interpreter lock to each other,
and 16 leaves room for slow requests (an import, a report) without making every quick one wait
behind them. Measured with ``wrk -c16`` (benchmarks/http_wrk.py) under gunicorn, once a read
cost one query: 16 threads gave 658 reads/s and 32 gave 490; 4 and 8 gave 691 and 671.

Beside the workers run two ``voucher-ledger project`` processes, one for the read models
(``--only views``) and one for the audit chain (``--only audit-chain``); a supervisor thread
starts either again if it dies."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from api import front
from api.parent import PARENT_ENV

DEFAULT_THREADS = 16
MAX_WORKERS = 32
CORES_PER_WORKER = 2

GRACEFUL_TIMEOUT_S = 20  # after SIGTERM, for the answers in flight


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    """The child, told who its server is: it asks the kernel for SIGTERM when the server dies,
    however it dies (api.cli.die_with_parent; a SIGKILL of the server left its followers
    running, writing views for no one)."""
    return subprocess.Popen(command, env={**os.environ, PARENT_ENV: str(os.getpid())})


class Supervised:
    """A child process kept running: when it exits, it is started again after a pause that
    doubles (1 s up to 30 s) while it keeps dying within a minute, until ``stop``."""

    FIRST_PAUSE_S = 1.0
    MAX_PAUSE_S = 30.0
    STABLE_S = 60.0

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.process = _start(self.command)
        self._started = time.monotonic()
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        pause = self.FIRST_PAUSE_S
        while not self._stopping.wait(0.5):
            code = self.process.poll()
            if code is None:
                continue
            if time.monotonic() - self._started > self.STABLE_S:
                pause = self.FIRST_PAUSE_S
            print(
                f"supervisor: {' '.join(self.command[-2:])} exited; "
                f"starting it again in {pause:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            if self._stopping.wait(pause):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = _start(self.command)
                self._started = time.monotonic()
                self.restarts += 1
            pause = min(self.MAX_PAUSE_S, pause * 2)

    def stop(self, _: Any = None) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 1) // CORES_PER_WORKER))


class _Stopped(Exception):
    """SIGTERM or SIGINT, once the server has stopped."""


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


def serve(host: str, port: int, workers: int, threads: int) -> int:
    """Run until interrupted. Prints the docs address and, if none was configured, a fresh
    admin token (also handed to the workers through the environment)."""
    metrics_dir = tempfile.mkdtemp(prefix="ledger-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker imports the client
    if not os.environ.get("LEDGER_ADMIN_TOKEN"):
        os.environ["LEDGER_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
        print(f"admin token (LEDGER_ADMIN_TOKEN): {os.environ['LEDGER_ADMIN_TOKEN']}", flush=True)
    print(f"serving http://{host}:{port}/  docs: http://{host}:{port}/docs", flush=True)
    # Beside the workers, one process follows the log into the views they read and one into
    # the audit chain: either may die and be started again while the other goes on, and the
    # two do not share one interpreter's lock.
    followers = [
        Supervised([sys.executable, "-m", "api.cli", "project", "--only", part])
        for part in ("views", "audit-chain")
    ]
    os.environ["LEDGER_PROJECTOR"] = "external"
    for follower in followers:
        atexit.register(follower.stop)
    os.environ[front.THREADS_ENV] = str(threads)
    os.environ[front.PORT_ENV] = str(port)
    config = uvicorn.Config(
        "api.front:lifespan",
        host=host,
        port=port,
        workers=workers,
        http=front.LedgerProtocol,
        loop="uvloop",
        lifespan="on",
        interface="asgi3",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,  # api.observability logs one structured line per request
        log_config=None,
        log_level="warning",
        backlog=1024,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
    )
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again with the
    # handler it found: this one, so that the followers stop too and the process exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            uvicorn.Server(config).run()
    except _Stopped:
        pass
    finally:
        for follower in followers:
            follower.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve("127.0.0.1", 8080, default_workers(), DEFAULT_THREADS))
