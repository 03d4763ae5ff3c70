"""The guarantee fund's policy rules (seed 001 三(四)2–3, 二(四)3; API_CONTRACT.md §4c): loan risk
compensation by Anhui 2022 (@1) and Zhuhai 2022 (@2), recoveries shared back, and the compliant
loss exemption. Pure functions, integer fen and basis points only."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import rules
from ledger.money import split_largest_remainder
from ledger.rules import ClaimHistory, CompensationCut, CompensationDecision, LoanTerms, PoolTerms

ZHUHAI_SHARES_BP = [1250, 8750]  # province 5m + city 35m yuan of a 40m pool
ZHUHAI_POOL_FEN = [500_000_000, 3_500_000_000]
FIRST_LOAN = LoanTerms(first_loan=True)


def zhuhai_pool(
    available_by_source_fen: Sequence[int] = ZHUHAI_POOL_FEN, bank_annual_cap_fen: int | None = None
) -> PoolTerms:
    return PoolTerms(ZHUHAI_SHARES_BP, available_by_source_fen, bank_annual_cap_fen)


def decide(
    loss_fen: int,
    loan: LoanTerms = FIRST_LOAN,
    *,
    rule_ref: str = "risk-compensation@1",
    pool: PoolTerms | None = None,
    history: ClaimHistory | None = None,
) -> CompensationDecision:
    return rules.risk_compensation_fen(loss_fen, loan, pool or zhuhai_pool(), history, rule_ref)


def cut(decision: CompensationDecision, limit: str) -> CompensationCut:
    (found,) = [c for c in decision.cuts if c.limit == limit]
    return found


# ---- the rule records ----------------------------------------------------------------------------


def test_both_versions_of_risk_compensation_are_one_id_applied_by_one_function() -> None:
    v1, v2 = rules.BY_REF["risk-compensation@1"], rules.BY_REF["risk-compensation@2"]
    assert (v1.id, v1.version, v2.id, v2.version) == (
        "risk-compensation",
        1,
        "risk-compensation",
        2,
    )
    assert v1.apply is v2.apply is rules.risk_compensation_fen


def test_every_guarantee_parameter_names_its_source_or_says_it_is_unsourced() -> None:
    for ref, sources in rules.GUARANTEE_PARAMETER_SOURCES.items():
        assert set(sources) == set(rules.BY_REF[ref].params), ref
        assert all(sources.values()), ref
    for ref in ("risk-compensation@1", "risk-compensation@2"):
        sources = rules.GUARANTEE_PARAMETER_SOURCES[ref]
        assert sources["bank_annual_cap_fen"].startswith(rules.UNSOURCED)
        assert all(tier["source"] for tier in rules.BY_REF[ref].params["rate_tiers"])
    assert rules.RISK_COMPENSATION_V2.params["rate_tiers"][-1] == {
        "if": "always",
        "rate_bp": 3000,
        "source": rules.UNSOURCED,
    }
    assert rules.RECOVERY_RETURNED.clause.startswith(rules.UNSOURCED)


def test_the_exemption_rule_cites_seed_001_and_its_lead_unit() -> None:
    rule = rules.BY_REF["compliant-loss-exemption@1"]
    assert (
        rules.SEED_001 in rule.clause and "容错纠错" in rule.clause and "市纪委监委" in rule.clause
    )
    assert rule.apply is rules.compliant_loss_exemption_fen


def test_a_decision_records_the_rule_and_every_parameter_with_the_pools_bank_cap() -> None:
    decision = decide(200_000_000, pool=zhuhai_pool(bank_annual_cap_fen=1_000_000_000))
    assert decision.rule == "risk-compensation@1"
    assert decision.params == {
        **rules.RISK_COMPENSATION_V1.params,
        "bank_annual_cap_fen": 1_000_000_000,
    }
    assert rules.RISK_COMPENSATION_V1.params["bank_annual_cap_fen"] is None  # rule unchanged
    assert decision.params["rate_tiers"] is not rules.RISK_COMPENSATION_V1.params["rate_tiers"]


# ---- the worked example (API_CONTRACT.md §4c) ----------------------------------------------------


def test_a_first_loan_losing_200000000_fen_is_compensated_70000000_split_1250_8750() -> None:
    decision = decide(200_000_000)
    assert decision.rate_bp == 3500
    assert decision.compensation_fen == 70_000_000
    assert decision.splits == [8_750_000, 61_250_000]
    assert decision.not_compensated_fen == 130_000_000


def test_a_loss_of_200000003_fen_is_compensated_70000001_with_the_odd_fen_to_the_city() -> None:
    decision = decide(200_000_003)
    assert decision.compensation_fen == 70_000_001
    assert decision.splits == [8_750_000, 61_250_001]


def test_a_recovery_of_100000000_fen_returns_35000000_split_1250_8750() -> None:
    returned_fen = rules.recovery_returned_fen(100_000_000, 70_000_000, 200_000_000, 0)
    assert returned_fen == 35_000_000
    assert rules.recovery_returned_splits(returned_fen, ZHUHAI_SHARES_BP, [0, 0]) == [
        4_375_000,
        30_625_000,
    ]


# ---- rates ---------------------------------------------------------------------------------------


def test_v1_pays_30_percent_of_the_loss_to_a_loan_with_no_bonus_flag() -> None:
    decision = decide(200_000_000, LoanTerms())
    assert (decision.rate_bp, decision.compensation_fen) == (3000, 60_000_000)
    assert decision.rate_tier["source"] == "anhui.kjdk.2022.direct"


@pytest.mark.parametrize("flag", ["first_loan", "credit_only", "ip_pledge"])
def test_v1_pays_35_percent_when_a_bonus_flag_is_set_and_names_the_flag(flag: str) -> None:
    decision = decide(200_000_000, LoanTerms(**{flag: True}))
    assert (decision.rate_bp, decision.compensation_fen) == (3500, 70_000_000)
    assert decision.rate_tier == {"if": flag, "rate_bp": 3500, "source": "anhui.kjdk.2022.bonus"}


def test_v1_bonus_flags_do_not_add_up_and_the_first_listed_is_the_reason() -> None:
    loan = LoanTerms(first_loan=True, credit_only=True, ip_pledge=True, credit_share_bp=10_000)
    decision = decide(200_000_000, loan)
    assert (decision.rate_bp, decision.rate_tier["if"]) == (3500, "first_loan")


@pytest.mark.parametrize(
    ("credit_share_bp", "rate_bp", "tier"),
    [
        (10_000, 7000, "credit_share_at_least_bp"),
        (7000, 7000, "credit_share_at_least_bp"),  # ≥ 70%: exactly 70% is in
        (6999, 5000, "credit_share_above_bp"),
        (5001, 5000, "credit_share_above_bp"),
        (5000, 3000, "always"),  # > 50%: exactly 50% is out
        (0, 3000, "always"),
        (None, 3000, "always"),
    ],
)
def test_v2_pays_the_highest_zhuhai_tier_the_credit_share_meets(
    credit_share_bp: int | None, rate_bp: int, tier: str
) -> None:
    decision = decide(
        100_000_000, LoanTerms(credit_share_bp=credit_share_bp), rule_ref="risk-compensation@2"
    )
    assert (decision.rate_bp, decision.rate_tier["if"]) == (rate_bp, tier)
    assert decision.compensation_fen == 100_000_000 * rate_bp // 10_000


def test_v2_pays_90_percent_to_a_first_loan_whatever_its_credit_share() -> None:
    loan = LoanTerms(first_loan=True, credit_share_bp=10_000)
    decision = decide(100_000_000, loan, rule_ref="risk-compensation@2")
    assert (decision.rate_bp, decision.rate_tier["if"]) == (9000, "first_loan")
    assert decision.compensation_fen == 90_000_000


def test_the_highest_tier_met_wins_in_whatever_order_the_table_lists_them() -> None:
    lowest_first = list(reversed(rules.RISK_COMPENSATION_V2.params["rate_tiers"]))
    loan = LoanTerms(first_loan=True, credit_share_bp=6000)
    assert rules.risk_compensation_tier(lowest_first, loan)["rate_bp"] == 9000


def test_v2_ignores_v1s_bonus_flags() -> None:
    loan = LoanTerms(credit_only=True, ip_pledge=True)
    assert decide(100_000_000, loan, rule_ref="risk-compensation@2").rate_bp == 3000


# ---- caps, in order ------------------------------------------------------------------------------


def test_every_decision_lists_the_four_limits_in_order_with_what_each_cut() -> None:
    decision = decide(200_000_000)
    assert decision.cuts == [
        CompensationCut("loan-ceiling", 160_000_000, 0),
        CompensationCut("per-loan-cap", 300_000_000, 0),
        CompensationCut("bank-annual-cap", None, 0),
        CompensationCut("pool-available", 70_000_000, 0),
    ]
    assert decision.uncapped_fen == 70_000_000


def test_v1s_80_percent_ceiling_binds_on_a_loan_already_compensated_from_elsewhere() -> None:
    # The loan's first loss of 100,000,000 fen was already compensated 150,000,000 (as if by
    # another level's pool); 80% of its 200,000,000 of losses leaves 10,000,000 for this claim.
    history = ClaimHistory(
        loan_losses_before_fen=100_000_000, loan_compensated_before_fen=150_000_000
    )
    decision = decide(100_000_000, history=history)
    assert decision.uncapped_fen == 35_000_000
    assert cut(decision, "loan-ceiling") == CompensationCut("loan-ceiling", 10_000_000, 25_000_000)
    assert decision.compensation_fen == 10_000_000
    assert decision.not_compensated_fen == 90_000_000


def test_v2_has_no_80_percent_ceiling() -> None:
    history = ClaimHistory(
        loan_losses_before_fen=100_000_000, loan_compensated_before_fen=150_000_000
    )
    decision = decide(100_000_000, rule_ref="risk-compensation@2", history=history)
    assert cut(decision, "loan-ceiling") == CompensationCut("loan-ceiling", None, 0)
    assert decision.compensation_fen == 90_000_000  # 240,000,000 of 200,000,000 lost: no ceiling


def test_the_per_loan_cap_of_3m_yuan_counts_the_loans_earlier_claims() -> None:
    first = decide(200_000_000, rule_ref="risk-compensation@2")
    assert first.compensation_fen == 180_000_000
    history = ClaimHistory(200_000_000, first.compensation_fen)
    second = decide(200_000_000, rule_ref="risk-compensation@2", history=history)
    assert cut(second, "per-loan-cap") == CompensationCut("per-loan-cap", 120_000_000, 60_000_000)
    assert (second.compensation_fen, second.not_compensated_fen) == (120_000_000, 80_000_000)
    history = ClaimHistory(400_000_000, 300_000_000)
    third = decide(200_000_000, rule_ref="risk-compensation@2", history=history)
    assert (third.compensation_fen, third.not_compensated_fen, third.splits) == (
        0,
        200_000_000,
        [0, 0],
    )


def test_the_bank_annual_cap_counts_what_the_bank_already_got_that_fiscal_year() -> None:
    pool = zhuhai_pool(bank_annual_cap_fen=50_000_000)
    history = ClaimHistory(bank_compensated_in_year_fen=40_000_000)
    decision = decide(200_000_000, pool=pool, history=history)
    assert cut(decision, "bank-annual-cap") == CompensationCut(
        "bank-annual-cap", 10_000_000, 60_000_000
    )
    assert decision.compensation_fen == 10_000_000
    assert decision.splits == [1_250_000, 8_750_000]
    assert decision.not_compensated_fen == 190_000_000


def test_the_pool_pays_the_most_its_sources_can_cover_by_shares_to_the_fen() -> None:
    # The province has 1,000,000 fen: 8,000,004..8,000,007 would each give it 1,000,001 by largest
    # remainder, so 8,000,003 is the most, with the odd fen on the city's side.
    pool = zhuhai_pool([1_000_000, 100_000_000])
    decision = decide(200_000_000, pool=pool)
    assert cut(decision, "pool-available") == CompensationCut(
        "pool-available", 8_000_003, 61_999_997
    )
    assert decision.splits == [1_000_000, 7_000_003]
    assert decision.not_compensated_fen == 191_999_997


def test_a_source_with_nothing_left_stops_the_claim_where_its_share_rounds_to_zero() -> None:
    # 3 fen split 1250/8750 is 0.375/2.625: the province's part rounds to 0, 4 fen would give it 1.
    decision = decide(200_000_000, pool=zhuhai_pool([0, 3_500_000_000]))
    assert (decision.compensation_fen, decision.splits) == (3, [0, 3])
    assert decision.not_compensated_fen == 199_999_997


# ---- recoveries ----------------------------------------------------------------------------------


def test_three_recoveries_return_to_the_fen_what_their_total_earns_not_the_sum_of_floors() -> None:
    # 35% of 10,000,001 is 3,500,000.35: flooring each recovery would return 10,500,000 in all;
    # flooring the running total returns 10,500,001.
    returned: list[int] = []
    splits: list[list[int]] = []
    by_source = [0, 0]
    for recovered_total_fen in (10_000_001, 20_000_002, 30_000_003):
        now_fen = rules.recovery_returned_fen(
            recovered_total_fen, 70_000_000, 200_000_000, sum(returned)
        )
        parts = rules.recovery_returned_splits(sum(returned) + now_fen, ZHUHAI_SHARES_BP, by_source)
        returned.append(now_fen)
        splits.append(parts)
        by_source = [b + p for b, p in zip(by_source, parts, strict=True)]
    assert returned == [3_500_000, 3_500_000, 3_500_001]
    assert splits == [[437_500, 3_062_500], [437_500, 3_062_500], [437_500, 3_062_501]]
    assert by_source == [1_312_500, 9_187_501]  # the largest-remainder split of 10,500,001


def test_recoveries_beyond_the_loss_return_no_more_than_the_compensation() -> None:
    assert rules.recovery_returned_fen(250_000_000, 70_000_001, 200_000_003, 0) == 70_000_001
    assert rules.recovery_returned_fen(300_000_000, 70_000_001, 200_000_003, 70_000_001) == 0


def test_a_source_never_gives_back_a_fen_when_largest_remainder_would_move_it() -> None:
    # Alabama paradox: 500/1500/8000 splits 10 as 1/1/8 but 11 as 0/2/9.
    shares_bp = [500, 1500, 8000]
    assert rules.recovery_returned_splits(10, shares_bp, [0, 0, 0]) == [1, 1, 8]
    assert rules.recovery_returned_splits(11, shares_bp, [1, 1, 8]) == [0, 0, 1]


def test_returns_recorded_under_other_shares_still_never_take_a_fen_back() -> None:
    # Before: 5 fen all to the first source (not this split); now 6 in all: the new fen is split.
    assert rules.recovery_returned_splits(6, [5000, 2500, 2500], [5, 0, 0]) == [1, 0, 0]


# ---- the compliant-loss exemption ----------------------------------------------------------------


def test_the_exempt_net_loss_is_the_compensation_less_what_recoveries_returned() -> None:
    assert rules.compliant_loss_exemption_fen(70_000_000, 35_000_000) == 35_000_000
    assert rules.compliant_loss_exemption_fen(70_000_000, 0) == 70_000_000
    assert rules.compliant_loss_exemption_fen(70_000_000, 70_000_000) == 0


# ---- properties ----------------------------------------------------------------------------------

AMOUNT_FEN = st.integers(0, 10**12)


@st.composite
def shares_bp(draw: st.DrawFn, max_sources: int = 4) -> list[int]:
    """1..max_sources shares adding up to 10000 bp (some may be 0)."""
    cuts = sorted(draw(st.lists(st.integers(0, 10_000), max_size=max_sources - 1)))
    bounds = [0, *cuts, 10_000]
    return [high - low for low, high in itertools.pairwise(bounds)]


@st.composite
def claims(draw: st.DrawFn) -> tuple[int, LoanTerms, PoolTerms, ClaimHistory, str]:
    shares = draw(shares_bp())
    pool = PoolTerms(
        shares,
        draw(st.lists(AMOUNT_FEN, min_size=len(shares), max_size=len(shares))),
        draw(st.none() | AMOUNT_FEN),
    )
    loan = LoanTerms(
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.none() | st.integers(0, 10_000)),
    )
    history = ClaimHistory(draw(AMOUNT_FEN), draw(AMOUNT_FEN), draw(AMOUNT_FEN))
    rule_ref = draw(st.sampled_from(["risk-compensation@1", "risk-compensation@2"]))
    return draw(AMOUNT_FEN), loan, pool, history, rule_ref


@given(claims())
def test_property_a_compensation_split_adds_up_exactly_and_fits_every_source(
    claim: tuple[int, LoanTerms, PoolTerms, ClaimHistory, str],
) -> None:
    decision = rules.risk_compensation_fen(*claim)
    pool = claim[2]
    assert sum(decision.splits) == decision.compensation_fen
    assert all(
        part <= available
        for part, available in zip(decision.splits, pool.available_by_source_fen, strict=True)
    )
    assert decision.splits == split_largest_remainder(decision.compensation_fen, pool.shares_bp)


@given(claims())
def test_property_compensation_never_exceeds_the_loss_and_the_rest_is_recorded(
    claim: tuple[int, LoanTerms, PoolTerms, ClaimHistory, str],
) -> None:
    decision = rules.risk_compensation_fen(*claim)
    assert 0 <= decision.compensation_fen <= decision.loss_fen
    assert decision.compensation_fen + decision.not_compensated_fen == decision.loss_fen
    assert decision.uncapped_fen - sum(c.cut_fen for c in decision.cuts) == (
        decision.compensation_fen
    )


@given(claims())
def test_property_compensation_never_exceeds_any_cap(
    claim: tuple[int, LoanTerms, PoolTerms, ClaimHistory, str],
) -> None:
    loss_fen, _, pool, history, rule_ref = claim
    decision = rules.risk_compensation_fen(*claim)
    compensated_fen = history.loan_compensated_before_fen + decision.compensation_fen
    assert decision.compensation_fen == 0 or compensated_fen <= 300_000_000
    if rule_ref == "risk-compensation@1" and decision.compensation_fen:
        assert compensated_fen <= (history.loan_losses_before_fen + loss_fen) * 8000 // 10_000
    if pool.bank_annual_cap_fen is not None and decision.compensation_fen:
        assert (
            history.bank_compensated_in_year_fen + decision.compensation_fen
            <= pool.bank_annual_cap_fen
        )
    assert decision.compensation_fen <= decision.loss_fen * decision.rate_bp // 10_000


@given(st.integers(0, 3000), shares_bp(max_sources=3), st.lists(st.integers(0, 400), max_size=3))
def test_property_the_pool_pays_the_largest_amount_its_sources_can_cover(
    wanted_fen: int, shares: list[int], available: list[int]
) -> None:
    available = [*available, 0, 0, 0][: len(shares)]
    fundable_fen = rules.pool_fundable_fen(wanted_fen, shares, available)

    def fits(amount_fen: int) -> bool:
        parts = split_largest_remainder(amount_fen, shares)
        return all(p <= a for p, a in zip(parts, available, strict=True))

    assert 0 <= fundable_fen <= wanted_fen and fits(fundable_fen)
    assert not any(fits(amount_fen) for amount_fen in range(fundable_fen + 1, wanted_fen + 1))


@given(AMOUNT_FEN, AMOUNT_FEN, st.lists(AMOUNT_FEN, min_size=1, max_size=8))
def test_property_returned_totals_never_decrease_and_never_exceed_the_compensation(
    loss_fen: int, compensation_seed_fen: int, recoveries_fen: list[int]
) -> None:
    compensation_fen = compensation_seed_fen % (loss_fen + 1)
    recovered_fen = returned_fen = 0
    for recovery_fen in recoveries_fen:
        recovered_fen += recovery_fen
        now_fen = rules.recovery_returned_fen(
            recovered_fen, compensation_fen, loss_fen, returned_fen
        )
        assert now_fen >= 0
        returned_fen += now_fen
        assert returned_fen <= compensation_fen
        if loss_fen:
            assert returned_fen == min(recovered_fen, loss_fen) * compensation_fen // loss_fen


@given(shares_bp(max_sources=5), st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_property_returns_per_source_add_up_and_stay_within_a_fen_of_their_share(
    shares: list[int], returned_now_fen: list[int]
) -> None:
    total_fen = 0
    by_source = [0] * len(shares)
    for now_fen in returned_now_fen:
        total_fen += now_fen
        parts = rules.recovery_returned_splits(total_fen, shares, by_source)
        assert all(part >= 0 for part in parts) and sum(parts) == now_fen
        by_source = [b + p for b, p in zip(by_source, parts, strict=True)]
        for running_fen, share in zip(by_source, shares, strict=True):
            floor_fen, remainder = divmod(total_fen * share, 10_000)
            assert floor_fen <= running_fen <= floor_fen + (1 if remainder else 0)
