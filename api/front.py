"""The HTTP/1.1 front of ``voucher-ledger serve``: llhttp (httptools) parses on uvicorn's event
loop, the WSGI application runs on a pool of threads, one request at a time per connection.

Why not gunicorn: its threaded worker costs about 400 µs of CPU a request before the
application runs (a hello-world falcon app: 2,000 requests/s with ``wrk -c16`` on this machine's
2 cores), more than a kept answer costs in the application. This front served the same app at
6,600/s. Why not granian (17,000/s): it answers a bad request with an empty 400, refuses more
than 100 header lines with an empty 431 and hands broken chunked framing to the application,
where API_CONTRACT.md §2 wants problem+json and we serve 256 short header lines.

What this module owns, and gunicorn did before (API_CONTRACT.md §2):
- a request line (method, target and version, without CRLF) over 8 KiB is 414, header lines
  over 16 KiB in all (or more than 256 of them) 431, a malformed request 400; each answered in
  application/problem+json, then the connection is closed;
- a body is handed to the application as ``wsgi.input`` as it arrives, chunked or not; the
  application bounds it (413). Broken chunked framing fails the application's read (400 from
  ``api.body``); an application that answered without reading gets no second answer;
- keep-alive and pipelining (requests answered in order, a refused one after those before
  it), ``Expect: 100-continue`` (never to HTTP/1.0), a half-closed client still gets its
  answers, and a graceful stop on SIGTERM: uvicorn's server stops accepting, each connection
  ends after the answer in flight (its body read to the end), then the application is closed
  (the writer flushes what it holds);
- a head not whole 10 s after its first byte, or a body that pauses 10 s, is 408: a slow
  client holds neither a thread nor the stop; a client that does not read its answers stops
  the requests behind them (write backpressure), so its answers are not buffered without end;
- an HTTP/1.1 request without exactly one Host, asking to upgrade, or with a transfer coding
  other than chunked (501) is refused before the application; HEAD is answered as GET
  without the body; an answer before the body's end says ``connection: close``, and closing
  lingers (reading and dropping) so that it sends no reset that could destroy the answer.

uvicorn runs it (its ``Server`` and, for several workers, its ``Multiprocess``); its own HTTP
protocols and its ASGI machinery are not used."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
import uvicorn

from api import memory_probe
from api.problems import PROBLEM_TYPE, problem_body

MAX_REQUEST_LINE_BYTES = 8 * 1024  # method, target and version, without CRLF; more is 414
MAX_HEADER_BYTES = 16 * 1024  # every header line with its CRLF; more is 431
# More header lines than this are 431 too, however short (RFC 6585: 431 is for one header field
# too large or all of them together); a usual request has fewer than 20.
MAX_HEADER_FIELDS = 256
# Bytes read of a request's head before its end is seen: the two limits and their CRLFs. A
# client sending more is refused before it has sent all of it.
MAX_HEAD_BYTES = MAX_REQUEST_LINE_BYTES + MAX_HEADER_BYTES + 4
# The body held for the application beyond which reading the socket pauses until it reads.
BODY_HIGH_WATER_BYTES = 1024 * 1024
# After an answer to a request whose body the application did not read to its end, the rest is
# read and dropped (so closing sends no RST that could lose the answer), up to this many bytes.
MAX_DRAIN_BYTES = 1024 * 1024
DRAIN_TIMEOUT_S = 5.0
KEEP_ALIVE_S = 30
CLOSE_WAIT_S = 10.0  # after the server's own graceful stop, for requests still running
# A request's head must be whole this long after its first byte (a client dribbling its headers
# holds a connection and its buffer, not a thread), and a body may pause this long between two
# of its bytes: a stalled body holds one of the application's threads, and a stop waits for it.
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
MIN_READ_THREADS = 2
_READS = frozenset({"GET", "HEAD"})
_VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1"}
_HTTP_VERSION_BYTES = len(" HTTP/1.1")
_NOT_IN_TARGET = bytes(range(0x21)) + bytes(range(0x7F, 0x100))  # RFC 9112 §3.2: visible ASCII
_REASONS = {s.value: s.phrase for s in HTTPStatus}

log = logging.getLogger("api.front")


class Refused(Exception):
    """A request the front answers itself, before or instead of the application."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


def _malformed(detail: str) -> Refused:
    return Refused(400, "bad-request", "Malformed request", detail[:200])


