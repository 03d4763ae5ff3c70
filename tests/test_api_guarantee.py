"""The guarantee fund over HTTP on SQLite and PostgreSQL (issue 13, API_CONTRACT.md §4c): pools,
covered loans, claims decided by the pool's rule, approval, payout to the bank, recoveries
shared back to the fen, and the compliant-loss exemption (容错纠错)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.uscc import make_uscc
from tests.api_support import Api, open_worked_example
from tests.conftest import BANK, ENTERPRISE

OTHER_BANK = make_uscc("91370000MA3BANK02")
PROVINCE_GF, CITY_GF = "province-gf-2026", "city-gf-2026"
LOAN = {
    "id": "LOAN-1",
    "pool_id": "zhuhai-pool",
    "borrower_id": ENTERPRISE,
    "principal_fen": 300_000_000,
    "start_date": "2025-06-01",
    "term_months": 24,
    "first_loan": True,
    "credit_only": False,
    "ip_pledge": False,
}


def problem(result: Any, status: int, slug: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.json["type"].endswith(f"/{slug}"), result.json
    return dict(result.json)


def open_pool(api: Api, pool_id: str, rule: str, bank_cap_fen: int | None = None) -> Any:
    body = {
        "id": pool_id,
        "name": f"pool {pool_id}",
        "shares": [
            {"source_id": PROVINCE_GF, "share_bp": 1250},
            {"source_id": CITY_GF, "share_bp": 8750},
        ],
        "rule": rule,
        "bank_annual_cap_fen": bank_cap_fen,
    }
    return api.post("/v1/guarantee-pools", body, api.tokens["program_officer"])


@pytest.fixture
def fund(api: Api) -> Api:
    """Zhuhai's pool: province 5m + city 35m yuan (1250 / 8750 bp), by risk-compensation@1."""
    open_worked_example(api)
    for source_id, appropriation_fen in ((PROVINCE_GF, 500_000_000), (CITY_GF, 3_500_000_000)):
        source = {
            "id": source_id,
            "name": source_id,
            "level": "guarantee_fund",
            "fiscal_year": 2026,
            "appropriation_fen": appropriation_fen,
            "document_ref": "珠海科技信贷风险补偿金",
        }
        assert api.post("/v1/funding-sources", source).status_code == 201
    assert open_pool(api, "zhuhai-pool", "risk-compensation@1").status_code == 201
    details = {"bank_account": "6222 0200 0000 0001", "contact": None, "reason": "bank details"}
    assert api.post(f"/v1/institutions/{BANK}/payment-details", details).status_code == 200
    api.tokens["treasury_2"] = api.principal("treasury")
    return api


def file_claim(
    api: Api, loan: dict[str, Any], loss_fen: int, default_date: str = "2026-03-01"
) -> Any:
    if api.post("/v1/guarantee-loans", loan, api.tokens["bank"]).status_code not in (201, 409):
        raise AssertionError("loan not registered")
    body = {"loan_id": loan["id"], "loss_fen": loss_fen, "default_date": default_date}
    return api.post("/v1/guarantee-claims", body, api.tokens["bank"])


def splits(body: dict[str, Any]) -> list[int]:
    return [s["amount_fen"] for s in body["splits"]]


def test_a_first_loans_claim_is_compensated_35_percent_split_by_the_pools_shares(fund: Api) -> None:
    claim = file_claim(fund, LOAN, 200_000_000)

    assert claim.status_code == 201, claim.text
    assert (claim.json["status"], claim.json["rule"]) == ("filed", "risk-compensation@1")
    assert claim.json["compensation_fen"] == 70_000_000
    assert splits(claim.json) == [8_750_000, 61_250_000]
    assert claim.json["not_compensated_fen"] == 130_000_000
    assert claim.json["decision"]["rate_bp"] == 3500
    city = fund.get(f"/v1/funding-sources/{CITY_GF}", fund.tokens["treasury"]).json
    assert city["reserved_fen"] == 61_250_000  # counts against the pool from filing on


