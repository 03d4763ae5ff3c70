"""``voucher-ledger serve``: gunicorn with threaded workers, one ledger per worker.

Threads matter more than processes here: a worker's requests share its group-commit writer, so
the requests in flight become a few transactions. Workers write the same hot aggregates (a
provider's year counter, a funding source), and a batch that loses a race to another worker is
run again command by command; so one worker per two cores, the other core for PostgreSQL and
the kernel. Measured on 2 cores (benchmarks/http.py, 16 users with readers, projector running):
1 worker x 32 threads about 585 redemptions/s; 2 workers x 16 threads far fewer.

Beside the workers runs one ``voucher-ledger project`` process (the read models and the audit
chain); a supervisor thread starts it again if it dies."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication

DEFAULT_THREADS = 32
MAX_WORKERS = 32
CORES_PER_WORKER = 2


class Supervised:
    """A child process kept running: when it exits, it is started again after a pause that
    doubles (1 s up to 30 s) while it keeps dying within a minute, until ``stop``. (Its exit
    code says nothing here: gunicorn's arbiter reaps every child of the master, so ``poll``
    often finds it already gone and reports 0.)"""

    FIRST_PAUSE_S = 1.0
    MAX_PAUSE_S = 30.0
    STABLE_S = 60.0

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(self.command)
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
                self.process = subprocess.Popen(self.command)
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


class LedgerServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: the ledger's threads must start there.
        from api.app import create_app
        from api.observability import configure_logging
        from ledger.settings import Settings

        configure_logging(json_lines=True)
        return create_app(Settings.from_env())


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "close"):
        app.close()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


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
    # One projector beside the workers; they read the views it writes.
    projector = Supervised([sys.executable, "-m", "api.cli", "project"])
    os.environ["LEDGER_PROJECTOR"] = "external"
    atexit.register(projector.stop)
    LedgerServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": 60,
            "graceful_timeout": 20,
            "keepalive": 30,
            "backlog": 1024,
            "accesslog": None,  # api.observability logs one structured line per request
            "errorlog": "-",
            "loglevel": "warning",
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
            "proc_name": "voucher-ledger",
            "on_exit": projector.stop,
        }
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(serve("127.0.0.1", 8080, default_workers(), DEFAULT_THREADS))
