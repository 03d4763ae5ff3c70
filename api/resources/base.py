"""What every resource shares: the ledger, running a command with its idempotency key, and
writing JSON responses with the log position of the command's events."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import falcon

from api.auth import actor_of
from api.body import idempotency_key, parse_body, request_digest
from ledger.application import VoucherLedger
from ledger.errors import ValidationError
from ledger.idempotency import Idempotency, Replay

Body = dict[str, Any]
MAX_AS_OF_LEN = 40
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def dumps(body: Body) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class Resource:
    def __init__(self, ledger: VoucherLedger) -> None:
        self.ledger = ledger

    def command(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        schema: str,
        method: Callable[..., tuple[Any, int | None]],
        render: Callable[[Any], Body],
        status: int,
        *args: Any,
        renames: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        """Validate the body against ``schema`` and call ``method(*args, **fields)``: the body's
        fields (some ``renames``d to the ledger's names) plus ``extra``, the actor and the key."""
        body = parse_body(req, schema)
        fields = {(renames or {}).get(k, k): v for k, v in body.items()}
        return run_command(
            req,
            resp,
            lambda idem: method(*args, **fields, **extra, actor=actor_of(req), idempotency=idem),
            render,
            status,
        )


def write_json(resp: falcon.Response, body: Body, status: int = 200) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = dumps(body)


def run_command(
    req: falcon.Request,
    resp: falcon.Response,
    call: Callable[[Idempotency | None], tuple[Any, int | None]],
    render: Callable[[Any], Body],
    status: int,
) -> Any:
    """Run ``call`` with the request's idempotency key (if any) and write its response: the
    first response under a key is stored with the command's events and replayed after."""
    key = idempotency_key(req)
    idem = None
    if key is not None:
        idem = Idempotency(
            scope=actor_of(req),
            key=key,
            request_sha256=request_digest(req, req.context.body),
            render=lambda value: (status, dumps(render(value))),
        )
    value, position = call(idem)
    if isinstance(value, Replay):
        resp.status = falcon.code_to_http_status(value.status)
        resp.content_type = falcon.MEDIA_JSON
        resp.text = value.body
        resp.set_header("Idempotent-Replayed", "true")
    else:
        write_json(resp, render(value), status)
    if position is not None:
        resp.set_header("X-Ledger-Position", str(position))
    return value


def as_of(req: falcon.Request) -> dt.datetime | None:
    """``?as_of=``: an RFC 3339 instant, or a date meaning the end of that day (UTC)."""
    raw = req.get_param("as_of")
    if raw is None:
        return None
    try:
        if _DATE_RE.fullmatch(raw):
            day = dt.date.fromisoformat(raw)
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        if len(raw) > MAX_AS_OF_LEN or not raw.isascii():
            raise ValueError
        instant = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if instant.tzinfo is None:
            raise ValidationError("as_of must carry a time zone (Z or +08:00)")
        return instant.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: before year 1 or after 9999 in UTC
        raise ValidationError("as_of must be an RFC 3339 instant or a date YYYY-MM-DD") from None
