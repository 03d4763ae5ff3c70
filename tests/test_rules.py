"""Each policy rule with the seed's own numbers (seed 003: 聊政字〔2020〕15号)."""

from __future__ import annotations

from ledger import rules


def test_every_rule_has_an_id_a_version_and_its_source_clause() -> None:
    ids = [rule.id for rule in rules.ALL_RULES]
    assert len(ids) == len(set(ids))
    for rule in rules.ALL_RULES:
        assert rule.version >= 1
        assert rule.source
        assert rule.ref == f"{rule.id}@{rule.version}"


def test_voucher_cofunding_is_60_percent_province_plus_30_percent_city() -> None:
    assert rules.VOUCHER_COFUNDING.params == {"province_bp": 6000, "city_bp": 3000}
    decision = rules.voucher_subsidy(
        contract_amount_fen=1_000_000,
        shares_bp_total=9000,
        remaining_by_source=[1_333_333, 666_667],
        enterprise_cap_remaining_fen=10_000_000,
    )
    assert decision.subsidy_fen == 900_000
    assert decision.splits == [600_000, 300_000]
    assert decision.enterprise_pays_fen == 100_000


def test_voucher_subsidy_is_limited_by_what_is_left_on_the_voucher() -> None:
    decision = rules.voucher_subsidy(1_000_000, 9000, [100, 50], 10_000_000)
    assert decision.subsidy_fen == 150
    assert decision.splits == [100, 50]
    assert decision.enterprise_pays_fen == 1_000_000 - 150


def test_voucher_subsidy_is_limited_by_the_enterprise_cap_left() -> None:
    decision = rules.voucher_subsidy(1_000_000, 9000, [1_333_333, 666_667], 90_001)
    assert decision.subsidy_fen == 90_001
    assert sum(decision.splits) == 90_001


def test_provider_post_subsidy_is_5_percent_capped_at_500000_yuan_a_year() -> None:
    assert rules.PROVIDER_POST_SUBSIDY.params == {"rate_bp": 500, "annual_cap_fen": 50_000_000}
    assert rules.provider_bonus_fen(1_000_000, 500, 50_000_000) == 50_000
    # 5% of 20,000,000 yuan is 1,000,000 yuan: only the 500,000 yuan cap is paid.
    assert rules.provider_bonus_fen(2_000_000_000, 500, 50_000_000) == 50_000_000
    # Part-way through the year only the remainder of the cap is left; never negative.
    assert rules.provider_bonus_fen(1_000_000, 500, 20_000) == 20_000
    assert rules.provider_bonus_fen(1_000_000, 500, 0) == 0
    assert rules.provider_bonus_fen(1_000_000, 500, -5) == 0


def test_technology_development_and_transfer_get_1_5_percent_up_to_500000_yuan() -> None:
    # 1.5% of 1,000,000 yuan = 15,000 yuan.
    assert rules.technology_contract_subsidy_fen("development", 100_000_000) == 1_500_000
    assert rules.technology_contract_subsidy_fen("transfer", 100_000_000) == 1_500_000
    # 1.5% of 50,000,000 yuan would be 750,000 yuan: capped at 500,000 yuan.
    assert rules.technology_contract_subsidy_fen("transfer", 5_000_000_000) == 50_000_000


def test_technology_consulting_and_service_get_1_permille_up_to_200000_yuan() -> None:
    # 1‰ of 1,000,000 yuan = 1,000 yuan.
    assert rules.technology_contract_subsidy_fen("consulting", 100_000_000) == 100_000
    assert rules.technology_contract_subsidy_fen("service", 100_000_000) == 100_000
    # 1‰ of 300,000,000 yuan would be 300,000 yuan: capped at 200,000 yuan.
    assert rules.technology_contract_subsidy_fen("service", 30_000_000_000) == 20_000_000


def test_a_repeated_transfer_is_subsidised_on_the_increment_only() -> None:
    # Transferred before for 1,000,000 yuan, now for 1,600,000 yuan: 1.5% of 600,000 yuan.
    assert (
        rules.technology_contract_subsidy_fen(
            "transfer", 160_000_000, previously_transferred_fen=100_000_000
        )
        == 900_000
    )
    # No increment, no subsidy.
    assert (
        rules.technology_contract_subsidy_fen(
            "transfer", 80_000_000, previously_transferred_fen=100_000_000
        )
        == 0
    )


def test_instrument_sharing_pays_the_smaller_of_10_percent_lease_and_20_percent_testing() -> None:
    # Lease 1,000,000 yuan -> 100,000; testing 400,000 yuan -> 80,000: the smaller, 80,000 yuan.
    assert rules.instrument_sharing_subsidy_fen(100_000_000, 40_000_000, 50_000_000) == 8_000_000
    # Lease 300,000 yuan -> 30,000; testing 400,000 yuan -> 80,000: 30,000 yuan.
    assert rules.instrument_sharing_subsidy_fen(30_000_000, 40_000_000, 50_000_000) == 3_000_000
    # Never above the 500,000 yuan left of the institution's year.
    assert (
        rules.instrument_sharing_subsidy_fen(10_000_000_000, 10_000_000_000, 50_000_000)
        == 50_000_000
    )
    assert rules.instrument_sharing_subsidy_fen(100_000_000, 40_000_000, 1_000) == 1_000


def test_a_provincial_award_is_matched_one_to_one_by_the_city() -> None:
    assert rules.award_match_fen(12_345_678) == 12_345_678
    assert rules.award_match_fen(12_345_678, budget_remaining_fen=10_000_000) == 10_000_000
