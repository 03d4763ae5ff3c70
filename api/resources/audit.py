"""Audit endpoints: verify the chain, the public key, inclusion proofs, traces, flows,
inspection queries and the fiscal-year report. Only translation here; the work is in audit/."""

from __future__ import annotations

import falcon

from api.resources.base import as_of, int_param, output_format, write_csv, write_json
from audit import inspect, report_render
from audit.service import Auditor
from ledger.errors import NotFound, ValidationError
from ledger.validate import MAX_FISCAL_YEAR, MIN_FISCAL_YEAR, check_int_text
from projections.reader import ViewReader

MAX_POSITION = 10**18 - 1
RENDERERS = {
    "json": ("application/json", report_render.render_json),
    "csv": ("text/csv; charset=utf-8", report_render.render_csv),
    "xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        report_render.render_xlsx,
    ),
    "html": ("text/html; charset=utf-8", report_render.render_html),
}


class AuditResource:
    def __init__(self, auditor: Auditor, reader: ViewReader) -> None:
        self.auditor = auditor
        self.reader = reader

    def fresh(self) -> None:
        """Wait (best effort, 2 s at most) for the views and the chain to reach the log's head."""
        self.reader.at_least(None)
        self.auditor.caught_up()


def fiscal_year(req: falcon.Request) -> int:
    year = int_param(req, "fiscal_year", MIN_FISCAL_YEAR, MAX_FISCAL_YEAR)
    if year is None:
        raise ValidationError("fiscal_year must be a year such as 2026")
    return year


class Verify(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.fresh()
        write_json(resp, self.auditor.verify().as_dict())


class PublicKey(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        signer = self.auditor.signer
        body = {
            "algorithm": "Ed25519",
            "public_key_pem": signer.public_pem,
            "key_id": signer.key_id,
        }
        write_json(resp, body)


class Proof(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        position = check_int_text(id, "position", 0, MAX_POSITION)
        self.fresh()
        write_json(resp, self.auditor.prove(position))


class RedemptionTrace(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        instant = as_of(req)
        self.fresh()
        write_json(resp, self.auditor.tracer.redemption(id, instant))


class BankLineTrace(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str, line: str) -> None:
        number = check_int_text(line, "line", 1, 10**9)
        self.fresh()
        write_json(resp, self.auditor.tracer.bank_line(id, number))


class SourceTrace(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        instant = as_of(req)
        self.fresh()
        write_json(resp, self.auditor.tracer.funding_source(id, instant))


class Flows(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        year = fiscal_year(req)
        fmt = output_format(req, ("json", "csv"))
        self.fresh()
        flows = self.auditor.flows(year)
        if fmt == "csv":
            columns = list(report_render.FLOW_FIELDS)
            write_csv(resp, flows, columns, None)
        else:
            write_json(resp, {"fiscal_year": year, "flows": flows})


class Inspection(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        inspection = inspect.INSPECTIONS.get(id)
        if inspection is None:
            raise NotFound(f"no inspection {id!r}: one of {', '.join(inspect.INSPECTIONS)}")
        fmt = output_format(req, ("json", "csv"))
        given = {p.name: req.get_param(p.name) for p in inspection.params}
        self.fresh()
        rows = inspect.run(self.auditor.views, id, given)
        if fmt == "csv":
            write_csv(resp, rows, list(inspection.columns), None)
        else:
            write_json(resp, {"query": id, "title": inspection.title, "rows": rows})


class Report(AuditResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        year = fiscal_year(req)
        fmt = output_format(req, tuple(RENDERERS))
        self.fresh()
        content_type, render = RENDERERS[fmt]
        resp.content_type = content_type
        resp.data = render(self.auditor.report(year))
        if fmt in ("csv", "xlsx"):
            name = f"audit-report-{year}.{fmt}"
            resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
