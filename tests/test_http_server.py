"""The real ``voucher-ledger serve`` process (api.front) as a hostile client meets it, over raw
sockets (issue 12 §6, §7; API_CONTRACT.md §2): a request line over 8 KiB is 414, header lines
over 16 KiB in all 431, a malformed request 400, all in application/problem+json like every
other error; chunked bodies are read, within the same 16 KiB as any other body; invented methods
add no series to /metrics. One server on SQLite for the module: these are the server's limits,
the same whatever the store."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_api_e2e import free_port

ADMIN = "http-server-admin-token-" + "z" * 24
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
SOCKET_TIMEOUT_S = 10
AUDITOR = b'{"name":"%s","role":"auditor"}'
# API_CONTRACT.md §2, written out here rather than imported from the code under test.
MAX_REQUEST_LINE_BYTES = 8 * 1024  # method, target and version, without the CRLF
MAX_HEADER_BYTES = 16 * 1024  # every header line with its CRLF
MAX_HEADER_FIELDS = 256  # header lines, however short
MAX_BODY_BYTES = 16 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes

    @property
    def problem(self) -> dict[str, Any]:
        assert self.content_type == "application/problem+json", (self.status, self.body)
        parsed: dict[str, Any] = json.loads(self.body)
        assert parsed["status"] == self.status
        assert {"type", "title", "status", "detail"} <= set(parsed)
        return parsed

    def is_problem(self, status: int, slug: str) -> bool:
        return self.status == status and self.problem["type"].endswith(f"/problems/{slug}")


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    chosen = free_port()
    store = tmp_path_factory.mktemp("http-server") / "ledger.sqlite"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{store}", "LEDGER_ADMIN_TOKEN": ADMIN}
    cli = Path(sys.executable).with_name("voucher-ledger")
    command = [str(cli), "serve", "--host", "127.0.0.1", "--port", str(chosen)]
    proc = subprocess.Popen(
        [*command, "--workers", "1", "--threads", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(chosen):
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield chosen
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def _healthy(port: int) -> bool:
    try:
        return send(port, b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
    except OSError:
        return False


def send(port: int, request: bytes) -> Answer:
    """One raw request on a fresh connection, and the first answer to it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, response.getheader("Content-Type"), response.read())


def request_line(length: int) -> bytes:
    """``GET /v1/health?pad=aaa... HTTP/1.1``, exactly ``length`` bytes without its CRLF."""
    head, tail = b"GET /v1/health?pad=", b" HTTP/1.1"
    return head + b"a" * (length - len(head) - len(tail)) + tail


def with_headers(header_lines: bytes) -> bytes:
    return b"GET /v1/health HTTP/1.1\r\n" + header_lines + b"\r\n"


def one_header(total: int) -> bytes:
    """One header line of ``total`` bytes, its CRLF included: ``X-Pad: aaa...`` CRLF."""
    return b"X-Pad: " + b"a" * (total - len(b"X-Pad: \r\n")) + b"\r\n"


def post(path: str, body: bytes, framing: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n"
        "Content-Type: application/json\r\n".encode()
        + framing
        + b"\r\n"
        + body
    )