def test_a_remainder_fen_goes_to_the_larger_remainder(fund: Api) -> None:
    claim = file_claim(fund, LOAN, 200_000_003)
    assert claim.json["compensation_fen"] == 70_000_001
    assert splits(claim.json) == [8_750_000, 61_250_001]


def test_the_zhuhai_tiers_pay_the_highest_one_the_loan_meets(fund: Api) -> None:
    assert open_pool(fund, "tiered", "risk-compensation@2").status_code == 201
    for n, (terms, rate_bp) in enumerate(
        (
            ({"first_loan": True, "credit_share_bp": 2000}, 9000),
            ({"first_loan": False, "credit_share_bp": 7000}, 7000),
            ({"first_loan": False, "credit_share_bp": 5001}, 5000),
            ({"first_loan": False, "credit_share_bp": 5000}, 3000),
        )
    ):
        loan = {**LOAN, "id": f"T-{n}", "pool_id": "tiered", **terms}
        claim = file_claim(fund, loan, 1_000_000).json
        assert (claim["decision"]["rate_bp"], claim["compensation_fen"]) == (
            rate_bp,
            rate_bp * 100,
        )


def test_an_approved_claim_is_paid_to_the_bank_one_payout_per_pool_source(fund: Api) -> None:
    claim = file_claim(fund, LOAN, 200_000_000).json
    officer = fund.tokens["program_officer"]
    early = fund.post(
        "/v1/payouts", {"payee_id": BANK, "source_id": CITY_GF}, fund.tokens["treasury"]
    )
    problem(early, 422, "nothing-to-pay")  # filed, not yet approved

    approved = fund.post(f"/v1/guarantee-claims/{claim['id']}/approve", {}, officer)

    assert approved.status_code == 200 and approved.json["status"] == "approved"
    payouts = [
        fund.post("/v1/payouts", {"payee_id": BANK, "source_id": s}, fund.tokens["treasury"])
        for s in (PROVINCE_GF, CITY_GF)
    ]
    assert [p.status_code for p in payouts] == [201, 201]
    assert [p.json["amount_fen"] for p in payouts] == [8_750_000, 61_250_000]
    assert payouts[1].json["lines"] == [
        {"claim_id": claim["id"], "kind": "guarantee", "amount_fen": 61_250_000}
    ]
    ok = fund.post(f"/v1/payouts/{payouts[1].json['id']}/approve", {}, fund.tokens["treasury_2"])
    assert ok.status_code == 200, ok.text
    own = fund.get(f"/v1/payouts/{payouts[1].json['id']}", fund.tokens["bank"])
    assert own.status_code == 200


def test_recoveries_are_shared_back_to_the_pool_exact_to_the_fen_over_all_of_them(
    fund: Api,
) -> None:
    claim = file_claim(fund, LOAN, 200_000_000).json
    path = f"/v1/guarantee-claims/{claim['id']}"
    problem(
        fund.post(
            f"{path}/recoveries",
            {"amount_fen": 1, "recovered_on": "2026-03-02"},
            fund.tokens["bank"],
        ),
        409,
        "invalid-state",
    )  # only on an approved claim
    fund.post(f"{path}/approve", {}, fund.tokens["program_officer"])

    first = fund.post(
        f"{path}/recoveries",
        {"amount_fen": 100_000_000, "recovered_on": "2026-03-15"},
        fund.tokens["bank"],
    )

    assert first.status_code == 201, first.text
    assert first.json["returned_to_fund_fen"] == 35_000_000
    assert splits(first.json) == [4_375_000, 30_625_000]
    more = [
        fund.post(
            f"{path}/recoveries",
            {"amount_fen": 3, "recovered_on": "2026-03-20"},
            fund.tokens["bank"],
        ).json["returned_to_fund_fen"]
        for _ in range(3)
    ]
    # 9 fen recovered in all at 35%: floor(3.15) = 3, returned as the running total crosses it.
    assert more == [1, 1, 1]
    city = fund.get(f"/v1/funding-sources/{CITY_GF}", fund.tokens["treasury"]).json
    province = fund.get(f"/v1/funding-sources/{PROVINCE_GF}", fund.tokens["treasury"]).json
    assert province["recovered_fen"] + city["recovered_fen"] == 35_000_003
    stored = fund.get(path, fund.tokens["auditor"]).json
    assert (stored["recovered_fen"], stored["returned_to_fund_fen"]) == (100_000_009, 35_000_003)


