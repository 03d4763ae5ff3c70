"""Institutions: registration, balances, freezes."""

from __future__ import annotations

import re
from types import SimpleNamespace

import falcon

from api import render
from api.auth import require_own
from api.resources.base import Resource, as_of, write_json
from ledger.errors import ValidationError
from ledger.uscc import check_uscc
from ledger.validate import check_fiscal_year
from projections.store import ENTERPRISE_YEARS, PROVIDER_YEARS

_YEAR_RE = re.compile(r"[0-9]{4}")


class Institutions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.command(
            req,
            resp,
            "NewInstitution",
            self.ledger.register_institution,
            render.institution,
            201,
            renames={"id": "uscc"},
        )


class Institution(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        view = self.ledger.institution(id)
        require_own(req, view.id, f"institution {view.id}")
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
        instant = as_of(req)
        if instant is not None:  # from the events up to then
            self.ledger.institution(uscc)  # 404 for an unknown institution
            require_own(req, uscc, f"institution {uscc}")
            body = render.balances(
                uscc,
                year,
                self.ledger.enterprise_year(uscc, year, instant),
                self.ledger.provider_year(uscc, year, instant),
            )
            body["as_of"] = instant.isoformat()
            write_json(resp, body)
            return
        require_own(req, uscc, f"institution {uscc}")
        self.consistent(req, resp)
        store = self.reader.store
        if not store.institution_known(uscc):  # the log decides if the views lag behind
            self.ledger.institution(uscc)  # 404 for an unknown institution
        e_row = store.year(ENTERPRISE_YEARS, uscc, year)
        p_row = store.year(PROVIDER_YEARS, uscc, year)
        body = render.balances(
            uscc,
            year,
            SimpleNamespace(**e_row) if e_row else None,
            SimpleNamespace(**p_row) if p_row else None,
        )
        body.update(render.payables(store.earned_by_source(uscc, year)))
        write_json(resp, body)


class Keys(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        uscc = check_uscc(id, "id")
        require_own(req, uscc, f"institution {uscc}")
        self.command(
            req, resp, "NewPublicKey", self.ledger.register_key, render.institution, 200, id
        )


class PaymentDetails(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(
            req,
            resp,
            "PaymentDetails",
            self.ledger.change_payment_details,
            render.institution,
            200,
            id,
        )


class Freeze(Resource):
    frozen = True

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        change = self.ledger.freeze_institution if self.frozen else self.ledger.unfreeze_institution
        self.command(req, resp, "Reason", change, render.institution, 200, id)


class Unfreeze(Freeze):
    frozen = False
