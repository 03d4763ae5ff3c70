"""Funding sources and programmes."""

from __future__ import annotations

import falcon

from api import render
from api.auth import actor_of
from api.body import parse_body
from api.resources.base import Resource, as_of, run_command, write_json


class FundingSources(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewFundingSource")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.open_funding_source(
                source_id=body["id"],
                name=body["name"],
                level=body["level"],
                fiscal_year=body["fiscal_year"],
                appropriation_fen=body["appropriation_fen"],
                document_ref=body["document_ref"],
                actor=actor_of(req),
                idempotency=idem,
            ),
            render.funding_source,
            201,
        )


class FundingSource(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        instant = as_of(req)
        view = self.ledger.funding_source(id, instant)
        body = render.funding_source(view, self.ledger.disbursed_fen(view.id, instant))
        if instant is not None:
            body["as_of"] = instant.isoformat()
        write_json(resp, body)


class Programs(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewProgram")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.create_programme(
                programme_id=body["id"],
                name=body["name"],
                fiscal_year=body["fiscal_year"],
                shares=body["shares"],
                max_face_value_fen=body["max_face_value_fen"],
                provider_bonus_rate_bp=body["provider_bonus_rate_bp"],
                provider_bonus_source_id=body["provider_bonus_source_id"],
                provider_annual_cap_fen=body["provider_annual_cap_fen"],
                enterprise_annual_cap_fen=body["enterprise_annual_cap_fen"],
                actor=actor_of(req),
                idempotency=idem,
            ),
            render.program,
            201,
        )


class Program(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        write_json(resp, render.program(self.ledger.programme(id)))
