"""The guarantee fund: pools, covered loans, claims, recoveries and exemptions (API_CONTRACT.md
§4c). A bank principal acts for its own bank: the loans and claims it files are its own."""

from __future__ import annotations

import falcon

from api import render
from api.auth import principal_of, require_own
from api.resources.base import Resource, write_json


def bank_of(req: falcon.Request) -> str | None:
    return principal_of(req).institution_id


class Pools(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewGuaranteePool",
            self.ledger.open_guarantee_pool,
            render.guarantee_pool,
            201,
            renames={"id": "pool_id"},
        )


class Pool(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        write_json(resp, render.guarantee_pool(self.ledger.guarantee_pool(id)))


class Loans(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewGuaranteeLoan",
            self.ledger.register_guarantee_loan,
            render.guarantee_loan,
            201,
            renames={"id": "loan_id"},
            bank_id=bank_of(req),
        )


class Claims(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewGuaranteeClaim",
            self.ledger.file_guarantee_claim,
            render.guarantee_claim,
            201,
            bank_id=bank_of(req),
        )


class Claim(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        claim = self.ledger.guarantee_claim(id)
        require_own(req, claim["bank_id"], f"guarantee claim {claim['id']}")
        write_json(resp, render.guarantee_claim(claim))


class Approve(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(
            req, resp, "Empty", self.ledger.approve_guarantee_claim, render.guarantee_claim, 200, id
        )


class Reject(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(
            req, resp, "Reason", self.ledger.reject_guarantee_claim, render.guarantee_claim, 200, id
        )


class Recoveries(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(
            req,
            resp,
            "NewRecovery",
            self.ledger.record_guarantee_recovery,
            render.recovery,
            201,
            id,
            bank_id=bank_of(req),
        )


class Exemptions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewExemption",
            self.ledger.record_exemption,
            render.guarantee_claim,
            201,
        )
