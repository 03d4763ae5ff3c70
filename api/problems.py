"""The one place that turns errors into application/problem+json (RFC 9457) with a slug.

It is also the one place that knows which of the storage libraries' exceptions mean "the
database cannot be reached or cannot take writes": those are answered 503
``database-unavailable``, never 500. Every 503 carries ``Retry-After`` (seconds)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import eventsourcing.persistence as es
import falcon
import psycopg
import structlog

from ledger.errors import DatabaseUnavailable, LedgerError

PROBLEM_BASE = "https://voucher-ledger.invalid/problems/"
PROBLEM_TYPE = "application/problem+json"
RETRY_AFTER_S = 1  # for a 503 whose error names no pause of its own
MAX_CAUSES = 8  # how far down a chain of ``raise ... from`` to look for the driver's error
log = structlog.get_logger("api")

# psycopg: OperationalError covers a lost or refused connection, a server shutting down or
# starting up, out of connections or disk, lock and statement timeouts, and psycopg_pool's
# PoolTimeout, TooManyRequests and PoolClosed; a read-only server is an InternalError.
_PSYCOPG_UNAVAILABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)
# SQLite says it in the message of an OperationalError (others are bugs: "no such table").
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
)


class HTTPProblem(falcon.HTTPError):
    """An HTTP-level refusal (401, 403, 413, 415, ...) with its slug."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            falcon.code_to_http_status(status), title=title, description=detail, headers=headers
        )
        self.slug = slug


_FALCON_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def problem_body(status: int, slug: str, title: str, detail: str) -> str:
    return json.dumps(
        {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail},
        ensure_ascii=False,
    )


def _respond(resp: falcon.Response, status: int, slug: str, title: str, detail: str) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = PROBLEM_TYPE
    resp.text = problem_body(status, slug, title, detail)
    if status == 503 and resp.get_header("Retry-After") is None:
        resp.set_header("Retry-After", str(RETRY_AFTER_S))


def database_unavailable(ex: BaseException) -> bool:
    """Whether ``ex``, or an error it was raised from, says the database cannot be reached or
    cannot take writes (down, restarting, read-only, full, locked, out of connections)."""
    cause: BaseException | None = ex
    for _ in range(MAX_CAUSES):
        if cause is None:
            return False
        if isinstance(cause, sqlite3.OperationalError):
            return any(text in str(cause).lower() for text in _SQLITE_UNAVAILABLE)
        if isinstance(cause, _PSYCOPG_UNAVAILABLE):
            return True
        if isinstance(cause, (es.OperationalError, es.InterfaceError)) and cause.__cause__ is None:
            return True  # raised by a recorder or a pool itself: a connection, a timeout
        cause = cause.__cause__
    return False


def handle_ledger_error(
    req: falcon.Request, resp: falcon.Response, ex: LedgerError, params: dict[str, Any]
) -> None:
    if ex.http_status == 503:
        resp.set_header("Retry-After", str(getattr(ex, "retry_after_s", RETRY_AFTER_S)))
    _respond(resp, ex.http_status, ex.slug, ex.title, ex.detail)


def handle_http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict[str, Any]
) -> None:
    status = ex.status_code
    slug = getattr(ex, "slug", None) or _FALCON_SLUGS.get(status, f"http-{status}")
    title = ex.title or falcon.code_to_http_status(status)
    _respond(resp, status, slug, str(title), str(ex.description or title))
    if ex.headers:
        resp.set_headers(ex.headers)


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
) -> None:
    """An outage (503, retry) or a bug (500), never bad input: log it with the request id,
    tell the client little."""
    request_id = getattr(req.context, "request_id", None)
    if database_unavailable(ex):
        # One line, no traceback: an outage would otherwise write one per request.
        log.warning("database unavailable", request_id=request_id, error=repr(ex)[:300])
        detail = "the database cannot be reached or cannot take writes; retry"
        handle_ledger_error(req, resp, DatabaseUnavailable(detail), params)
        return
    log.exception("unhandled error", request_id=request_id)
    _respond(
        resp,
        500,
        "internal-error",
        "Internal error",
        f"request {getattr(req.context, 'request_id', '?')} failed; nothing was changed "
        "unless a later read shows it",
    )


def install(app: falcon.App) -> None:  # type: ignore[type-arg]
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(LedgerError, handle_ledger_error)
