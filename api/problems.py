"""The one place that turns errors into application/problem+json (RFC 9457) with a slug."""

from __future__ import annotations

import json
from typing import Any

import falcon
import structlog

from ledger.errors import LedgerError

PROBLEM_BASE = "https://voucher-ledger.invalid/problems/"
PROBLEM_TYPE = "application/problem+json"
log = structlog.get_logger("api")


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


def handle_ledger_error(
    req: falcon.Request, resp: falcon.Response, ex: LedgerError, params: dict[str, Any]
) -> None:
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
    """A bug or an outage, never bad input: log it with the request id, tell the client little."""
    log.exception("unhandled error", request_id=getattr(req.context, "request_id", None))
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