_TOO_LONG = Refused(
    414,
    "uri-too-long",
    "Request line too long",
    f"the request line is longer than {MAX_REQUEST_LINE_BYTES} bytes",
)
_TOO_MANY = Refused(
    431,
    "request-header-fields-too-large",
    "Headers too large",
    f"the header lines are longer than {MAX_HEADER_BYTES} bytes in all, "
    f"or more than {MAX_HEADER_FIELDS}",
)


class BrokenBody(Exception):
    """The body's framing was invalid (a bad chunk size, a chunk without its CRLF), or the
    connection closed before the body's end: what ``wsgi.input`` raises to the application."""


class BodyTimeout(BrokenBody, TimeoutError):
    """No byte of the body came for ``BODY_TIMEOUT_S`` (api.body answers 408)."""


class Body:
    """``wsgi.input``: the body's bytes as the event loop receives them, read by the
    application's thread, which waits for them."""

    def __init__(self, protocol: LedgerProtocol) -> None:
        self._protocol = protocol
        self._chunks = bytearray()
        self._cond = threading.Condition()
        self.complete = False
        self.broken = False
        self.expect_continue = False  # the client waits for 100 Continue before sending it

    # The event loop's side.
    def feed(self, data: bytes) -> int:
        with self._cond:
            self._chunks += data
            self._cond.notify_all()
            return len(self._chunks)

    def finish(self, broken: bool = False) -> None:
        with self._cond:
            self.complete = True
            self.broken = self.broken or broken
            self._cond.notify_all()

    # The application's side.
    def read(self, size: int | None = -1) -> bytes:
        protocol = self._protocol
        with self._cond:
            if self.expect_continue:
                self.expect_continue = False
                protocol.threadsafe(protocol.send_continue)
            while not self.complete and (size is None or size < 0 or len(self._chunks) < size):
                protocol.threadsafe(protocol.resume)
                had = len(self._chunks)
                if not self._cond.wait(BODY_TIMEOUT_S) and len(self._chunks) == had:
                    self.complete = self.broken = True
                    protocol.threadsafe(protocol.body_timed_out)
                    raise BodyTimeout(f"no byte of the body came for {BODY_TIMEOUT_S:.0f} s")
            if self.broken:
                raise BrokenBody("the body's framing is invalid or it ended early")
            if size is None or size < 0 or size >= len(self._chunks):
                data = bytes(self._chunks)
                self._chunks.clear()
            else:
                data = bytes(self._chunks[:size])
                del self._chunks[:size]
        if protocol.paused:
            protocol.threadsafe(protocol.resume)
        return data

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)  # the application never reads lines of a body

    def __iter__(self) -> Any:
        yield self.read()


class Exchange:
    """One request and its answer: what the parser saw, and what the application said."""

    __slots__ = (
        "answered",
        "body",
        "head_seen",
        "header_bytes",
        "headers",
        "keep_alive",
        "method",
        "started",
        "url",
        "version",
    )

    def __init__(self, protocol: LedgerProtocol) -> None:
        self.method = ""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.version = "1.1"
        self.keep_alive = True
        self.body = Body(protocol)
        self.started = False
        self.answered = False
        self.head_seen = 0


