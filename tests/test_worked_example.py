"""API_CONTRACT.md §5, number by number, on SQLite and PostgreSQL."""

from __future__ import annotations

from ledger.application import VoucherLedger
from tests.conftest import ENTERPRISE, PROVIDER, World, issue, redeem


def test_issuing_the_worked_voucher_reserves_1333333_and_666667(
    app: VoucherLedger, world: World
) -> None:
    voucher = app.voucher(issue(app))

    assert voucher.face_value_fen == 2_000_000
    assert voucher.remaining_fen == 2_000_000
    assert voucher.status == "active"
    assert voucher.reservations == (("province-2026", 1_333_333), ("city-2026", 666_667))
    assert app.funding_source("province-2026").committed_fen == 1_333_333
    assert app.funding_source("province-2026").available_fen == 100_000_000 - 1_333_333


def test_the_worked_voucher_reserves_the_post_subsidy_it_can_earn_on_the_city_source(
    app: VoucherLedger, world: World
) -> None:
    voucher = app.voucher(issue(app))

    # 2,000,000 fen of face value honours at most 2,222,222 fen of contract at 9000 bp, whose
    # 500 bp post-subsidy is 111,111 fen: the most the voucher's redemptions can earn.
    assert (voucher.post_subsidy_source_id, voucher.post_subsidy_reserved_fen) == (
        "city-2026",
        111_111,
    )
    city = app.funding_source("city-2026")
    assert (city.reserved_fen, city.post_subsidy_reserved_fen) == (666_667, 111_111)
    assert city.committed_fen == 666_667 + 111_111
    assert city.available_fen == 50_000_000 - 666_667 - 111_111


def test_redeeming_a_1000000_contract_gives_the_worked_numbers(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app)

    redemption, position = redeem(app, voucher_id, amount_fen=1_000_000)

    assert redemption.subsidy_fen == 900_000
    assert redemption.splits == (("province-2026", 600_000), ("city-2026", 300_000))
    assert redemption.enterprise_pays_fen == 100_000
    assert redemption.post_subsidy_fen == 50_000
    assert redemption.voucher_remaining_fen == 1_100_000
    assert redemption.provider_id == PROVIDER and redemption.holder_id == ENTERPRISE
    assert position is not None and position > 0
    voucher = app.voucher(voucher_id)
    assert voucher.remaining_by_source == (("province-2026", 733_333), ("city-2026", 366_667))


def test_the_worked_redemption_records_its_rules_and_reads_back_the_same(
    app: VoucherLedger, world: World
) -> None:
    redemption, _ = redeem(app, issue(app))

    stored = app.redemption(redemption.id)

    assert stored == redemption
    assert "voucher-cofunding@1" in stored.rules
    assert "provider-post-subsidy@1" in stored.rules


def test_redemption_does_not_touch_the_funding_source_commitment(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app)
    before = app.funding_source("province-2026")

    redeem(app, voucher_id)

    after = app.funding_source("province-2026")
    assert after.committed_fen == before.committed_fen
    assert after.available_fen == before.available_fen


def test_caps_count_the_worked_redemption(app: VoucherLedger, world: World) -> None:
    redeem(app, issue(app))

    enterprise_year = app.enterprise_year(ENTERPRISE, 2026)
    provider_year = app.provider_year(PROVIDER, 2026)
    assert enterprise_year is not None and provider_year is not None
    assert enterprise_year.subsidy_received_fen == 900_000
    assert provider_year.redeemed_contract_fen == 1_000_000
    assert provider_year.subsidy_earned_fen == 900_000
    assert provider_year.post_subsidy_accrued_fen == 50_000
