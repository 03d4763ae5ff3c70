"""Vouchers and redemptions."""

from __future__ import annotations

import falcon

from api import render
from api.auth import principal_of, require_own
from api.body import canonical_json, parse_body
from api.resources.base import Resource, as_of, date_param, page_params, paged, write_json
from ledger.application import check_key
from ledger.errors import ValidationError
from ledger.uscc import check_uscc
from ledger.voucher import ACTIVE, EXPIRED, REVOKED, USED_UP
from projections.store import VoucherFilter

STATUSES = (ACTIVE, USED_UP, EXPIRED, REVOKED)


class Vouchers(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of vouchers from the views, in issue order."""
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        holder = req.get_param("holder_id")
        programme = req.get_param("program_id")
        today = self.ledger.today().isoformat()
        after, limit = page_params(req)
        filters = VoucherFilter(
            today=today,
            holder_id=None if holder is None else check_uscc(holder, "holder_id"),
            programme_id=None if programme is None else check_key(programme, "program_id"),
            status=status,
            expires_from=date_param(req, "expires_from"),
            expires_to=date_param(req, "expires_to"),
            after=after,
            limit=limit,
        )
        self.consistent(req, resp)
        rows = self.reader.store.vouchers(filters)
        write_json(resp, paged([render.voucher_row(r, today) for r in rows], limit))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewVoucher",
            self.ledger.issue_voucher,
            render.voucher,
            201,
            renames={"program_id": "programme_id"},
        )


class Voucher(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        instant = as_of(req)
        if instant is None:
            # The voucher as stored now: its answer at this version may be kept.
            self.kept_answer(req, ("voucher", self.ledger.voucher_version(id)))
        view = self.ledger.voucher(id, instant)
        require_own(req, view.provider_ids, f"voucher {view.id}")
        body = render.voucher(view)
        if instant is not None:
            body["as_of"] = instant.isoformat()
        write_json(resp, body)


class Revoke(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(req, resp, "Reason", self.ledger.revoke_voucher, render.voucher, 200, id)


class Redemptions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The provider is the token's institution; what it signed is the canonical JSON of the
        body without its signature (API_CONTRACT.md §2)."""
        unsigned = {k: v for k, v in parse_body(req, "NewRedemption").items() if k != "signature"}
        self.command(
            req,
            resp,
            "NewRedemption",
            self.ledger.redeem,
            render.redemption,
            201,
            provider_id=principal_of(req).institution_id,
            signed_payload=canonical_json(unsigned),
        )


class Redemption(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        view = self.ledger.redemption(id)
        require_own(req, view.provider_id, f"redemption {view.id}")
        write_json(resp, render.redemption(view))


class ClawBack(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(req, resp, "Clawback", self.ledger.claw_back, render.redemption, 200, id)
