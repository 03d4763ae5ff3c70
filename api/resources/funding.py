"""Funding sources and programmes."""

from __future__ import annotations

import falcon

from api import render
from api.resources.base import Resource, as_of, write_json
from ledger.application import check_key
from ledger.errors import NotFound
from projections.store import source_view


class FundingSources(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewFundingSource",
            self.ledger.open_funding_source,
            render.funding_source,
            201,
            renames={"id": "source_id"},
        )


class FundingSource(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        """Now: from the views. As of an instant: from the events up to then."""
        instant = as_of(req)
        if instant is not None:
            view = self.ledger.funding_source(id, instant)
            subsidy_fen, post_subsidy_fen = self.ledger.owed_fen(view.id, instant)
            body = render.funding_source(view, subsidy_fen, post_subsidy_fen=post_subsidy_fen)
            body["as_of"] = instant.isoformat()
            write_json(resp, body)
            return
        key = check_key(id, "id")
        self.consistent(req, resp)
        row = self.reader.store.source(key)
        if row is None:
            raise NotFound(f"funding source {key} not found")
        view = source_view(row)
        body = render.funding_source(
            view,
            row["disbursed_fen"],
            row["live_vouchers"],
            row["post_subsidy_fen"],
            row["paid_fen"],
        )
        write_json(resp, body)


class Programs(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewProgram",
            self.ledger.create_programme,
            render.program,
            201,
            renames={
                "id": "programme_id",
                # The wire's provider bonus is the ledger's post-subsidy (seed 003: 后补助).
                "provider_bonus_rate_bp": "post_subsidy_rate_bp",
                "provider_bonus_source_id": "post_subsidy_source_id",
                "provider_annual_cap_fen": "post_subsidy_annual_cap_fen",
            },
        )


class Program(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        write_json(resp, render.program(self.ledger.programme(id)))
