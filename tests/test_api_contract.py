"""The public contract over HTTP (API_CONTRACT.md §2, §4, §5), on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import ENTERPRISE, PROVIDER


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
