"""Payouts over HTTP on SQLite and PostgreSQL (issue 13, API_CONTRACT.md §4c): gathering what a
source owes a payee, four eyes, the account in force at approval, cancelling."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import PROVIDER, PROVIDER_2

ACCOUNT = "6217 0000 1111 2222 333"


def problem(result: Any, status: int, slug: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/problem+json")
    assert result.json["type"].endswith(f"/{slug}"), result.json
    return dict(result.json)


@pytest.fixture
def owed(api: Api) -> Api:
    """The worked example, two redemptions by the first provider, one by the second, a second
    treasury principal, and bank accounts for both providers."""
    open_worked_example(api)
    api.tokens["treasury_2"] = api.principal("treasury")
    for uscc, account in ((PROVIDER, ACCOUNT), (PROVIDER_2, "6217 9999")):
        details = {"bank_account": account, "contact": None, "reason": "bank details"}
        assert api.post(f"/v1/institutions/{uscc}/payment-details", details).status_code == 200
    for n, token in enumerate(("provider", "provider", "provider_2")):
        body = redemption_body(issue(api), f"P-{n}", contract_amount_fen=1_000_000)
        assert api.post("/v1/redemptions", body, api.tokens[token]).status_code == 201
    return api


def create(api: Api, source_id: str = "province-2026", payee: str = PROVIDER) -> Any:
    return api.post(
        "/v1/payouts", {"payee_id": payee, "source_id": source_id}, api.tokens["treasury"]
    )


def test_a_payout_gathers_every_outstanding_payable_of_the_payee_from_the_source(
    owed: Api,
) -> None:
    result = create(owed)

    assert result.status_code == 201, result.text
    payout = result.json
    assert (payout["payee_id"], payout["source_id"], payout["status"]) == (
        PROVIDER,
        "province-2026",
        "created",
    )
    assert payout["amount_fen"] == 2 * 600_000
    assert sorted((line["kind"], line["amount_fen"]) for line in payout["lines"]) == [
        ("subsidy", 600_000),
        ("subsidy", 600_000),
    ]
    assert all("redemption_id" in line for line in payout["lines"])
    city = create(owed, "city-2026").json  # subsidy and post-subsidy (the wire's "bonus")
    assert sorted((line["kind"], line["amount_fen"]) for line in city["lines"]) == [
        ("bonus", 50_000),
        ("bonus", 50_000),
        ("subsidy", 300_000),
        ("subsidy", 300_000),
    ]


def test_a_payable_is_in_one_live_payout_at_most(owed: Api) -> None:
    assert create(owed).status_code == 201
    length = owed.log_length()
    problem(create(owed), 422, "nothing-to-pay")
    assert owed.log_length() == length
    problem(create(owed, payee=PROVIDER_2, source_id="county-2026"), 404, "not-found")


def test_the_payables_show_which_payout_holds_them(owed: Api) -> None:
    payout = create(owed).json
    lines = owed.get(
        "/v1/payables", owed.tokens["treasury"], provider_id=PROVIDER, source_id="province-2026"
    ).json["items"]
    assert {line["payout_id"] for line in lines} == {payout["id"]}


def test_the_creator_cannot_approve_and_another_treasury_principal_can(owed: Api) -> None:
    payout = create(owed).json
    path = f"/v1/payouts/{payout['id']}/approve"

    problem(owed.post(path, {}, owed.tokens["treasury"]), 422, "same-approver")
    approved = owed.post(path, {}, owed.tokens["treasury_2"])

    assert approved.status_code == 200, approved.text
    assert approved.json["status"] == "approved"
    assert (
        approved.json["end_to_end_id"].startswith("VL")
        and len(approved.json["end_to_end_id"]) <= 35
    )
    assert approved.json["bank_account"] == ACCOUNT
    problem(owed.post(path, {}, owed.tokens["treasury_2"]), 409, "invalid-state")


def test_a_frozen_payee_cannot_be_approved(owed: Api) -> None:
    payout = create(owed).json
    frozen = owed.post(
        f"/v1/institutions/{PROVIDER}/freeze", {"reason": "audit"}, owed.tokens["inspector"]
    )
    assert frozen.status_code == 200
    length = owed.log_length()
    path = f"/v1/payouts/{payout['id']}/approve"
    problem(owed.post(path, {}, owed.tokens["treasury_2"]), 422, "payee-frozen")
    assert owed.log_length() == length


def test_the_account_in_force_at_approval_is_paid_even_if_it_changes_after(owed: Api) -> None:
    payout = create(owed).json
    owed.post(f"/v1/payouts/{payout['id']}/approve", {}, owed.tokens["treasury_2"])
    changed = owed.post(
        f"/v1/institutions/{PROVIDER}/payment-details",
        {"bank_account": "6217 6666 (new)", "contact": None, "reason": "moved bank"},
    )
    assert changed.status_code == 200
    stored = owed.get(f"/v1/payouts/{payout['id']}", owed.tokens["auditor"]).json
    assert stored["bank_account"] == ACCOUNT


def test_a_payee_without_a_bank_account_cannot_be_approved(owed: Api) -> None:
    details = {"bank_account": None, "contact": None, "reason": "account closed"}
    owed.post(f"/v1/institutions/{PROVIDER}/payment-details", details)
    payout = create(owed).json
    path = f"/v1/payouts/{payout['id']}/approve"
    problem(owed.post(path, {}, owed.tokens["treasury_2"]), 422, "validation-error")


def test_a_cancelled_payout_frees_its_lines_for_the_next(owed: Api) -> None:
    first = create(owed).json
    cancelled = owed.post(
        f"/v1/payouts/{first['id']}/cancel", {"reason": "wrong batch"}, owed.tokens["treasury"]
    )
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"

    second = create(owed)

    assert second.status_code == 201, second.text
    assert second.json["amount_fen"] == first["amount_fen"] and second.json["id"] != first["id"]
    problem(
        owed.post(
            f"/v1/payouts/{first['id']}/cancel", {"reason": "again"}, owed.tokens["treasury"]
        ),
        409,
        "invalid-state",
    )


def test_a_clawed_back_redemption_is_not_paid(owed: Api) -> None:
    payout = create(owed).json
    redemption_id = payout["lines"][0]["redemption_id"]
    clawed = owed.post(
        f"/v1/redemptions/{redemption_id}/claw-back",
        {"reason_code": "false-invoice"},
        owed.tokens["inspector"],
    )
    assert clawed.status_code == 200
    path = f"/v1/payouts/{payout['id']}/approve"
    problem(owed.post(path, {}, owed.tokens["treasury_2"]), 409, "invalid-state")
    owed.post(
        f"/v1/payouts/{payout['id']}/cancel", {"reason": "clawed back"}, owed.tokens["treasury"]
    )
    again = create(owed).json
    assert [line["redemption_id"] for line in again["lines"]] != [redemption_id]
    assert again["amount_fen"] == 600_000


def test_payouts_are_listed_and_each_read_by_its_payee_only(owed: Api) -> None:
    payout = create(owed).json
    listed = owed.get("/v1/payouts", owed.tokens["auditor"], status="created").json["items"]
    assert [p["id"] for p in listed] == [payout["id"]]
    assert owed.get("/v1/payouts", owed.tokens["auditor"], status="settled").json["items"] == []
    csv_text = owed.get("/v1/payouts", owed.tokens["treasury"], format="csv").text
    assert csv_text.splitlines()[0].startswith("id,payee_id,source_id,amount_fen")
    own = owed.get(f"/v1/payouts/{payout['id']}", owed.tokens["provider"])
    assert own.status_code == 200
    problem(owed.get(f"/v1/payouts/{payout['id']}", owed.tokens["provider_2"]), 404, "not-found")
    source = owed.get("/v1/funding-sources/province-2026", owed.tokens["treasury"]).json
    assert source["paid_fen"] == 0
