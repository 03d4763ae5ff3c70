"""Payables: what each funding source owes each provider, redemption by redemption (treasury)."""

from __future__ import annotations

import csv
import io
from typing import Any

import falcon

from api import render
from api.auth import principal_of, require_own
from api.resources.base import Resource, int_param, page_params, paged, write_json
from api.schemas import RESPONSES
from ledger.application import check_key
from ledger.errors import ValidationError
from ledger.uscc import check_uscc
from ledger.validate import MAX_FISCAL_YEAR, MIN_FISCAL_YEAR
from projections.store import PayableFilter


class Payables(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fmt = req.get_param("format") or "json"
        if fmt not in ("json", "csv"):
            raise ValidationError("format must be json or csv")
        source = req.get_param("source_id")
        provider = req.get_param("provider_id")
        if provider is not None:
            provider = check_uscc(provider, "provider_id")
        principal = principal_of(req)
        if principal.role == "provider":  # a provider sees what it is owed, nothing else
            provider = provider or principal.institution_id
            require_own(req, provider or "")
        after, limit = page_params(req)
        filters = PayableFilter(
            source_id=None if source is None else check_key(source, "source_id"),
            provider_id=provider,
            fiscal_year=int_param(req, "fiscal_year", MIN_FISCAL_YEAR, MAX_FISCAL_YEAR),
            after=after,
            limit=limit,
        )
        self.consistent(req, resp)
        body = paged([render.payable(r) for r in self.reader.store.payables(filters)], limit)
        if fmt == "csv":
            write_csv(resp, body["items"], columns("PayablePage"), body["next_after"])
        else:
            write_json(resp, body)


def columns(page_schema: str) -> list[str]:
    """The item fields of a page schema, in order: the CSV header."""
    return list(RESPONSES[page_schema]["properties"]["items"]["items"]["properties"])


def write_csv(
    resp: falcon.Response, items: list[dict[str, Any]], fields: list[str], next_after: int | None
) -> None:
    """Items as CSV with a header row (also when empty); the next page's cursor goes in
    ``X-Next-After``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(items)
    resp.content_type = "text/csv; charset=utf-8"
    resp.text = out.getvalue()
    if next_after is not None:
        resp.set_header("X-Next-After", str(next_after))
