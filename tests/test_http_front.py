"""api.front as an adversarial review met it (issue 14): over raw sockets, a client that
half-closes, stalls, pipelines a burst, hides a bad request behind good ones, asks to upgrade,
speaks HTTP/1.0, leaves out its Host, sends gzip, or does not read its answers; and a SIGTERM
while a body is on its way. Each of these lost an answer, held a thread or hung the stop before.
One server on SQLite for most of them (these are the server's rules, whatever the store)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_api_e2e import free_port
from tests.test_http_server import ADMIN, _healthy

TIMEOUT_S = 10.0  # api.front's HEAD_TIMEOUT_S and BODY_TIMEOUT_S, as the contract's reader sees
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"
PRINCIPAL = b'{"name":"front-review","role":"auditor"}'
SHAPE = ("--workers", "1", "--threads", "4")


def start(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'l.sqlite'}",
        "LEDGER_ADMIN_TOKEN": ADMIN,
    }
    cli = Path(sys.executable).with_name("voucher-ledger")
    proc = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), *SHAPE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not _healthy(port):
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    return proc, port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    proc, port = start(tmp_path_factory.mktemp("front"))
    try:
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S + 10)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def slug(self) -> str:
        assert self.headers.get("content-type") == "application/problem+json", self.body
        return str(json.loads(self.body)["type"]).rsplit("/", 1)[-1]


class Reader:
    """Answers read in order from one connection through one buffer (a new
    ``http.client.HTTPResponse`` per answer would lose what its buffer read ahead); a 100
    Continue is an answer here, where http.client skips it."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def answer(self, head_only: bool = False) -> Answer:
        line = self.file.readline()
        assert line.startswith(b"HTTP/1.1 "), f"not an answer: {line!r}"
        headers: dict[str, str] = {}
        while (field := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = field.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(line.split()[1])
        length = 0 if head_only or status in (100, 204) else int(headers["content-length"])
        return Answer(status, headers, self.file.read(length))

    def answers(self, count: int) -> list[Answer]:
        return [self.answer() for _ in range(count)]


def answers(sock: socket.socket, count: int) -> list[Answer]:
    return Reader(sock).answers(count)


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/principals HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + ADMIN.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


def closed(sock: socket.socket) -> bool:
    """Whether the server closed: EOF (or a reset) where another answer could come."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- a client that half-closes -----------------------------------------------------------------


def test_a_half_closed_connection_still_gets_every_answer_then_closes(
    server: tuple[int, int],
) -> None:
    port, _ = server
    with connect(port) as sock:
        sock.sendall(post(PRINCIPAL) + HEALTH + HEALTH)
        sock.shutdown(socket.SHUT_WR)
        got = answers(sock, 3)
        assert [r.status for r in got] == [201, 200, 200]
        assert closed(sock)


# --- pipelining ----------------------------------------------------------------------------------


def test_a_burst_of_pipelined_requests_ending_in_part_of_one_is_answered_whole(
    server: tuple[int, int],
) -> None:
    """700 whole requests and the first bytes of one more in one send: none of the 25 KB is
    counted against the last one's head (it was refused as too large before)."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(HEALTH * 700 + HEALTH[:10])
        time.sleep(0.3)
        sock.sendall(HEALTH[10:])
        assert [r.status for r in answers(sock, 701)] == [200] * 701


def test_a_refused_request_behind_good_ones_is_answered_after_them(
    server: tuple[int, int],
) -> None:
    port, _ = server
    long_line = b"GET /v1/health?pad=" + b"a" * 8200 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    smuggling = b"POST /v1/principals HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
    smuggling += b"Transfer-Encoding: chunked\r\n\r\n"
    for bad, status, problem in ((long_line, 414, "uri-too-long"), (smuggling, 400, "bad-request")):
        with connect(port) as sock:
            sock.sendall(HEALTH + HEALTH + bad)
            first, second, refusal = answers(sock, 3)
            assert (first.status, second.status) == (200, 200)
            assert refusal.status == status and refusal.slug == problem
            assert refusal.headers["connection"] == "close"
            assert closed(sock)


# --- what the request asks of the connection ---------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "problem"),
    [
        (b"GET /v1/health HTTP/1.1\r\n\r\n", 400, "bad-request"),  # no Host
        (b"GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad-request"),
        (
            b"GET /v1/health HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            400,
            "bad-request",
        ),
        (
            post(PRINCIPAL, b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket\r\n"),
            400,
            "bad-request",
        ),
        (
            b"POST /v1/principals HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            501,
            "not-implemented",
        ),
    ],
    ids=["no-host", "two-hosts", "upgrade-get", "upgrade-post", "gzip"],
)
def test_requests_the_server_does_not_serve_are_problem_json_before_the_application(
    server: tuple[int, int], request_bytes: bytes, status: int, problem: str
) -> None:
    port, _ = server
    with connect(port) as sock:
        sock.sendall(request_bytes)
        (response,) = answers(sock, 1)
        assert response.status == status and response.slug == problem


def test_http_1_0_keep_alive_is_said_and_1_0_gets_no_100_continue(
    server: tuple[int, int],
) -> None:
    port, _ = server
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = reader.answer()
        assert first.status == 200 and first.headers["connection"] == "keep-alive"
        sock.sendall(HEALTH)  # the same connection serves another
        assert reader.answer().status == 200
    with connect(port) as sock:
        head = post(PRINCIPAL, b"Expect: 100-continue\r\n").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        sock.sendall(head)
        assert answers(sock, 1)[0].status == 201  # not a 100 first: 1.0 knows none


def test_head_is_get_without_its_body_and_options_says_no_content(
    server: tuple[int, int],
) -> None:
    port, _ = server
    with connect(port) as sock:
        reader = Reader(sock)
        openapi = b" /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(b"HEAD" + openapi + b"GET" + openapi)
        head, get = reader.answer(head_only=True), reader.answer()
        assert head.status == 200 and int(head.headers["content-length"]) == len(get.body)
        sock.sendall(b"OPTIONS /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        options = reader.answer()  # right after the GET's body: HEAD sent none
        assert options.status == 204 and "content-type" not in options.headers
        assert "GET" in options.headers.get("allow", "")


def test_an_answer_before_the_body_says_it_closes_and_the_answer_arrives(
    server: tuple[int, int],
) -> None:
    """A 5 MiB body, refused from its length: the 413 says ``connection: close`` and reaches a
    client still sending (the server drops what comes, then closes without a reset)."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(post(b"").replace(b"Content-Length: 0", b"Content-Length: %d" % (5 << 20)))
        sent = threading.Thread(target=_send_quietly, args=(sock, b"x" * (5 << 20)))
        sent.start()
        (response,) = answers(sock, 1)
        sent.join(TIMEOUT_S)
        assert response.status == 413 and response.slug == "payload-too-large"
        assert response.headers["connection"] == "close"


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server stopped reading: its answer is on its way
        sock.sendall(data)


# --- clients too slow, or not reading ----------------------------------------------------------


def test_stalled_heads_and_bodies_are_answered_408_and_free_their_threads(
    server: tuple[int, int],
) -> None:
    """More stalled bodies than the server has command threads (4), a head dribbled a byte a
    second, and a 100-continue whose body never comes: each gets 408 problem+json in about
    ``TIMEOUT_S``, and a command sent after them is answered."""
    port, _ = server
    stalled = [connect(port) for _ in range(5)]
    for sock in stalled:
        sock.sendall(post(PRINCIPAL)[:-10])
    waiting = connect(port)
    waiting.sendall(post(PRINCIPAL, b"Expect: 100-continue\r\n")[: -len(PRINCIPAL)])
    dribble = connect(port)
    stop = threading.Event()

    def dribbling() -> None:
        for byte in HEALTH[:-2]:
            if stop.wait(1.0):
                return
            try:
                dribble.sendall(bytes([byte]))
            except OSError:
                return

    feeder = threading.Thread(target=dribbling)
    feeder.start()
    started = time.monotonic()
    try:
        for sock in stalled:
            (response,) = answers(sock, 1)
            assert response.status == 408
        continued, timed_out = answers(waiting, 2)
        assert (continued.status, timed_out.status) == (
            100,
            408,
        ) and timed_out.slug == "request-timeout"
        (slow,) = answers(dribble, 1)
        assert slow.status == 408
        assert time.monotonic() - started < 3 * TIMEOUT_S
        with connect(port) as sock:  # the threads are free again
            sock.sendall(post(PRINCIPAL))
            assert answers(sock, 1)[0].status == 201
    finally:
        stop.set()
        feeder.join()
        for sock in [*stalled, waiting, dribble]:
            sock.close()


def test_a_client_that_does_not_read_its_answers_does_not_grow_the_server(
    server: tuple[int, int],
) -> None:
    """4,000 pipelined requests for the 40 KB OpenAPI document, none of the answers read: the
    server stops starting requests while its write buffer is full, so its memory stays put."""
    port, pid = server
    before = _rss_bytes(pid)
    with connect(port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        one = b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(one * 4000)
        time.sleep(5)
        grown = _rss_bytes(pid) - before
        assert grown < 40 << 20, f"the server grew {grown >> 20} MiB"


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_answers_the_body_in_flight_and_stops_despite_a_stalled_one(
    tmp_path: Path,
) -> None:
    proc, port = start(tmp_path)
    try:
        stalled, arriving = connect(port), connect(port)
        stalled.sendall(post(PRINCIPAL)[:-10])
        request = post(PRINCIPAL)
        arriving.sendall(request[:-5])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        arriving.sendall(request[-5:])
        (answer,) = answers(arriving, 1)
        assert answer.status == 201 and answer.headers["connection"] == "close"
        (timed_out,) = answers(stalled, 1)
        assert timed_out.status == 408
        assert proc.wait(timeout=3 * TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
