"""The public contract over HTTP (API_CONTRACT.md §2, §4, §5), on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import ENTERPRISE, PROVIDER
from tests.test_commands import recorded


def test_the_worked_example_over_http_gives_the_contracts_numbers(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    voucher = api.get(f"/v1/vouchers/{voucher_id}", api.tokens["auditor"]).json
    assert voucher["status"] == "active"
    assert voucher["reservations"] == [
        {"source_id": "province-2026", "amount_fen": 1_333_333},
        {"source_id": "city-2026", "amount_fen": 666_667},
    ]
    result = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    assert result.status_code == 201, result.text
    r = result.json
    assert (r["subsidy_fen"], r["enterprise_pays_fen"]) == (900_000, 100_000)
    assert r["splits"] == [
        {"source_id": "province-2026", "amount_fen": 600_000},
        {"source_id": "city-2026", "amount_fen": 300_000},
    ]
    assert (r["provider_bonus_fen"], r["voucher_remaining_fen"]) == (50_000, 1_100_000)
    assert r["provider_id"] == PROVIDER
    assert int(result.headers["X-Ledger-Position"]) == api.log_length()
    province = api.get("/v1/funding-sources/province-2026", api.tokens["treasury"]).json
    assert province["committed_fen"] == 1_333_333
    assert province["disbursed_fen"] == 600_000
    assert province["available_fen"] == 100_000_000 - 1_333_333
    balances = api.get(
        f"/v1/institutions/{ENTERPRISE}/balances", api.tokens["auditor"], fiscal_year=2026
    ).json
    assert balances["subsidy_received_fen"] == 900_000
    assert balances["enterprise_cap_remaining_fen"] == 10_000_000 - 900_000
    provider = api.get(
        f"/v1/institutions/{PROVIDER}/balances", api.tokens["provider"], fiscal_year=2026
    ).json
    assert provider["redeemed_contract_fen"] == 1_000_000
    assert provider["provider_bonus_fen"] == 50_000
    assert provider["provider_bonus_cap_remaining_fen"] == 50_000_000 - 50_000


# ---- every error slug of API_CONTRACT.md §2, each storing nothing ----------------------------


def refused(api: Api, result, status: int, slug: str, before: int) -> None:  # type: ignore[no-untyped-def]
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    problem = result.json
    assert problem["type"].endswith(f"/{slug}")
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert api.log_length() == before + recorded(slug), "a refused request stored something"


def test_malformed_money_dates_and_codes_are_validation_errors_that_store_nothing(
    api: Api,
) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    token = api.tokens["provider"]
    before = api.log_length()
    for bad in (
        {"contract_amount_fen": 1_000_000.0},
        {"contract_amount_fen": "1000000"},
        {"contract_amount_fen": -1},
        {"contract_amount_fen": True},
        {"contract_amount_fen": 10**16},
        {"service_date": "2026-13-01"},
        {"service_date": "01/04/2026"},
        {"unexpected": 1},
    ):
        result = api.post("/v1/redemptions", redemption_body(voucher_id, **bad), token)
        refused(api, result, 422, "validation-error", before)
    bad_uscc = {"id": ENTERPRISE[:-1] + ("0" if ENTERPRISE[-1] != "0" else "1"), "name": "x"}
    result = api.post("/v1/institutions", {**bad_uscc, "kind": "enterprise"})
    refused(api, result, 422, "validation-error", before)


def test_an_unknown_voucher_is_not_found(api: Api) -> None:
    open_worked_example(api)
    before = api.log_length()
    body = redemption_body("00000000-0000-4000-8000-000000000000")
    refused(
        api, api.post("/v1/redemptions", body, api.tokens["provider"]), 404, "not-found", before
    )
    result = api.get("/v1/funding-sources/no-such-source", api.tokens["auditor"])
    refused(api, result, 404, "not-found", before)


def test_a_source_that_cannot_cover_the_reservation_is_insufficient_funds(api: Api) -> None:
    open_worked_example(api)
    # Each voucher commits 1,666,667 of the city's 50,000,000 at 3000/9000 and the 277,777 of
    # post-subsidy its 5,000,000 can earn (500 bp of 5,555,555 honoured): 25 fit, not 26.
    for _ in range(25):
        issue(api, face_value_fen=5_000_000)
    before = api.log_length()
    body = {
        "program_id": "innovation-2026",
        "holder_id": ENTERPRISE,
        "face_value_fen": 5_000_000,
        "valid_until": "2026-12-31",
    }
    result = api.post("/v1/vouchers", body, api.tokens["program_officer"])
    refused(api, result, 422, "insufficient-funds", before)


def test_a_service_date_after_valid_until_is_voucher_expired(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    before = api.log_length()
    body = redemption_body(voucher_id, service_date="2027-01-01")
    refused(
        api,
        api.post("/v1/redemptions", body, api.tokens["provider"]),
        422,
        "voucher-expired",
        before,
    )


def test_a_revoked_voucher_is_not_active(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    revoke = api.post(
        f"/v1/vouchers/{voucher_id}/revoke", {"reason": "fraud"}, api.tokens["inspector"]
    )
    assert revoke.status_code == 200 and revoke.json["status"] == "revoked"
    before = api.log_length()
    result = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    refused(api, result, 422, "voucher-not-active", before)


def test_a_holder_without_cap_left_is_enterprise_cap_reached(api: Api) -> None:
    open_worked_example(api)
    vouchers = [issue(api, face_value_fen=5_000_000) for _ in range(3)]
    for n, voucher_id in enumerate(vouchers[:2]):  # 2 x 4,500,000 of the 10,000,000 cap
        body = redemption_body(voucher_id, f"C-{n}", contract_amount_fen=5_000_000)
        assert api.post("/v1/redemptions", body, api.tokens["provider"]).status_code == 201
    body = redemption_body(vouchers[2], "C-9", contract_amount_fen=5_000_000)
    assert (
        api.post("/v1/redemptions", body, api.tokens["provider"]).json["subsidy_fen"] == 1_000_000
    )
    before = api.log_length()
    body = redemption_body(vouchers[2], "C-10")
    result = api.post("/v1/redemptions", body, api.tokens["provider"])
    refused(api, result, 422, "enterprise-cap-reached", before)


def test_a_contract_or_invoice_claimed_twice_is_a_duplicate_claim(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    first = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    assert first.status_code == 201
    before = api.log_length()
    again = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    refused(api, again, 409, "duplicate-claim", before)
    same_invoice = redemption_body(voucher_id, "C-2", invoice_no="INV-C-1")
    result = api.post("/v1/redemptions", same_invoice, api.tokens["provider_2"])
    refused(api, result, 409, "duplicate-claim", before + 1)


def test_a_provider_redeeming_its_own_voucher_is_self_dealing(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api, holder=PROVIDER)
    before = api.log_length()
    result = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    refused(api, result, 422, "self-dealing", before)


def test_a_frozen_provider_cannot_be_paid(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    freeze = api.post(
        f"/v1/institutions/{PROVIDER}/freeze",
        {"reason": "under inspection"},
        api.tokens["inspector"],
    )
    assert freeze.status_code == 200 and freeze.json["frozen"] is True
    before = api.log_length()
    result = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    refused(api, result, 422, "payee-frozen", before)
    unfreeze = api.post(
        f"/v1/institutions/{PROVIDER}/unfreeze", {"reason": "cleared"}, api.tokens["inspector"]
    )
    assert unfreeze.status_code == 200
    assert (
        api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"]).status_code
        == 201
    )


def test_a_clawback_is_recorded_and_shows_as_recovered(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    redemption = api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"])
    result = api.post(
        f"/v1/redemptions/{redemption.json['id']}/claw-back",
        {"reason_code": "fake-invoice"},
        api.tokens["inspector"],
    )
    assert result.status_code == 200 and result.json["clawed_back"] is True
    province = api.get("/v1/funding-sources/province-2026", api.tokens["auditor"]).json
    assert province["recovered_fen"] == 600_000


def test_as_of_reads_a_voucher_and_a_source_as_they_were(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    before = api.get(f"/v1/vouchers/{voucher_id}", api.tokens["auditor"]).json
    instant = api.app.ledger.recorder.select_notifications(api.log_length(), 1)[0]
    stamp = api.app.ledger.mapper.to_domain_event(instant).timestamp.isoformat()
    assert (
        api.post("/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"]).status_code
        == 201
    )
    then = api.get(f"/v1/vouchers/{voucher_id}", api.tokens["auditor"], as_of=stamp).json
    assert then["remaining_fen"] == before["remaining_fen"] == 2_000_000
    now = api.get(f"/v1/vouchers/{voucher_id}", api.tokens["auditor"]).json
    assert now["remaining_fen"] == 1_100_000
    source_then = api.get("/v1/funding-sources/province-2026", api.tokens["auditor"], as_of=stamp)
    assert source_then.json["disbursed_fen"] == 0
    bad = api.get(f"/v1/vouchers/{voucher_id}", api.tokens["auditor"], as_of="yesterday")
    assert bad.status_code == 422
