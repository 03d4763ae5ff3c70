"""Audit over HTTP: traces source to destination (and as of an instant), verify, proofs checked
with the public key alone, flows, each inspection query on a planted case and a clean one, and
the fiscal-year report as an offline HTML page with a Sankey SVG and as an XLSX workbook."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import openpyxl

from audit.proofs import check_proof
from ledger.uscc import make_uscc
from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import ENTERPRISE, ENTERPRISE_2, PROVIDER, PROVIDER_2


def redeem(api: Api, voucher_id: str, contract_no: str = "C-1", **overrides: Any) -> Any:
    token = api.tokens[overrides.pop("token", "provider")]
    return api.post("/v1/redemptions", redemption_body(voucher_id, contract_no, **overrides), token)


def stamp_of_last_event(api: Api) -> str:
    last = api.app.ledger.recorder.select_notifications(api.log_length(), 1)[0]
    return str(api.app.ledger.mapper.to_domain_event(last).timestamp.isoformat())


def test_the_worked_example_traces_back_to_both_sources_and_adds_up(api: Api) -> None:
    open_worked_example(api)
    redemption = redeem(api, issue(api)).json
    trace = api.get(f"/v1/audit/trace/redemptions/{redemption['id']}", api.tokens["auditor"])
    assert trace.status_code == 200, trace.text
    body = trace.json
    sources = {s["id"]: s for s in body["steps"] if s["step"] == "funding_source"}
    assert {k: s["amount_fen"] for k, s in sources.items()} == {
        "province-2026": 600_000,
        "city-2026": 300_000,
    }
    assert sources["province-2026"]["document_ref"] == "鲁科字〔2026〕1号"
    assert body["sources_total_fen"] == body["subsidy_fen"] == 900_000
    assert [s["step"] for s in body["steps"]] == [
        "funding_source",
        "funding_source",
        "programme",
        "voucher",
        "redemption",
    ]
    for step in body["steps"]:
        for event in step["events"]:
            assert event["position"] > 0 and len(event["hash"]) == 64, step
    assert body["principals"][body["steps"][-1]["acted_by"]]["role"] == "provider"


def test_a_forward_trace_adds_up_to_the_funding_source_status(api: Api) -> None:
    open_worked_example(api)
    auditor = api.tokens["auditor"]
    first = redeem(api, issue(api)).json
    redeem(api, issue(api), "C-2", token="provider_2")
    api.post(
        f"/v1/redemptions/{first['id']}/claw-back",
        {"reason_code": "fake-invoice"},
        api.tokens["inspector"],
    )
    forward = api.get("/v1/audit/trace/funding-sources/province-2026", auditor).json
    status = api.get("/v1/funding-sources/province-2026", auditor).json
    assert forward["disbursed_fen"] == status["disbursed_fen"] == 1_200_000
    assert forward["recovered_fen"] == status["recovered_fen"] == 600_000
    assert sum(d["amount_fen"] for d in forward["destinations"]) == 1_200_000
    assert {d["provider_id"] for d in forward["destinations"]} == {PROVIDER, PROVIDER_2}
    assert all(len(d["hash"]) == 64 for d in forward["destinations"])


def test_a_trace_as_of_before_a_clawback_differs_from_after_and_both_are_right(api: Api) -> None:
    open_worked_example(api)
    auditor = api.tokens["auditor"]
    redemption = redeem(api, issue(api)).json
    before = stamp_of_last_event(api)
    api.post(
        f"/v1/redemptions/{redemption['id']}/claw-back",
        {"reason_code": "fake-invoice"},
        api.tokens["inspector"],
    )
    path = f"/v1/audit/trace/redemptions/{redemption['id']}"
    then = api.get(path, auditor, as_of=before).json
    now = api.get(path, auditor).json
    assert then["clawed_back"] is False and "clawback" not in [s["step"] for s in then["steps"]]
    assert now["clawed_back"] is True
    clawback = now["steps"][-1]
    assert clawback["step"] == "clawback" and clawback["reason_code"] == "fake-invoice"
    source_then = api.get(
        "/v1/audit/trace/funding-sources/province-2026", auditor, as_of=before
    ).json
    source_now = api.get("/v1/audit/trace/funding-sources/province-2026", auditor).json
    assert (source_then["recovered_fen"], source_now["recovered_fen"]) == (0, 600_000)
    assert source_then["disbursed_fen"] == source_now["disbursed_fen"] == 600_000
    early = api.get(path, auditor, as_of="2000-01-01")
    assert early.status_code == 404


def test_verify_and_a_proof_checked_with_the_published_key(api: Api) -> None:
    open_worked_example(api)
    position = int(redeem(api, issue(api)).headers["X-Ledger-Position"])
    verdict = api.get("/v1/audit/verify", api.tokens["auditor"]).json
    assert verdict["ok"] is True and verdict["first_bad_position"] is None
    assert verdict["events_checked"] >= position
    key = api.get("/v1/audit/public-key", api.tokens["provider"]).json
    proof = api.get("/v1/audit/proofs/3", api.tokens["inspector"])
    assert proof.status_code == 200, proof.text
    assert check_proof(proof.json, key["public_key_pem"])
    assert api.get("/v1/audit/proofs/x1", api.tokens["inspector"]).status_code == 422
    assert api.get("/v1/audit/verify", api.tokens["inspector"]).status_code == 403


def test_flows_run_from_source_to_enterprise(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api))
    redeem(api, issue(api, holder=ENTERPRISE_2), "C-2")
    flows = api.get("/v1/audit/flows", api.tokens["auditor"], fiscal_year=2026).json["flows"]
    province = [f for f in flows if f["source_id"] == "province-2026"]
    assert {(f["holder_id"], f["amount_fen"]) for f in province} == {
        (ENTERPRISE, 600_000),
        (ENTERPRISE_2, 600_000),
    }
    exported = api.get("/v1/audit/flows", api.tokens["auditor"], fiscal_year=2026, format="csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(flows) and rows[0]["source_id"] == flows[0]["source_id"]


def findings(api: Api, query: str, **params: Any) -> list[dict[str, Any]]:
    result = api.get(f"/v1/audit/inspections/{query}", api.tokens["inspector"], **params)
    assert result.status_code == 200, result.text
    return list(result.json["rows"])


def test_self_dealing_attempts_are_found_even_though_refused(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api))  # clean
    own = issue(api, holder=PROVIDER)
    assert redeem(api, own, "C-OWN").status_code == 422
    rows = findings(api, "self-dealing")
    assert [(r["provider_id"], r["holder_id"], r["voucher_id"]) for r in rows] == [
        (PROVIDER, PROVIDER, own)
    ]


def test_several_small_contracts_between_one_pair_look_like_splitting(api: Api) -> None:
    open_worked_example(api)
    small = {"contract_amount_fen": 100_000}
    mine = [issue(api) for _ in range(3)]
    theirs = [issue(api, holder=ENTERPRISE_2) for _ in range(2)]  # issued on 2026-04-01
    api.app.ledger.today = lambda: dt.date(2026, 4, 10)  # the claims come in later
    for n, day in enumerate(("2026-04-01", "2026-04-05", "2026-04-09")):
        redeem(api, mine[n], f"S-{n}", service_date=day, **small)
    for n, day in enumerate(("2026-04-01", "2026-04-03")):  # two only: clean
        redeem(api, theirs[n], f"T-{n}", service_date=day, **small)
    rows = findings(api, "contract-splitting", days=30, threshold_fen=500_000, min_contracts=3)
    assert [(r["provider_id"], r["holder_id"], r["contracts"]) for r in rows] == [
        (PROVIDER, ENTERPRISE, 3)
    ]
    assert findings(api, "contract-splitting", days=3, threshold_fen=500_000) == []
    bad = api.get("/v1/audit/inspections/contract-splitting", api.tokens["inspector"], days="soon")
    assert bad.status_code == 422


def test_a_provider_redeeming_many_times_a_day_shows_in_velocity(api: Api) -> None:
    open_worked_example(api)
    for n in range(4):
        redeem(api, issue(api, 200_000), f"V-{n}", contract_amount_fen=10_000)
    redeem(api, issue(api, 200_000), "W-1", token="provider_2", contract_amount_fen=10_000)
    rows = findings(api, "velocity", bound=3)
    assert [(r["provider_id"], r["redemptions"]) for r in rows] == [(PROVIDER, 4)]


def test_one_invoice_presented_by_two_providers_is_found(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api), "C-1", invoice_no="INV-SHARED")
    redeem(api, issue(api), "C-2", invoice_no="INV-OWN")  # clean
    second = redeem(api, issue(api), "C-3", token="provider_2", invoice_no="INV-SHARED")
    assert second.status_code == 409
    rows = findings(api, "shared-invoices")
    assert [(r["invoice_no"], r["providers"]) for r in rows] == [
        ("INV-SHARED", f"{PROVIDER} {PROVIDER_2}")
    ]


def test_institutions_sharing_a_bank_account_are_found(api: Api) -> None:
    open_worked_example(api)
    firms = [make_uscc(f"91371500MA3C0000{n}") for n in (3, 4, 5)]
    accounts = ("6222 0000 1111", "6222 0000 1111", "6222 0000 2222")
    for uscc, account in zip(firms, accounts, strict=True):
        body = {"id": uscc, "name": f"firm {uscc[-3:]}", "kind": "enterprise"}
        result = api.post("/v1/institutions", {**body, "bank_account": account})
        assert result.status_code == 201, result.text
    rows = findings(api, "shared-contacts")
    assert [(r["shared"], r["value"], r["institutions"]) for r in rows] == [
        ("bank_account", "6222 0000 1111", f"{firms[0]} {firms[1]}")
    ]


def test_clawbacks_and_freezes_are_listed_with_actors_and_reasons(api: Api) -> None:
    open_worked_example(api)
    redemption = redeem(api, issue(api)).json
    inspector = api.tokens["inspector"]
    api.post(f"/v1/redemptions/{redemption['id']}/claw-back", {"reason_code": "fake"}, inspector)
    api.post(f"/v1/institutions/{PROVIDER}/freeze", {"reason": "纪委监委 case 7"}, inspector)
    rows = findings(api, "actions")
    assert [(r["kind"], r["subject_id"], r["reason"]) for r in rows] == [
        ("clawback", redemption["id"], "fake"),
        ("freeze", PROVIDER, "纪委监委 case 7"),
    ]
    assert len({r["actor"] for r in rows}) == 1
    exported = api.get("/v1/audit/inspections/actions", inspector, format="csv").text
    assert exported.splitlines()[0] == "position,recorded_at,kind,subject_id,reason,actor"
    empty = api.get("/v1/audit/inspections/self-dealing", inspector, format="csv").text
    assert empty.startswith("position,recorded_at,provider_id")
    assert api.get("/v1/audit/inspections/nothing", inspector).status_code == 404


def test_the_report_is_an_offline_html_page_with_a_sankey_and_an_xlsx_workbook(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api))
    auditor = api.tokens["auditor"]
    page = api.get("/v1/audit/report", auditor, fiscal_year=2026, format="html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<svg" in html and "<path" in html and "province-2026" in html
    for reference in ("http://", "https://", "src=", "<link", "url("):
        assert reference not in html
    workbook = api.get("/v1/audit/report", auditor, fiscal_year=2026, format="xlsx")
    book = openpyxl.load_workbook(io.BytesIO(workbook.content))
    assert {"Summary", "Sources", "Flows"} <= set(book.sheetnames)
    report = api.get("/v1/audit/report", auditor, fiscal_year=2026).json
    assert report["ledger"]["verified"] is True
    province = next(s for s in report["sources"] if s["id"] == "province-2026")
    assert province["disbursed_fen"] == 600_000