class _Date:
    """The Date header (RFC 9110 §6.6.1), made once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._value = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
            self._second = now
        return self._value


_DATE = _Date()


class LedgerProtocol(asyncio.Protocol):
    """One client connection, made by uvicorn's server with uvicorn's protocol arguments.

    ``closing``: no request after those already parsed is started (a refusal, bad framing, the
    client's end of input, the server stopping); ``ignoring``: nothing more is read at all
    (the framing can no longer be trusted); ``refusal``: the problem answered once the requests
    before it are, then the connection closes."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: Any = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        assert _FRONT is not None, "the lifespan starts the application before any connection"
        self.front: Front = _FRONT
        self.loop = _loop or asyncio.get_event_loop()
        self.connections = server_state.connections
        self.server_state = server_state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.parsing: Exchange | None = None  # the request whose bytes the parser is in
        self.running: Exchange | None = None  # the request the application is answering
        self.waiting: deque[Exchange] = deque()  # pipelined requests, in order
        self.paused = False
        self.writing_paused = False  # the client does not read its answers: start no more
        self.closing = False
        self.ignoring = False
        self.eof = False  # the client half-closed: it reads, it sends nothing more
        self.refusal: Refused | None = None
        self.draining: Exchange | None = None
        self.drained = 0
        self.keep_alive_timer: asyncio.TimerHandle | None = None
        self.head_timer: asyncio.TimerHandle | None = None

    # --- asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.local = transport.get_extra_info("sockname") or ("", 0)
        self._arm_keep_alive()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = self.ignoring = True
        self._disarm_keep_alive()
        self._disarm_head()
        for exchange in (self.parsing, self.running, *self.waiting):
            if exchange is not None and not exchange.body.complete:
                exchange.body.finish(broken=True)
        self.waiting.clear()

    def eof_received(self) -> bool:
        """The client sent all it will (a half-close, SHUT_WR): the requests it sent whole are
        still answered, then the connection closes. A body cut short is broken. Returns
        whether the transport stays open (for the answers still to write)."""
        self.closing = self.eof = True
        exchange, self.parsing = self.parsing, None
        self._disarm_head()
        if exchange is not None and exchange.started and not exchange.body.complete:
            exchange.keep_alive = False
            exchange.body.finish(broken=True)
        if self.draining is not None:  # its answer is out; nothing more will come to drop
            self.draining = None
            self.transport.close()
        return self.running is not None or bool(self.waiting)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.running is None and self.waiting and not self.transport.is_closing():
            self._next()

    def data_received(self, data: bytes) -> None:
        if self.ignoring:
            return
        self._disarm_keep_alive()
        # Bytes count against a head only when its request began in an earlier read; a read
        # holding several whole requests counts nothing against the last one's head.
        before = self.parsing if self.parsing is not None and not self.parsing.started else None
        try:
            self.parser.feed_data(data)
            if before is not None and before is self.parsing and not before.started:
                before.head_seen += len(data)
                if before.head_seen > MAX_HEAD_BYTES:
                    too_long = self._line_bytes(before) > MAX_REQUEST_LINE_BYTES
                    raise _TOO_LONG if too_long else _TOO_MANY
        except httptools.HttpParserUpgrade:
            self._refuse(_malformed("protocol upgrades are not served"))
        except Refused as refused:
            self._refuse(refused)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)

    def _parse_failed(self, exc: Exception) -> None:
        """Bad bytes: a request whose head was parsed learns that its body is broken (the
        application answers; the connection closes after it); else 400 and close."""
        cause = exc.__context__ if isinstance(exc.__context__, Refused) else None
        if isinstance(cause, Refused):
            self._refuse(cause)
            return
        exchange = self.parsing
        if exchange is not None and exchange.started:
            # Read nothing more; requests already parsed are still answered, then it closes.
            self.closing = self.ignoring = True
            self.parsing = None
            exchange.keep_alive = False
            exchange.body.finish(broken=True)
            if self.draining is exchange:  # its answer is out already: nothing more to say
                self.transport.close()
            return
        self._refuse(_malformed(f"the request cannot be parsed: {exc}"))

    def _refuse(self, refused: Refused) -> None:
        """Answer ``refused`` and close; after the answers to the requests before it, if any
        are still to be answered (answers go out in order)."""
        log.warning("refused request from %s: %s", self.peer[0] if self.peer else "", refused)
        self.closing = self.ignoring = True
        self._disarm_head()
        if self.parsing is not None and not self.parsing.started:
            self.parsing = None
        if self.running is not None or self.waiting or self.draining is not None:
            self.refusal = refused
            return
        self._send_refusal(refused)

    def _send_refusal(self, refused: Refused) -> None:
        body = problem_body(refused.status, refused.slug, refused.title, refused.detail).encode()
        head = (
            f"HTTP/1.1 {refused.status} {_REASONS[refused.status]}\r\n"
            f"content-type: {PROBLEM_TYPE}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n"
        ).encode()
        self.transport.write(head + _DATE.header() + b"\r\n" + body)
        self._close_gently()

    def _close_gently(self) -> None:
        """Close once what was written is sent, reading and dropping what still comes for a
        moment (a lingering close): closing with unread bytes would send a reset, which can
        destroy the answer before the client reads it."""
        if self.transport.is_closing():
            return
        if self.eof or not self.transport.can_write_eof():
            self.transport.close()  # what was written is still sent
            return
        self.closing = self.ignoring = True
        self.transport.write_eof()
        self.resume(force=True)
        self.loop.call_later(DRAIN_TIMEOUT_S, self.transport.close)

    @staticmethod
    def _line_bytes(exchange: Exchange) -> int:
        return len(exchange.method or "GET") + 1 + len(exchange.url) + _HTTP_VERSION_BYTES

    # --- llhttp's callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = Exchange(self)
        self._disarm_head()
        self.head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        if not exchange.method:
            exchange.method = self.parser.get_method().decode("ascii", "replace")
        exchange.url += url
        if self._line_bytes(exchange) > MAX_REQUEST_LINE_BYTES:
            raise _TOO_LONG

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        exchange.headers.append((name, value))
        exchange.header_bytes += len(name) + len(value) + 4  # "name: value" CRLF
        if exchange.header_bytes > MAX_HEADER_BYTES or len(exchange.headers) > MAX_HEADER_FIELDS:
            raise _TOO_MANY

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        self._disarm_head()
        version = self.parser.get_http_version()
        if version not in _VERSIONS:
            raise _malformed(f"HTTP/{version} is not served")
        if self._line_bytes(exchange) > MAX_REQUEST_LINE_BYTES:
            raise _TOO_LONG
        if not exchange.url or exchange.url.translate(None, _NOT_IN_TARGET) != exchange.url:
            raise _malformed("the request target holds bytes that are not visible ASCII")
        if self.parser.should_upgrade():
            raise _malformed("protocol upgrades are not served")
        _check_head(exchange.headers, version)
        exchange.version = version
        exchange.keep_alive = self.parser.should_keep_alive() and _framing_ok(exchange)
        exchange.started = True
        if self.closing:  # refused or stopping: nothing more is answered on this connection
            return
        if self.running is None and not self.waiting and not self.writing_paused:
            self._start(exchange)
        else:
            self.waiting.append(exchange)
            self.pause()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        if exchange is self.draining:
            self.drained += len(body)
            if self.drained > MAX_DRAIN_BYTES:
                self._close_gently()
            return
        if exchange.body.feed(body) >= BODY_HIGH_WATER_BYTES:
            self.pause()

    def on_message_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        self.parsing = None
        exchange.body.finish()
        if exchange is self.draining:
            self.draining = None
            self._after(exchange)

    # --- timeouts ----------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self.head_timer = None
        exchange = self.parsing
        if exchange is not None and not exchange.started and not self.transport.is_closing():
            self._refuse(
                Refused(
                    408,
                    "request-timeout",
                    "Request too slow",
                    f"the request's head was not whole {HEAD_TIMEOUT_S:.0f} s after it began",
                )
            )

    def _disarm_head(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def body_timed_out(self) -> None:
        """A body stalled (``Body.read`` gave up): its framing is lost, read nothing more."""
        self.closing = self.ignoring = True
        if self.running is not None:
            self.running.keep_alive = False

    # --- the application ---------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        self.running = exchange
        try:
            environ = self.front.environ(exchange, self.peer, self.local)
        except Refused as refused:
            self.running = None
            self.waiting.clear()  # behind the refused one: not answered
            self._refuse(refused)
            return
        pool = self.front.reads if exchange.method in _READS else self.front.pool
        pool.submit(self._call, exchange, environ)

    def _call(self, exchange: Exchange, environ: dict[str, Any]) -> None:
        """On a pool thread: the application's whole answer, then back to the loop."""
        try:
            wire, keep_alive = self.front.answer(exchange, environ)
        except BaseException:  # a bug in the application: the log says which
            log.exception("the application failed on %s %s", exchange.method, exchange.url[:200])
            body = problem_body(
                500, "internal-error", "Internal error", "the server could not answer this request"
            ).encode()
            wire = (
                f"HTTP/1.1 500 Internal Server Error\r\ncontent-type: {PROBLEM_TYPE}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            ).encode() + body
            keep_alive = False
        self.threadsafe(self._answered, exchange, wire, keep_alive)

    def threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
            self.loop.call_soon_threadsafe(callback, *args)

    def _answered(self, exchange: Exchange, wire: bytes, keep_alive: bool) -> None:
        exchange.answered = True
        self.running = None
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.transport.write(wire)
        # The answer said whether the connection stays: it decided with what it knew then.
        exchange.keep_alive = exchange.keep_alive and keep_alive
        if not exchange.body.complete:
            # The application answered before the body's end: read the rest and drop it.
            if exchange.body.broken or self.parsing is not exchange:
                self._close_gently()
                return
            self.draining = exchange
            self.closing = True  # the answer said it closes: start nothing after it
            self.resume()
            self.loop.call_later(DRAIN_TIMEOUT_S, self.transport.close)
            return
        self._after(exchange)

    def _after(self, exchange: Exchange) -> None:
        if self.waiting and exchange.keep_alive:
            if not self.writing_paused:
                self._next()
            return
        if not exchange.keep_alive or self.closing:
            if self.refusal is not None and exchange.keep_alive:
                self._send_refusal(self.refusal)
            else:
                self._close_gently()
            return
        self.resume()
        self._arm_keep_alive()

    def _next(self) -> None:
        self._start(self.waiting.popleft())
        if not self.waiting:
            self.resume()

    # --- flow ------------------------------------------------------------------------------

    def send_continue(self) -> None:
        """The application began reading a body the client holds back until asked."""
        exchange = self.running
        if exchange is not None and not exchange.body.complete and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def pause(self) -> None:
        if not self.paused and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume(self, force: bool = False) -> None:
        if self.paused and not self.transport.is_closing() and (force or not self.waiting):
            self.paused = False
            self.transport.resume_reading()

    def _arm_keep_alive(self) -> None:
        self._disarm_keep_alive()
        self.keep_alive_timer = self.loop.call_later(KEEP_ALIVE_S, self._idle)

    def _disarm_keep_alive(self) -> None:
        if self.keep_alive_timer is not None:
            self.keep_alive_timer.cancel()
            self.keep_alive_timer = None

    def _idle(self) -> None:
        if self.running is None and self.parsing is None:
            self.transport.close()

    def shutdown(self) -> None:
        """uvicorn's graceful stop: close now if idle, else once the request in flight (its
        body read to its end) is answered, saying ``connection: close``; requests pipelined
        behind it are not started (the client sends them again on a new connection)."""
        self.closing = True
        self.waiting.clear()
        self._disarm_head()
        if self.running is None and self.draining is None:
            self.transport.close()
        elif self.running is not None:
            self.running.keep_alive = False


def _check_head(headers: list[tuple[bytes, bytes]], version: str) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request names its host in exactly one Host header (and no
    request in two); §6.1: a transfer coding other than chunked is not understood here (501),
    where reading its bytes as the body would hand the application gzip as JSON."""
    hosts, codings = 0, []
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            hosts += 1
        elif lower == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise _malformed("an HTTP/1.1 request names its host in one Host header")
    if any(coding != b"chunked" for coding in codings):
        raise Refused(
            501,
            "not-implemented",
            "Transfer coding not served",
            "the body's transfer coding is not chunked: only chunked bodies are read",
        )


def _framing_ok(exchange: Exchange) -> bool:
    """Whether the connection may carry another request after this one: an HTTP/1.0 request
    with a Transfer-Encoding was framed in a way 1.0 did not have (RFC 9112 §6.1)."""
    if exchange.version != "1.0":
        return True
    return not any(name.lower() == b"transfer-encoding" for name, _ in exchange.headers)


class Front:
    """The WSGI application and the threads it runs on, one per process: ``threads`` for
    commands, which mostly wait for the writer's transaction (the more in flight, the larger
    its batches), and a quarter as many for reads, which mostly hold the interpreter lock (more
    threads than cores only pass it to each other: with ``wrk -c16`` on 2 cores, reads ran at
    807/s on 16 threads, 988/s on 8 and 1,071/s on 4; redemptions at 470/s on 16, 330/s on 4)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], threads: int, port: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="command")
        self.reads = ThreadPoolExecutor(
            max(MIN_READ_THREADS, threads // 4), thread_name_prefix="read"
        )
        self.port = str(port)

    def environ(
        self, exchange: Exchange, peer: tuple[str, int], local: tuple[str, int]
    ) -> dict[str, Any]:
        """PEP 3333's environ for ``exchange``, as gunicorn made it."""
        try:
            url = httptools.parse_url(exchange.url)
        except httptools.HttpParserInvalidURLError:
            raise _malformed("the request target is not a URL") from None
        path = url.path or b"/"
        environ: dict[str, Any] = {
            # HEAD is GET without its body (RFC 9110 §9.3.2): the application answers a GET.
            "REQUEST_METHOD": "GET" if exchange.method == "HEAD" else exchange.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": (url.query or b"").decode("latin-1"),
            "RAW_URI": exchange.url.decode("latin-1"),
            "SERVER_NAME": local[0] if local else "",
            "SERVER_PORT": self.port,
            "SERVER_PROTOCOL": _VERSIONS[exchange.version],
            "REMOTE_ADDR": peer[0] if peer else "",
            "REMOTE_PORT": str(peer[1]) if peer else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": exchange.body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for raw_name, raw_value in exchange.headers:
            name = raw_name.decode("latin-1").upper()
            value = raw_value.decode("latin-1")
            if name == "EXPECT":
                # Never to a 1.0 client, which does not know 1xx answers (RFC 9110 §10.1.1).
                expect = value.lower() == "100-continue" and exchange.version == "1.1"
                exchange.body.expect_continue = expect
                continue
            if "_" in name:  # as gunicorn drops them: HTTP_X_ID must not be spoofed by X_ID
                continue
            if name == "CONTENT-TYPE":
                key = "CONTENT_TYPE"
            elif name == "CONTENT-LENGTH":
                key = "CONTENT_LENGTH"
            else:
                key = "HTTP_" + name.replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def answer(self, exchange: Exchange, environ: dict[str, Any]) -> tuple[bytes, bool]:
        """The application's answer on the wire, and whether the connection may stay open."""
        said: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info is not None and said:
                raise exc_info[1].with_traceback(exc_info[2])
            said[:] = [status, headers]
            return _no_write

        chunks = self.app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = said
        # A body not read to its end is read and dropped after the answer, then the connection
        # closes: the answer says so now, since it cannot later.
        keep_alive = exchange.keep_alive and exchange.body.complete and not exchange.body.broken
        if exchange.method == "OPTIONS" and status.startswith("200") and not body:
            dropped = ("content-type", "content-length")
            status, headers = "204 No Content", [h for h in headers if h[0].lower() not in dropped]
        lines = [f"{_VERSIONS['1.1']} {status}\r\n"]
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                has_length = True
            elif lower == "connection" and "close" in value.lower():
                keep_alive = False
                continue
            lines.append(f"{name}: {value}\r\n")
        code = int(status[:3])
        if not has_length and code not in (204, 304) and not 100 <= code < 200:
            lines.append(f"content-length: {len(body)}\r\n")
        if not keep_alive:
            lines.append("connection: close\r\n")
        elif exchange.version == "1.0":  # 1.0 closes unless told otherwise (RFC 9112 §9.3)
            lines.append("connection: keep-alive\r\n")
        head = "".join(lines).encode("latin-1") + _DATE.header() + b"\r\n"
        if exchange.method == "HEAD":
            body = b""
        return head + body, keep_alive

    def close(self) -> None:
        """Once the server stopped serving: requests still running get ``CLOSE_WAIT_S`` to end
        (an audit report or a trace of a busy statement line can run for minutes, and a stop
        must not wait for it; its client loses the answer, as the connection is closed), then
        the application closes, its writer committing what it holds."""
        deadline = time.monotonic() + CLOSE_WAIT_S
        pools = (self.reads, self.pool)
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        # ThreadPoolExecutor.shutdown has no timeout: join its threads (``_threads``) instead.
        running = [t for pool in pools for t in list(getattr(pool, "_threads", ()))]
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = sum(t.is_alive() for t in running)
        if left:
            log.warning("closing the application with %d requests still running", left)
        close = getattr(self.app, "close", None)
        if close is not None:
            close()


def _no_write(data: bytes) -> None:
    raise RuntimeError("the application must return its body, not write it")


_FRONT: Front | None = None
THREADS_ENV = "LEDGER_SERVE_THREADS"
PORT_ENV = "LEDGER_SERVE_PORT"


def _open_front() -> Front:
    from api.app import create_app
    from api.observability import configure_logging
    from ledger.settings import Settings

    configure_logging(json_lines=True)
    threads = int(os.environ.get(THREADS_ENV, "16"))
    return Front(create_app(Settings.from_env()), threads, int(os.environ.get(PORT_ENV, "0")))


def _close_front() -> None:
    global _FRONT
    front, _FRONT = _FRONT, None
    if front is not None:
        front.close()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def lifespan(scope: Any, receive: Any, send: Any) -> None:
    """What uvicorn runs in each worker process: the ledger's application is made when the
    process starts (its writer's threads start there) and closed when it stops, after the last
    connection (the writer commits what it holds). LedgerProtocol serves the requests."""
    global _FRONT
    if scope["type"] != "lifespan":
        raise RuntimeError("requests are served by LedgerProtocol, not through ASGI")
    loop = asyncio.get_running_loop()
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            memory_probe.install()  # on the loop's thread: the main one, where signals go
            try:
                _FRONT = await loop.run_in_executor(None, _open_front)
            except Exception as exc:
                log.exception("the application could not start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await loop.run_in_executor(None, _close_front)
            await send({"type": "lifespan.shutdown.complete"})
            return
