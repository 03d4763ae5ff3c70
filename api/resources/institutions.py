"""Institutions: registration, balances, freezes."""

from __future__ import annotations

import re

import falcon

from api import render
from api.auth import actor_of, require_own
from api.body import parse_body
from api.resources.base import Resource, run_command, write_json
from ledger.errors import ValidationError
from ledger.uscc import check_uscc
from ledger.validate import check_fiscal_year

_YEAR_RE = re.compile(r"[0-9]{4}")


class Institutions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewInstitution")
        run_command(
            req,
            resp,
            lambda idem: self.ledger.register_institution(
                uscc=body["id"],
                name=body["name"],
                kind=body["kind"],
                public_key_pem=body.get("public_key_pem"),
                bank_account=body.get("bank_account"),
                contact=body.get("contact"),
                actor=actor_of(req),
                idempotency=idem,
            ),
            render.institution,
            201,
        )


class Institution(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        view = self.ledger.institution(id)
        require_own(req, view.id)
        write_json(resp, render.institution(view))


class Balances(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        uscc = check_uscc(id, "id")
        raw_year = req.get_param("fiscal_year")
        if (
            raw_year is None
            or not (raw_year.isascii() and raw_year.isdigit())
            or len(raw_year) != 4
        ):
            raise ValidationError("fiscal_year must be a year such as 2026")
        year = check_fiscal_year(int(raw_year))
        self.ledger.institution(uscc)  # 404 for an unknown institution
        require_own(req, uscc)
        body = render.balances(
            uscc,
            year,
            self.ledger.enterprise_year(uscc, year),
            self.ledger.provider_year(uscc, year),
        )
        write_json(resp, body)


class Freeze(Resource):
    frozen = True

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        body = parse_body(req, "Reason")
        change = self.ledger.freeze_institution if self.frozen else self.ledger.unfreeze_institution
        run_command(
            req,
            resp,
            lambda idem: change(id, reason=body["reason"], actor=actor_of(req), idempotency=idem),
            render.institution,
            200,
        )


class Unfreeze(Freeze):
    frozen = False
