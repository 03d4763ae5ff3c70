"""Funding sources and programmes."""

from __future__ import annotations

import falcon

from api import render
from api.resources.base import Resource, as_of, write_json


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
        instant = as_of(req)
        view = self.ledger.funding_source(id, instant)
        body = render.funding_source(view, self.ledger.disbursed_fen(view.id, instant))
        if instant is not None:
            body["as_of"] = instant.isoformat()
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
            renames={"id": "programme_id"},
        )


class Program(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        write_json(resp, render.program(self.ledger.programme(id)))