def chunked(body: bytes, chunk_bytes: int = 1000) -> bytes:
    """``body`` as HTTP/1.1 chunks of ``chunk_bytes``, then the last chunk."""
    pieces = [body[i : i + chunk_bytes] for i in range(0, len(body), chunk_bytes)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def post_chunked(body: bytes) -> bytes:
    return post("/v1/principals", chunked(body), b"Transfer-Encoding: chunked\r\n")


def padded(size_bytes: int) -> bytes:
    body = AUDITOR % b"padded"
    return body + b" " * (size_bytes - len(body))


# --- the request line --------------------------------------------------------------------------


def test_a_request_line_of_exactly_8_kib_is_served(port: int) -> None:
    answer = send(port, request_line(MAX_REQUEST_LINE_BYTES) + b"\r\nHost: t\r\n\r\n")

    assert answer.status == 200, answer.body


@pytest.mark.parametrize("length", [MAX_REQUEST_LINE_BYTES + 1, 3 * MAX_REQUEST_LINE_BYTES])
def test_a_request_line_over_8_kib_is_414_problem_json(port: int, length: int) -> None:
    answer = send(port, request_line(length) + b"\r\nHost: t\r\n\r\n")

    assert answer.is_problem(414, "uri-too-long")


# --- headers -----------------------------------------------------------------------------------


def test_header_lines_of_exactly_16_kib_in_all_are_served(port: int) -> None:
    lines = b"Host: t\r\n" + one_header(MAX_HEADER_BYTES - len(b"Host: t\r\n"))

    answer = send(port, with_headers(lines))

    assert answer.status == 200, answer.body


def test_one_header_line_over_8_kib_but_within_16_kib_is_served(port: int) -> None:
    answer = send(port, with_headers(b"Host: t\r\n" + one_header(12_000)))

    assert answer.status == 200, answer.body


def test_up_to_256_small_headers_are_served_and_more_are_431(port: int) -> None:
    lines = b"Host: t\r\n" + b"".join(
        b"X-H%d: %d\r\n" % (n, n) for n in range(1, MAX_HEADER_FIELDS)
    )
    assert len(lines) < MAX_HEADER_BYTES and lines.count(b"\r\n") == MAX_HEADER_FIELDS

    assert send(port, with_headers(lines)).status == 200
    more = lines + b"X-One-Too-Many: 1\r\n"
    assert send(port, with_headers(more)).is_problem(431, "request-header-fields-too-large")


@pytest.mark.parametrize(
    "lines",
    [
        b"Host: t\r\n" + one_header(MAX_HEADER_BYTES + 1 - len(b"Host: t\r\n")),
        one_header(MAX_HEADER_BYTES + 1),
        one_header(40_000),
        b"".join(b"X-H%d: %d\r\n" % (n, n) for n in range(2000)),  # about 24 KiB
        b"a:\r\n" * (MAX_HEADER_BYTES // 4 + 1),  # the shortest lines there are
    ],
    ids=["16-kib-plus-1", "one-line-16-kib-plus-1", "one-line-40-kb", "many-small", "tiny"],
)
def test_header_lines_over_16_kib_in_all_are_431_problem_json(port: int, lines: bytes) -> None:
    assert len(lines) > MAX_HEADER_BYTES

    answer = send(port, with_headers(lines))

    assert answer.is_problem(431, "request-header-fields-too-large")


# --- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/health HTTP/9.9\r\nHost: t\r\n\r\n",
        b"GET /v1/health HTTP/1.1\nHost: t\n\n",  # bare LF
        b"GET /v1/health HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"GET /v1/\xed\xa0\x80 HTTP/1.1\r\nHost: t\r\n\r\n",  # raw bytes in the target
        b"get /v1/health HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /v1/principals HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /v1/principals HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=[
        "garbage",
        "version",
        "bare-lf",
        "space-in-name",
        "no-colon",
        "raw-bytes",
        "lower-case-method",
        "length-and-chunked",
        "negative-length",
    ],
)
def test_a_malformed_request_is_400_problem_json(port: int, request_bytes: bytes) -> None:
    answer = send(port, request_bytes)

    assert answer.is_problem(400, "bad-request")


# --- bodies ------------------------------------------------------------------------------------


def test_a_chunked_body_is_read(port: int) -> None:
    answer = send(port, post_chunked(AUDITOR % b"chunked"))

    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["name"] == "chunked"


def test_a_chunked_body_of_exactly_16_kib_is_read(port: int) -> None:
    answer = send(port, post_chunked(padded(MAX_BODY_BYTES)))

    assert answer.status == 201, answer.body


@pytest.mark.parametrize("size_bytes", [MAX_BODY_BYTES + 1, 20_000])
def test_a_chunked_body_over_16_kib_is_413_problem_json(port: int, size_bytes: int) -> None:
    answer = send(port, post_chunked(padded(size_bytes)))

    assert answer.is_problem(413, "payload-too-large")


