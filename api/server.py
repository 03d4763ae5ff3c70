"""``voucher-ledger serve``: gunicorn with threaded workers, one ledger per worker.

Threads matter more than processes here: a worker's requests share its group-commit writer, so
the requests in flight become a few transactions. Workers write the same hot aggregates (a
provider's year counter, a funding source), and a batch that loses a race to another worker is
run again command by command; so one worker per two cores, the other core for PostgreSQL and
the kernel. Measured on 2 cores (benchmarks/http.py, 16 users with readers, projector running):
1 worker x 32 threads about 585 redemptions/s; 2 workers x 16 threads far fewer.

16 threads, not 32: more threads than clients in flight only hand the interpreter lock to each
other. With ``wrk -c16`` (benchmarks/http_wrk.py), once a read costs one query, 16 threads gave
658 reads/s and 32 gave 490; 4 and 8 gave 691 and 671. Redemptions were the same at 8, 16 and
32 (310-351/s), since the writer batches whatever is queued. 16 leaves room for slow requests
(an import, a report) without making every quick one wait behind them.

Beside the workers runs one ``voucher-ledger project`` process (the read models and the audit
chain); a supervisor thread starts it again if it dies.

The workers are gunicorn's threaded workers (``LedgerWorker``), but requests are parsed within
the contract's limits (API_CONTRACT.md §2: a request line of at most 8 KiB, header lines of at
most 16 KiB in all), and what gunicorn refuses by itself is answered in application/problem+json
like every other error, not in gunicorn's HTML, and never after the application's own answer."""

from __future__ import annotations

import atexit
import errno
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import (
    ConfigurationProblem,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseException,
    UnsupportedTransferCoding,
)
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import TConn, ThreadWorker

from api.problems import PROBLEM_TYPE, problem_body

DEFAULT_THREADS = 16
MAX_WORKERS = 32
CORES_PER_WORKER = 2

MAX_REQUEST_LINE_BYTES = 8 * 1024  # method, target and version, without CRLF; more is 414
MAX_HEADER_BYTES = 16 * 1024  # every header line with its CRLF; more is 431
# More header lines than this are 431 too, however short: parsing thousands of tiny headers
# costs gunicorn 20-30 ms of CPU a request, against 0.2 ms for a usual one (RFC 6585: 431 is for
# one header field too large or all of them together).
MAX_HEADER_FIELDS = 256
MAX_PROBLEM_DETAIL_CHARS = 200


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


class LedgerRequest(Request):  # type: ignore[misc]
    """gunicorn's HTTP/1 request, parsed within API_CONTRACT.md §2's limits. gunicorn's own
    settings cannot say them: it caps ``limit_request_line`` at 8190 bytes, and limits header
    lines one by one and by count, never in all."""

    answered = False  # set once the application's answer is out (LedgerWorker.handle_request)

    def parse(self, unreader: Any) -> Any:
        self.limit_request_line = MAX_REQUEST_LINE_BYTES
        # Looking for the blank line that ends the headers reads no further than the limit.
        self.max_buffer_headers = MAX_HEADER_BYTES + len(b"\r\n")
        return super().parse(unreader)

    def parse_headers(self, data: bytes, from_trailer: bool = False) -> Any:
        # ``data`` is every header line and the CRLF between them, not the CRLF of the last.
        if len(data) + len(b"\r\n") > MAX_HEADER_BYTES:
            raise LimitRequestHeaders(f"header lines over {MAX_HEADER_BYTES} bytes in all")
        return super().parse_headers(data, from_trailer)


class LedgerConn(TConn):  # type: ignore[misc]
    """A connection whose HTTP/1 requests are ``LedgerRequest``s."""

    def init(self) -> None:
        super().init()
        if type(self.parser) is RequestParser:  # not an HTTP/2 connection
            self.parser.mesg_class = LedgerRequest


# What gunicorn answers by itself, as gunicorn.workers.base.Worker.handle_error sorts it: the
# first entry the exception is an instance of gives status, slug and title.
_SERVER_PROBLEMS: tuple[tuple[Any, int, str, str], ...] = (
    # The application's bad response header, not the client's: before InvalidHeader (400).
    ((InvalidResponseHeader, InvalidResponseHeaderName), 500, "internal-error", "Internal error"),
    (LimitRequestLine, 414, "uri-too-long", "Request line too long"),
    (LimitRequestHeaders, 431, "request-header-fields-too-large", "Headers too large"),
    (UnsupportedTransferCoding, 501, "not-implemented", "Transfer coding not supported"),
    (ExpectationFailed, 417, "expectation-failed", "Expectation failed"),
    ((ForbiddenProxyRequest, ssl.SSLError), 403, "forbidden", "Forbidden"),
    (ConfigurationProblem, 500, "internal-error", "Internal error"),
    (ParseException, 400, "bad-request", "Malformed request"),
    (BaseException, 500, "internal-error", "Internal error"),  # a bug: the log says which
)
_SERVER_DETAILS = {
    414: f"the request line is longer than {MAX_REQUEST_LINE_BYTES} bytes",
    431: f"the header lines are longer than {MAX_HEADER_BYTES} bytes in all",
    500: "the server could not answer this request",
}


def server_problem(exc: BaseException) -> tuple[int, bytes]:
    """The status and the problem+json body that answer a request gunicorn refused with
    ``exc`` (or failed on: 500, telling the client nothing of the cause)."""
    _, status, slug, title = next(p for p in _SERVER_PROBLEMS if isinstance(exc, p[0]))
    detail = _SERVER_DETAILS.get(status) or str(exc)[:MAX_PROBLEM_DETAIL_CHARS]
    return status, problem_body(status, slug, title, detail).encode()


class LedgerWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, with ``LedgerConn`` connections and problem+json errors."""

    def accept(self, listener: Any) -> None:
        # gunicorn.workers.gthread.ThreadWorker.accept (27.0.1), making a LedgerConn.
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            conn = LedgerConn(self.cfg, client_sock, client_addr, listener.getsockname())
            self.enqueue_req(conn)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise

    def handle_request(self, req: Any, conn: Any) -> Any:
        keepalive = super().handle_request(req, conn)
        req.answered = True
        return keepalive

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Log as gunicorn does, then answer in problem+json and close the connection; but
        never a second answer to a request already answered (gunicorn's own would follow it on
        the wire when draining a body the application did not read fails on a bad chunk)."""
        status, body = server_problem(exc)
        if status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        if getattr(req, "answered", False):
            return
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            gunicorn_util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:
            self.log.debug("Failed to send error message.")


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
            "worker_class": "api.server.LedgerWorker",
            "threads": threads,
            # LedgerRequest hooks into gunicorn's Python parser, not its optional C one.
            "http_parser": "python",
            "limit_request_fields": MAX_HEADER_FIELDS,
            "limit_request_field_size": MAX_HEADER_BYTES,
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
