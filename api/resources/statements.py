"""Bank statements and reconciliation (API_CONTRACT.md §4c): import, the report of a statement,
confirming a line, and the queue of what is not matched."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any
from uuid import UUID

import falcon

from api.auth import actor_of
from api.body import parse_body, read_file
from api.reconcile import import_file
from api.resources.base import (
    Resource,
    output_format,
    page_params,
    run_command,
    write_csv,
    write_json,
)
from ledger.application import china_today
from ledger.errors import NotFound
from ledger.validate import check_int_text, check_uuid
from treasury.statements import MAX_STATEMENT_BYTES

LINE_FIELDS = [
    "line",
    "booking_date",
    "value_date",
    "amount_fen",
    "currency",
    "credit_debit",
    "reversal",
    "end_to_end_id",
    "counterparty_account",
    "counterparty_name",
    "reference",
    "status",
    "payout_ids",
    "reason",
]
MAX_UNMATCHED = 500


class Statements(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The body is the file (camt.053 as application/xml, or text/csv): 201 for a new
        import, 200 for the same file again (nothing changes)."""
        data = read_file(req, MAX_STATEMENT_BYTES)
        self.reader.at_least(None)  # the approved payouts the views list are all there are
        req.context.body = {"file_sha256": hashlib.sha256(data).hexdigest()}
        run_command(
            req,
            resp,
            lambda idem: import_file(
                self.ledger,
                self.reader.store,
                data,
                req.content_type or "",
                actor=actor_of(req),
                idempotency=idem,
            ),
            _imported,
            lambda answer: 200 if answer.get("replayed") else 201,
        )


def _imported(answer: dict[str, Any]) -> dict[str, Any]:
    """The import's answer on the wire: whether it was the same file again is its status."""
    return {k: v for k, v in answer.items() if k != "replayed"}


def line_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        **{f: r[f] for f in LINE_FIELDS if f not in ("reversal", "payout_ids")},
        "reversal": bool(r["reversal"]),
        "payout_ids": [p for p in str(r["payout_ids"]).split(",") if p],
    }


class Statement(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        statement_id = str(check_uuid(id, "statement"))
        fmt = output_format(req, ("json", "csv"))
        after, limit = page_params(req)
        self.consistent(req, resp)
        row = self.reader.store.statement(statement_id)
        if row is None:
            raise NotFound(f"statement {statement_id} not found")
        lines = [line_row(r) for r in self.reader.store.bank_lines(statement_id, after, limit)]
        next_after = lines[-1]["line"] if len(lines) == limit else None
        if fmt == "csv":
            cells = [{**line, "payout_ids": " ".join(line["payout_ids"])} for line in lines]
            write_csv(resp, cells, LINE_FIELDS, next_after)
            return
        write_json(resp, {**report(row), "lines": lines, "next_after": next_after})


def report(row: dict[str, Any]) -> dict[str, Any]:
    summary = json.loads(row["summary"])
    return {
        "id": row["statement_id"],
        **summary,
        "line_count": row["line_count"],
        **{k: row[k] for k in ("matched", "suggested", "unmatched", "ignored")},
        "imported_by": row["imported_by"],
        "imported_at": row["imported_at"],
    }


class ConfirmLine(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str, line: str) -> None:
        statement_id = str(check_uuid(id, "statement"))
        number = check_int_text(line, "line", 1, 10**9)
        parse_body(req, "ConfirmLine")
        self.reader.at_least(None)
        key = self.reader.store.line_bank_line_id(statement_id, number)
        if not key:
            raise NotFound(f"line {number} of statement {statement_id} not found")
        self.command(req, resp, "ConfirmLine", self.ledger.confirm_bank_line, dict, 200, UUID(key))


class Unmatched(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """What treasury must look at, oldest first, with its age in days (China time)."""
        _, limit = page_params(req)
        limit = min(limit, MAX_UNMATCHED)
        self.consistent(req, resp)
        today = china_today()
        store = self.reader.store
        lines = [
            {
                "statement_id": r["statement_id"],
                **line_row(r),
                "age_days": _age_days(today, r["booking_date"]),
            }
            for r in store.unmatched_lines(limit)
        ]
        payouts = [
            {
                "id": r["payout_id"],
                "payee_id": r["payee_id"],
                "source_id": r["source_id"],
                "amount_fen": r["amount_fen"],
                "end_to_end_id": r["end_to_end_id"],
                "bank_account": r["bank_account"],
                "approved_at": r["approved_at"],
                "age_days": _age_days(today, r["approved_at"][:10] if r["approved_at"] else None),
            }
            for r in store.unsettled_payouts(limit)
        ]
        write_json(resp, {"lines": lines, "payouts": payouts})


def _age_days(today: dt.date, day: str | None) -> int | None:
    return None if not day else (today - dt.date.fromisoformat(day[:10])).days
