"""What every resource shares: the ledger, running a command with its idempotency key, and
writing JSON responses with the log position of the command's events."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Hashable
from typing import Any

import falcon

from api.answers import AnswerCache, AnsweredFromCache, answer_key
from api.auth import actor_of, principal_of
from api.body import idempotency_key, parse_body, request_digest
from api.problems import PROBLEM_TYPE, problem_body
from api.schemas import RESPONSES
from audit.csv_cells import csv_row, csv_rows
from ledger.application import VoucherLedger, china_today
from ledger.errors import Refused, ValidationError
from ledger.idempotency import Idempotency, Replay
from ledger.validate import check_int_text
from projections.reader import ViewReader
from projections.store import MAX_PAGE

Body = dict[str, Any]
MAX_AS_OF_LEN = 40
DEFAULT_PAGE = 100
MAX_POSITION = 10**18 - 1
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def dumps(body: Body) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class Resource:
    def __init__(self, ledger: VoucherLedger, reader: ViewReader | None = None) -> None:
        self.ledger = ledger
        self._reader = reader

    @property
    def reader(self) -> ViewReader:
        assert self._reader is not None, "this resource reads no views"
        return self._reader

    def consistent(self, req: falcon.Request, resp: falcon.Response) -> int:
        """Wait for the views (``?min_position=``, else the log's head) and say in
        ``X-Ledger-Position`` which position the answer includes. A GET whose answer at that
        position is kept (api/answers.py) is answered with it here: ``AnsweredFromCache``."""
        position = self.reader.at_least(int_param(req, "min_position", 0, MAX_POSITION))
        resp.set_header("X-Ledger-Position", str(position))
        self.kept_answer(req, position)
        return position

    def kept_answer(self, req: falcon.Request, version: Hashable) -> None:
        """A GET answered before at this ``version`` of what it reads (the views' position, an
        aggregate's version) is answered again: ``AnsweredFromCache``. Else the answer written
        is kept under it (api/answers.py)."""
        answers: AnswerCache | None = req.context.get("answers")
        if answers is not None and req.method == "GET":
            p = principal_of(req)
            today = f"{self.ledger.today()}/{china_today()}"
            key = answer_key(req, (p.id, p.role, p.institution_id), version, today)
            answer = answers.get(key)
            if answer is not None:
                raise AnsweredFromCache(answer)
            req.context.answer_key = key  # AnswerCacheMiddleware keeps what is written

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


Status = int | Callable[[Any], int]  # a command's success status, or what decides it


def _status_of(value: Any, status: Status) -> int:
    return status(value) if callable(status) else status


def run_command(
    req: falcon.Request,
    resp: falcon.Response,
    call: Callable[[Idempotency | None], tuple[Any, int | None]],
    render: Callable[[Any], Body],
    status: Status,
) -> Any:
    """Run ``call`` with the request's idempotency key (if any) and write its response: the
    first response under a key is stored with the command's events and replayed after.
    ``status`` may depend on the result (a statement imported again is 200, not 201)."""
    key = idempotency_key(req)
    idem = None
    if key is not None:
        idem = Idempotency(
            scope=actor_of(req),
            key=key,
            request_sha256=request_digest(req, req.context.body),
            render=lambda value: stored_answer(value, render, status),
        )
    value, position = call(idem)
    if isinstance(value, Replay):
        resp.status = falcon.code_to_http_status(value.status)
        resp.content_type = falcon.MEDIA_JSON if value.status < 400 else PROBLEM_TYPE
        resp.text = value.body
        resp.set_header("Idempotent-Replayed", "true")
    else:
        write_json(resp, render(value), _status_of(value, status))
    if position is not None:
        resp.set_header("X-Ledger-Position", str(position))
    return value


def stored_answer(value: Any, render: Callable[[Any], Body], status: Status) -> tuple[int, str]:
    """What is kept under an idempotency key: the answer to the first request, a business
    refusal's problem document included."""
    if isinstance(value, Refused):
        error = value.error
        return error.http_status, problem_body(
            error.http_status, error.slug, error.title, error.detail
        )
    return _status_of(value, status), dumps(render(value))


def output_format(req: falcon.Request, allowed: tuple[str, ...]) -> str:
    """``?format=``, one of ``allowed`` (the first when absent)."""
    fmt = req.get_param("format") or allowed[0]
    if fmt not in allowed:
        raise ValidationError(f"format must be one of {', '.join(allowed)}")
    return fmt


def int_param(req: falcon.Request, name: str, lowest: int, highest: int) -> int | None:
    """An integer query parameter within [lowest, highest], or None when absent."""
    raw = req.get_param(name)
    return None if raw is None else check_int_text(raw, name, lowest, highest)


def page_params(req: falcon.Request) -> tuple[int, int]:
    """``?after=`` (a cursor position, default 0) and ``?limit=`` (1-500, default 100)."""
    after = int_param(req, "after", 0, MAX_POSITION) or 0
    limit = int_param(req, "limit", 1, MAX_PAGE)
    return after, DEFAULT_PAGE if limit is None else limit


def paged(items: list[Body], limit: int) -> Body:
    """A page and the cursor of the next: the position of its last item, or null at the end."""
    next_after = items[-1]["position"] if len(items) == limit else None
    return {"items": items, "next_after": next_after}


def date_param(req: falcon.Request, name: str) -> str | None:
    """A date query parameter YYYY-MM-DD, or None when absent."""
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        if not _DATE_RE.fullmatch(raw):
            raise ValueError
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValidationError(f"{name} must be a date YYYY-MM-DD") from None


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


def columns(page_schema: str) -> list[str]:
    """The item fields of a page schema, in order: the CSV header."""
    return list(RESPONSES[page_schema]["properties"]["items"]["items"]["properties"])


def write_csv(
    resp: falcon.Response, items: list[dict[str, Any]], fields: list[str], next_after: int | None
) -> None:
    """Items as CSV with a header row (also when empty); the next page's cursor goes in
    ``X-Next-After``. Cells go through ``audit.csv_cells`` (no formula reaches a spreadsheet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_row(fields))
    writer.writerows(csv_rows(items, fields))
    resp.content_type = "text/csv; charset=utf-8"
    resp.text = out.getvalue()
    if next_after is not None:
        resp.set_header("X-Next-After", str(next_after))
