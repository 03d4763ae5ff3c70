"""Payables: what each funding source owes each provider, redemption by redemption (treasury)."""

from __future__ import annotations

import falcon

from api import render
from api.auth import principal_of, require_own
from api.resources.base import (
    Resource,
    columns,
    int_param,
    output_format,
    page_params,
    write_csv,
    write_json,
)
from ledger.application import check_key
from ledger.uscc import check_uscc
from ledger.validate import MAX_FISCAL_YEAR, MIN_FISCAL_YEAR
from projections.store import PayableFilter


class Payables(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fmt = output_format(req, ("json", "csv"))
        source = req.get_param("source_id")
        provider = req.get_param("provider_id")
        if provider is not None:
            provider = check_uscc(provider, "provider_id")
        principal = principal_of(req)
        if principal.role == "provider":  # a provider sees what it is owed, nothing else
            provider = provider or principal.institution_id
            require_own(req, provider or "", f"institution {provider}")
        after, limit = page_params(req)
        filters = PayableFilter(
            source_id=None if source is None else check_key(source, "source_id"),
            provider_id=provider,
            fiscal_year=int_param(req, "fiscal_year", MIN_FISCAL_YEAR, MAX_FISCAL_YEAR),
            after=after,
            limit=limit,
        )
        self.consistent(req, resp)
        rows, next_after = self.reader.store.payables(filters)
        items = [render.payable(r) for r in rows]
        if fmt == "csv":
            write_csv(resp, items, columns("PayablePage"), next_after)
        else:
            write_json(resp, {"items": items, "next_after": next_after})