def test_the_bank_annual_cap_cuts_a_claim_and_records_what_it_cut(fund: Api) -> None:
    assert (
        open_pool(fund, "capped", "risk-compensation@1", bank_cap_fen=10_000_000).status_code == 201
    )
    claim = file_claim(fund, {**LOAN, "id": "C-1", "pool_id": "capped"}, 200_000_000).json
    assert claim["compensation_fen"] == 10_000_000
    cut = {c["limit"]: c["cut_fen"] for c in claim["decision"]["cuts"]}
    assert cut["bank-annual-cap"] == 60_000_000
    second = file_claim(fund, {**LOAN, "id": "C-2", "pool_id": "capped"}, 1_000_000).json
    assert second["compensation_fen"] == 0 and second["not_compensated_fen"] == 1_000_000


def test_an_inspector_records_a_compliant_loss_exempt_from_accountability(fund: Api) -> None:
    claim = file_claim(fund, LOAN, 200_000_000).json
    path = f"/v1/guarantee-claims/{claim['id']}"
    exemption = {
        "claim_id": claim["id"],
        "decision_ref": "珠纪容〔2026〕3号",
        "decided_on": "2026-03-20",
        "reason": "尽职免责: lending was compliant",
    }
    problem(fund.post("/v1/exemptions", exemption, fund.tokens["inspector"]), 409, "invalid-state")
    fund.post(f"{path}/approve", {}, fund.tokens["program_officer"])
    fund.post(
        f"{path}/recoveries",
        {"amount_fen": 100_000_000, "recovered_on": "2026-03-15"},
        fund.tokens["bank"],
    )

    exempt = fund.post("/v1/exemptions", exemption, fund.tokens["inspector"])

    assert exempt.status_code == 201, exempt.text
    assert exempt.json["exemption"]["net_loss_fen"] == 70_000_000 - 35_000_000
    assert exempt.json["exemption"]["decision_ref"] == "珠纪容〔2026〕3号"
    actions = fund.get("/v1/audit/inspections/actions", fund.tokens["inspector"]).json["rows"]
    assert any(a["kind"] == "exemption" and a["subject_id"] == claim["id"] for a in actions)
    problem(fund.post("/v1/exemptions", exemption, fund.tokens["inspector"]), 409, "invalid-state")


def test_a_bank_sees_and_files_only_for_itself(fund: Api) -> None:
    claim = file_claim(fund, LOAN, 1_000_000).json
    fund.post("/v1/institutions", {"id": OTHER_BANK, "name": "other bank", "kind": "bank"})
    other = fund.principal("bank", OTHER_BANK)
    problem(fund.get(f"/v1/guarantee-claims/{claim['id']}", other), 404, "not-found")
    body = {"loan_id": LOAN["id"], "loss_fen": 1, "default_date": "2026-03-01"}
    problem(fund.post("/v1/guarantee-claims", body, other), 404, "not-found")
    assert fund.get(f"/v1/guarantee-claims/{claim['id']}", fund.tokens["bank"]).status_code == 200


def test_a_pool_pays_only_from_guarantee_fund_sources_whose_shares_make_the_whole(
    fund: Api,
) -> None:
    wrong = {
        "id": "wrong",
        "name": "wrong",
        "shares": [{"source_id": "city-2026", "share_bp": 10_000}],
    }
    problem(
        fund.post("/v1/guarantee-pools", wrong, fund.tokens["program_officer"]),
        422,
        "validation-error",
    )
    half = {**wrong, "shares": [{"source_id": CITY_GF, "share_bp": 5000}]}
    problem(
        fund.post("/v1/guarantee-pools", half, fund.tokens["program_officer"]),
        422,
        "validation-error",
    )


