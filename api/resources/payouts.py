"""Payouts: treasury pays a payee what one source owes it, with four eyes (API_CONTRACT.md §4c)."""

from __future__ import annotations

import datetime as dt

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
from treasury import Payment, payment_file_csv, payment_file_pain001

STATUSES = (CREATED, APPROVED, SETTLED, RETURNED, CANCELLED)
MAX_PAYMENT_FILE = 10_000  # payouts in one payment file


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


class PaymentFile(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Approved payouts not yet settled, for the bank: CSV, or pain.001.001.09."""
        fmt = output_format(req, ("csv", "pain.001"))
        self.consistent(req, resp)
        rows = self.reader.store.unsettled_payouts(MAX_PAYMENT_FILE)
        payments = [
            Payment(
                end_to_end_id=r["end_to_end_id"],
                payee_id=r["payee_id"],
                payee_name=r["payee_name"],
                bank_account=r["bank_account"],
                amount_fen=int(r["amount_fen"]),
            )
            for r in rows
        ]
        if fmt == "csv":
            resp.content_type = "text/csv; charset=utf-8"
            resp.data = payment_file_csv(payments)
            return
        if not payments:
            raise ValidationError("no approved payout is waiting to be paid")
        settings = self.ledger.settings
        now = dt.datetime.now(dt.UTC)
        resp.content_type = "application/xml"
        resp.data = payment_file_pain001(
            payments,
            debtor_name=settings.treasury_name,
            debtor_account=settings.treasury_account,
            debtor_agent_bic_or_id=settings.treasury_agent,
            message_id=f"VL-{now:%Y%m%d%H%M%S}-{len(payments)}",
            created_at=now,
            requested_execution_date=self.ledger.today(),
        )