def test_one_chunk_of_over_16_kib_is_413_problem_json(port: int) -> None:
    answer = send(port, post_chunked_in_one(padded(MAX_BODY_BYTES + 1)))

    assert answer.is_problem(413, "payload-too-large")


def post_chunked_in_one(body: bytes) -> bytes:
    return post("/v1/principals", chunked(body, len(body)), b"Transfer-Encoding: chunked\r\n")


@pytest.mark.parametrize(
    "chunks",
    # An extension name is a token (RFC 9112 §7.1.1). llhttp lets one case through: an empty
    # name before "=" (``2;=bad``); extensions mean nothing here, and sizes and CRLFs, which
    # decide where a body ends, are held strictly.
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;a b\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-size", "no-terminator", "bad-extension"],
)
def test_a_chunked_body_with_broken_framing_is_400_problem_json(port: int, chunks: bytes) -> None:
    answer = send(port, post("/v1/principals", chunks, b"Transfer-Encoding: chunked\r\n"))

    assert answer.is_problem(400, "bad-request")


def test_a_broken_chunked_body_the_application_did_not_read_gets_no_second_answer(
    port: int,
) -> None:
    request = (
        b"POST /v1/principals HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )

    wire = send_until_closed(port, request)  # no token: 401 before the body is read

    assert wire.startswith(b"HTTP/1.1 401 ")
    assert wire.count(b"HTTP/1.1 ") == 1, wire


def send_until_closed(port: int, request: bytes) -> bytes:
    """Every byte the server sends on one connection until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(request)
        received = []
        while chunk := sock.recv(65536):
            received.append(chunk)
        return b"".join(received)


def test_a_body_over_16_kib_with_a_length_is_413_problem_json(port: int) -> None:
    body = padded(MAX_BODY_BYTES + 1)

    answer = send(port, post("/v1/principals", body, b"Content-Length: %d\r\n" % len(body)))

    assert answer.is_problem(413, "payload-too-large")


@pytest.mark.parametrize("text", [b"\\ud800", b"\xed\xa0\x80"], ids=["escape", "raw-bytes"])
def test_a_lone_surrogate_in_a_body_is_422_on_the_wire(port: int, text: bytes) -> None:
    body = AUDITOR % text

    answer = send(port, post("/v1/principals", body, b"Content-Length: %d\r\n" % len(body)))

    assert answer.is_problem(422, "validation-error")


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/vouchers/%ED%A0%80",
        b"/v1/institutions/%ED%A0%80/balances?fiscal_year=%ED%A0%80",
        b"/v1/payables?provider_id=%ED%A0%80&source_id=%ED%A0%80",
        b"/v1/audit/inspections/%ED%A0%80?format=%ED%A0%80",
        b"/v1/principals?after=%ED%A0%80&%ED%A0%80=%C0",
        b"/%ED%A0%80",
    ],
)
def test_invalid_utf_8_in_the_path_or_query_is_never_a_server_error(
    port: int, target: bytes
) -> None:
    request = b"GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"

    answer = send(port, request % (target, ADMIN.encode()))

    assert 400 <= answer.status < 500
    assert answer.problem


# --- /metrics ----------------------------------------------------------------------------------


def http_series(port: int) -> set[str]:
    text = send(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").body.decode()
    return {line.split(" ")[0] for line in text.splitlines() if line.startswith("ledger_http")}


def test_invented_methods_add_no_series_to_the_metrics(port: int) -> None:
    send(port, b"M00000X /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
    http_series(port)  # the scrape's own series, before counting
    before = http_series(port)

    for n in range(1, 40):
        send(port, b"M%05dX /v1/health HTTP/1.1\r\nHost: t\r\n\r\n" % n)
    after = http_series(port)

    assert after == before
    assert not [s for s in after if "M000" in s]
