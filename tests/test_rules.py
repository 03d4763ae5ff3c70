"""Each policy rule with the seed's own numbers (seed 003: 聊政字〔2020〕15号)."""

from __future__ import annotations

from ledger import rules


def test_every_rule_has_an_id_a_version_its_clause_and_the_function_named_after_it() -> None:
    # Refs, not ids, are unique: two versions of one rule share its id.
    refs = [rule.ref for rule in rules.ALL_RULES]
    assert len(refs) == len(set(refs))
    for rule in rules.ALL_RULES:
        assert rule.version >= 1
        assert rule.clause
        assert rule.ref == f"{rule.id}@{rule.version}"
        assert rule.apply.__name__.replace("_", "-").startswith(rule.id)
        assert getattr(rules, rule.apply.__name__) is rule.apply
    assert rules.BY_REF["provider-post-subsidy@1"].apply is rules.provider_post_subsidy_fen


def test_a_programme_overrides_a_parameter_but_never_invents_one() -> None:
    params = rules.PROVIDER_POST_SUBSIDY.with_overrides({"rate_bp": 300})
    assert params == {"rate_bp": 300, "annual_cap_fen": 50_000_000}
    assert rules.PROVIDER_POST_SUBSIDY.params["rate_bp"] == 500  # the rule itself is unchanged
    try:
        rules.PROVIDER_POST_SUBSIDY.with_overrides({"rate": 300})
    except AssertionError:
        pass
    else:
        raise AssertionError("an unknown parameter was accepted")


def test_voucher_cofunding_is_60_percent_province_plus_30_percent_city() -> None:
    assert rules.VOUCHER_COFUNDING.params == {"shares_bp": [6000, 3000]}
    decision = rules.voucher_cofunding(
        contract_amount_fen=1_000_000,
        remaining_by_source=[1_333_333, 666_667],
        enterprise_cap_remaining_fen=10_000_000,
    )
    assert decision.subsidy_fen == 900_000
    assert decision.splits == [600_000, 300_000]
    assert decision.enterprise_pays_fen == 100_000


def test_voucher_cofunding_reads_the_programme_shares_it_is_given() -> None:
    decision = rules.voucher_cofunding(1_000_000, [10**9], 10**9, {"shares_bp": [5000]})
    assert decision.subsidy_fen == 500_000


def test_voucher_subsidy_is_limited_by_what_is_left_on_the_voucher() -> None:
    decision = rules.voucher_cofunding(1_000_000, [100, 50], 10_000_000)
    assert decision.subsidy_fen == 150
    assert decision.splits == [100, 50]
    assert decision.enterprise_pays_fen == 1_000_000 - 150


def test_voucher_subsidy_is_limited_by_the_enterprise_cap_left() -> None:
    decision = rules.voucher_cofunding(1_000_000, [1_333_333, 666_667], 90_001)
    assert decision.subsidy_fen == 90_001
    assert sum(decision.splits) == 90_001


def test_provider_post_subsidy_is_5_percent_of_the_honoured_contract() -> None:
    assert rules.PROVIDER_POST_SUBSIDY.params == {"rate_bp": 500, "annual_cap_fen": 50_000_000}
    assert rules.provider_post_subsidy_fen(1_000_000) == 50_000
    assert rules.provider_post_subsidy_fen(1_000_000, {"rate_bp": 300}) == 30_000
    assert rules.provider_post_subsidy_fen(19) == 0  # rounds down to the fen


def test_the_honoured_contract_is_all_of_it_when_the_voucher_covered_its_share() -> None:
    assert rules.honoured_contract_fen(1_000_000, 900_000, 9000) == 1_000_000
    # 1,000,001 × 90% = 900,000.9: the subsidy is the full share, rounded down.
    assert rules.honoured_contract_fen(1_000_001, 900_000, 9000) == 1_000_001


def test_a_contract_larger_than_the_voucher_can_cover_earns_nothing_on_the_excess() -> None:
    # The repro: a 100-fen voucher against a contract of 10^15 fen honours 111 fen.
    honoured = rules.honoured_contract_fen(10**15, 100, 9000)
    assert honoured == 111
    assert rules.provider_post_subsidy_fen(honoured) == 5
    # Cut by the enterprise's cap the same way: 90,001 of subsidy honours 100,001 fen.
    assert rules.honoured_contract_fen(1_000_000, 90_001, 9000) == 100_001


def test_a_voucher_reserves_the_most_post_subsidy_its_face_value_can_earn() -> None:
    cofunding = {"shares_bp": [6000, 3000]}
    worked = rules.voucher_reservation(2_000_000, cofunding)
    assert (worked.splits, worked.post_subsidy_fen) == ([1_333_333, 666_667], 111_111)
    assert rules.voucher_reservation(100, cofunding).post_subsidy_fen == 5
    assert rules.voucher_reservation(100, cofunding, {"rate_bp": 0}).post_subsidy_fen == 0


def test_the_enterprise_cap_leaves_what_was_not_received_and_never_less_than_nothing() -> None:
    assert rules.enterprise_annual_cap_remaining_fen(0) == 10_000_000
    assert rules.enterprise_annual_cap_remaining_fen(900_000, {"annual_cap_fen": 1_000_000}) == (
        100_000
    )
    assert rules.enterprise_annual_cap_remaining_fen(2_000_000, {"annual_cap_fen": 1}) == 0


def test_one_contract_is_one_claim_whatever_the_case_of_its_number() -> None:
    keys = {rules.one_contract_one_claim_key(n) for n in ("CASE-1", "case-1", "Case-1")}
    assert keys == {"case-1"}
    assert rules.one_contract_one_claim_key("CASE-2") != rules.one_contract_one_claim_key("CASE-1")


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
    assert rules.provincial_award_match_fen(12_345_678) == 12_345_678
    assert (
        rules.provincial_award_match_fen(12_345_678, budget_remaining_fen=10_000_000) == 10_000_000
    )
