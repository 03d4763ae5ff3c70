"""Payouts: treasury pays a payee what one source owes it, with four eyes (API_CONTRACT.md §4c)."""

from __future__ import annotations

import falcon

from api import render
from api.auth import require_own
from api.body import parse_body
from api.resources.base import (
    Resource,
    columns,
    output_format,
    page_params,
    paged,
    write_csv,
    write_json,
)
from ledger.application import MAX_PAYOUT_CANDIDATES, check_key
from ledger.errors import ValidationError
from ledger.payouts import APPROVED, CANCELLED, CREATED, RETURNED, SETTLED
from ledger.uscc import check_uscc
from projections.store import PayoutFilter

STATUSES = (CREATED, APPROVED, SETTLED, RETURNED, CANCELLED)


class Payouts(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Gathers, from the views brought up to the log's head, every line the payee is owed
        from the source that no live payout holds; the ledger checks each line again."""
        body = parse_body(req, "NewPayout")
        payee_id = check_uscc(body["payee_id"], "payee_id")
        source_id = check_key(body["source_id"], "source_id")
        self.reader.at_least(None)
        rows = self.reader.store.outstanding_payables(payee_id, source_id, MAX_PAYOUT_CANDIDATES)
        candidates = [(r["redemption_id"], r["kind"]) for r in rows]
        self.command(
            req,
            resp,
            "NewPayout",
            self.ledger.create_payout,
            render.payout,
            201,
            candidates=candidates,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fmt = output_format(req, ("json", "csv"))
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        payee = req.get_param("payee_id")
        after, limit = page_params(req)
        filters = PayoutFilter(
            status=status,
            payee_id=None if payee is None else check_uscc(payee, "payee_id"),
            after=after,
            limit=limit,
        )
        self.consistent(req, resp)
        items = [render.payout_row(r) for r in self.reader.store.payouts(filters)]
        page = paged(items, limit)
        if fmt == "csv":
            write_csv(resp, items, columns("PayoutPage"), page["next_after"])
        else:
            write_json(resp, page)


class Payout(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        view = self.ledger.payout(id)
        require_own(req, view.payee_id, f"payout {view.id}")
        write_json(resp, render.payout(view))


class Approve(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(req, resp, "Empty", self.ledger.approve_payout, render.payout, 200, id)


class Cancel(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(req, resp, "Reason", self.ledger.cancel_payout, render.payout, 200, id)
