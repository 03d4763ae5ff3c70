"""Vouchers and redemptions."""

from __future__ import annotations

import falcon

from api import render
from api.auth import actor_of, principal_of, require_own
from api.body import canonical_json, parse_body
from api.resources.base import Resource, as_of, run_command, write_json


class Vouchers(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewVoucher")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.issue_voucher(
                programme_id=body["program_id"],
                holder_id=body["holder_id"],
                face_value_fen=body["face_value_fen"],
                valid_until=body["valid_until"],
                actor=actor_of(req),
                idempotency=idem,
            ),
            render.voucher,
            201,
        )


class Voucher(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        instant = as_of(req)
        view = self.ledger.voucher(id, instant)
        require_own(req, view.provider_ids)
        body = render.voucher(view)
        if instant is not None:
            body["as_of"] = instant.isoformat()
        write_json(resp, body)


class Revoke(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        body = parse_body(req, "Reason")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.revoke_voucher(
                id, reason=body["reason"], actor=actor_of(req), idempotency=idem
            ),
            render.voucher,
            200,
        )


class Redemptions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewRedemption")
        principal = principal_of(req)
        assert principal.institution_id is not None, "a provider principal has an institution"
        unsigned = {k: v for k, v in body.items() if k != "signature"}
        run_command(
            req,
            resp,
            lambda idem: self.ledger.redeem(
                voucher_id=body["voucher_id"],
                provider_id=principal.institution_id,
                contract_no=body["contract_no"],
                invoice_no=body["invoice_no"],
                service_category=body["service_category"],
                contract_amount_fen=body["contract_amount_fen"],
                service_date=body["service_date"],
                signature=body.get("signature"),
                signed_payload=canonical_json(unsigned),
                actor=actor_of(req),
                idempotency=idem,
            ),
            render.redemption,
            201,
        )


class Redemption(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        view = self.ledger.redemption(id)
        require_own(req, view.provider_id)
        write_json(resp, render.redemption(view))


class ClawBack(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        body = parse_body(req, "Clawback")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.claw_back(
                id, reason_code=body["reason_code"], actor=actor_of(req), idempotency=idem
            ),
            render.redemption,
            200,
        )