def test_a_loss_beyond_the_principal_or_a_default_in_the_future_is_refused(fund: Api) -> None:
    problem(file_claim(fund, LOAN, 300_000_001), 409, "invalid-state")
    problem(file_claim(fund, LOAN, 1, default_date="2026-04-02"), 422, "validation-error")
    problem(file_claim(fund, LOAN, 1, default_date="2025-05-31"), 422, "validation-error")


def available(api: Api) -> list[int]:
    """The available_fen of the pool's two sources."""
    token = api.tokens["program_officer"]
    return [
        api.get(f"/v1/funding-sources/{s}", token).json["available_fen"]
        for s in (PROVINCE_GF, CITY_GF)
    ]


def test_a_rejected_claim_gives_its_compensation_back_and_counts_against_no_cap(
    fund: Api,
) -> None:
    """A programme officer rejects a filed claim: the pool's sources have it available again,
    the loan's losses and the bank's annual cap forget it, and the rejection is an action an
    inspector sees. Only a filed claim can be rejected, and only by a programme officer."""
    officer, bank = fund.tokens["program_officer"], fund.tokens["bank"]
    before = available(fund)
    full_loss = LOAN["principal_fen"]
    claim = file_claim(fund, LOAN, full_loss).json
    path = f"/v1/guarantee-claims/{claim['id']}"
    assert available(fund) != before
    problem(fund.post(f"{path}/reject", {"reason": "not covered"}, bank), 403, "forbidden")

    rejected = fund.post(f"{path}/reject", {"reason": "loan outside the pool's terms"}, officer)

    assert rejected.status_code == 200, rejected.text
    assert rejected.json["status"] == "rejected"
    assert rejected.json["rejection"]["reason"] == "loan outside the pool's terms"
    assert fund.get(path, officer).json["status"] == "rejected"
    assert available(fund) == before
    problem(fund.post(f"{path}/approve", {}, officer), 409, "invalid-state")
    problem(fund.post(f"{path}/reject", {"reason": "again"}, officer), 409, "invalid-state")
    # The whole principal may be claimed again, and is compensated as the first time.
    again = file_claim(fund, LOAN, full_loss)
    assert again.status_code == 201, again.text
    assert again.json["compensation_fen"] == claim["compensation_fen"]
    assert (
        fund.post(f"/v1/guarantee-claims/{again.json['id']}/approve", {}, officer).status_code
        == 200
    )
    problem(
        fund.post(f"/v1/guarantee-claims/{again.json['id']}/reject", {"reason": "late"}, officer),
        409,
        "invalid-state",
    )  # approved: payable to the bank, no longer rejectable
    actions = fund.get("/v1/audit/inspections/actions", fund.tokens["inspector"]).json["rows"]
    assert any(a["kind"] == "claim-rejection" and a["subject_id"] == claim["id"] for a in actions)
    report = fund.get("/v1/audit/report", fund.tokens["auditor"], fiscal_year=2026).json
    statuses = {c["claim_id"]: c["status"] for c in report["guarantee_claims"]}
    assert statuses == {claim["id"]: "rejected", again.json["id"]: "approved"}


def test_a_rejection_frees_the_banks_annual_cap_for_its_next_claim(fund: Api) -> None:
    officer = fund.tokens["program_officer"]
    assert open_pool(fund, "capped-pool", "risk-compensation@1", 10_000_000).status_code == 201
    loan = {**LOAN, "id": "LOAN-CAPPED", "pool_id": "capped-pool"}
    first = file_claim(fund, loan, 100_000_000).json
    assert first["compensation_fen"] == 10_000_000  # the cap binds
    second_loan = {**loan, "id": "LOAN-CAPPED-2"}
    assert file_claim(fund, second_loan, 100_000_000).json["compensation_fen"] == 0
    path = f"/v1/guarantee-claims/{first['id']}/reject"
    assert fund.post(path, {"reason": "duplicate of another"}, officer).status_code == 200
    third_loan = {**loan, "id": "LOAN-CAPPED-3"}
    assert file_claim(fund, third_loan, 100_000_000).json["compensation_fen"] == 10_000_000
