"""``voucher-ledger serve``: gunicorn with threaded workers, one ledger per worker.

Threads matter more than processes here: a worker's requests share its group-commit writer, so
the requests in flight become a few transactions. Workers write the same hot aggregates (a
provider's year counter, a funding source), and a batch that loses a race to another worker is
run again command by command; so one worker per two cores, the other core for PostgreSQL and
the kernel. Measured on 2 cores (benchmarks/http.py, 16 users): 1 worker x 32 threads about
640-720 redemptions/s, 2 workers x 16 threads about 240/s."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

DEFAULT_THREADS = 32
MAX_WORKERS = 32
CORES_PER_WORKER = 2


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
    projector = subprocess.Popen([sys.executable, "-m", "api.cli", "project"])
    os.environ["LEDGER_PROJECTOR"] = "external"

    def stop_projector(_: Any = None) -> None:
        if projector.poll() is None:
            projector.terminate()
            try:
                projector.wait(timeout=10)
            except subprocess.TimeoutExpired:
                projector.kill()

    atexit.register(stop_projector)
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
            "on_exit": stop_projector,
        }
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(serve("127.0.0.1", 8080, default_workers(), DEFAULT_THREADS))
