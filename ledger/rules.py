"""Policy rules: each one record (id, version, the clause it comes from, its parameters) and the
function that applies it, named after it (DESIGN.md §4; STYLE.md: a rule is found by its name).

A rule's function reads its parameters from the rule. A programme that sets a parameter of its
own (its shares, its post-subsidy rate, its caps) records the override when it is created
(``Programme.rule_params``), and every decision event records the id, version and the
parameters it was decided with, so an auditor can see why an amount is what it is. Seed files
are in ../shared/seeds/; seed 003 is 003_0b34bd42ca6e5c30.txt (聊政字〔2020〕15号)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.money import BP_WHOLE, apply_bp, split_largest_remainder

SEED_003 = "seeds/003_0b34bd42ca6e5c30.txt"
SEED_001 = "seeds/001_184da36d701c505f.txt"

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    clause: str  # the seed file and clause it comes from, quoted
    params: Params
    apply: Callable[..., Any]  # the function that applies it, named after it

    ref: str = field(init=False)  # ``id@version``, the form recorded in events

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", f"{self.id}@{self.version}")

    def with_overrides(self, overrides: Params) -> dict[str, Any]:
        """The parameters a programme applies: the rule's own, with ``overrides`` replacing
        some of them (never adding one the rule does not have)."""
        unknown = set(overrides) - set(self.params)
        assert not unknown, f"{self.ref} has no parameters {sorted(unknown)}"
        return {**self.params, **overrides}


# ---- voucher co-funding (seed 003 五(三)) ------------------------------------------------------


@dataclass(frozen=True)
class SubsidyDecision:
    subsidy_fen: int
    enterprise_pays_fen: int
    splits: list[int]


def voucher_cofunding(
    contract_amount_fen: int,
    remaining_by_source: Sequence[int],
    enterprise_cap_remaining_fen: int,
    params: Params | None = None,
) -> SubsidyDecision:
    """``min(contract × Σshares_bp, voucher remaining, enterprise cap left)``, split by the
    voucher's remaining reservation per source, so a used-up voucher leaves exactly zero
    everywhere (DESIGN.md §3)."""
    shares_bp: Sequence[int] = (params or VOUCHER_COFUNDING.params)["shares_bp"]
    subsidy_fen = min(
        apply_bp(contract_amount_fen, sum(shares_bp)),
        sum(remaining_by_source),
        enterprise_cap_remaining_fen,
    )
    splits = split_largest_remainder(subsidy_fen, remaining_by_source)
    return SubsidyDecision(subsidy_fen, contract_amount_fen - subsidy_fen, splits)


VOUCHER_COFUNDING = Rule(
    "voucher-cofunding",
    1,
    f"{SEED_003} 五(三): 省补贴60%补助的同时市财政再给予30%的补助",
    {"shares_bp": [6000, 3000]},  # province, city; a programme names its own sources and shares
    voucher_cofunding,
)


# ---- provider post-subsidy (seed 003 五(三)) ---------------------------------------------------


def honoured_contract_fen(contract_amount_fen: int, subsidy_fen: int, shares_bp_total: int) -> int:
    """The part of the contract the voucher honoured (按兑现条件服务合同额): all of it when the
    subsidy was its full co-funding share; else the contract amount whose share the subsidy
    paid, ``subsidy × 10000 // Σshares``, never more than the contract. A contract larger than
    the voucher can cover earns nothing on the excess."""
    assert shares_bp_total > 0
    if subsidy_fen == apply_bp(contract_amount_fen, shares_bp_total):
        return contract_amount_fen
    return min(contract_amount_fen, subsidy_fen * BP_WHOLE // shares_bp_total)


def provider_post_subsidy_fen(honoured_contract_fen: int, params: Params | None = None) -> int:
    """``rate_bp`` of the honoured contract amount, rounded down. The annual cap is the
    provider's year counter's to apply (``ProviderYear.post_subsidy_room_fen``)."""
    rate_bp: int = (params or PROVIDER_POST_SUBSIDY.params)["rate_bp"]
    return apply_bp(honoured_contract_fen, rate_bp)


PROVIDER_POST_SUBSIDY = Rule(
    "provider-post-subsidy",
    1,
    f"{SEED_003} 五(三): 按兑现条件服务合同额的5%给予后补助, 年获补助总额不超过50万元",
    {"rate_bp": 500, "annual_cap_fen": 50_000_000},
    provider_post_subsidy_fen,
)


# ---- what issuing a voucher reserves (DESIGN.md §3) -------------------------------------------


@dataclass(frozen=True)
class Reservation:
    splits: list[int]  # the face value per share source, in the programme's order
    post_subsidy_fen: int  # the most post-subsidy the voucher's redemptions can earn


def voucher_reservation(
    face_value_fen: int, cofunding: Params, post_subsidy: Params | None = None
) -> Reservation:
    """The face value split by the programme's shares (largest remainder), and the largest
    post-subsidy its redemptions can earn: the post-subsidy of the most contract the face value
    can honour. Reserving it at issuance keeps every post-subsidy covered by its source
    without the redemption path ever writing the source."""
    shares_bp: Sequence[int] = cofunding["shares_bp"]
    most_honoured_fen = face_value_fen * BP_WHOLE // sum(shares_bp)
    return Reservation(
        split_largest_remainder(face_value_fen, shares_bp),
        provider_post_subsidy_fen(most_honoured_fen, post_subsidy),
    )


VOUCHER_RESERVATION = Rule(
    "voucher-reservation",
    2,
    "DESIGN.md §3: reserve the face value by programme shares, and the post-subsidy it can earn",
    {},
    voucher_reservation,
)


# ---- caps and duplicates -----------------------------------------------------------------------


def enterprise_annual_cap_remaining_fen(received_fen: int, params: Params | None = None) -> int:
    """Room left under the enterprise's annual cap. Clawed-back amounts stay counted: an
    improper claim must not make room for more."""
    cap_fen: int = (params or ENTERPRISE_ANNUAL_CAP.params)["annual_cap_fen"]
    return max(0, cap_fen - received_fen)


ENTERPRISE_ANNUAL_CAP = Rule(
    "enterprise-annual-cap",
    1,
    "programme setting (DESIGN.md §4: e.g. 10,000,000 fen per enterprise per fiscal year)",
    {"annual_cap_fen": 10_000_000},
    enterprise_annual_cap_remaining_fen,
)


def one_contract_one_claim_key(number: str) -> str:
    """What makes two contract (or invoice) numbers the same claim: ``CASE-1``, ``case-1`` and
    ``Case-1`` are one contract. Numbers are ASCII (``check_key``), so lower case is the whole
    of case folding; the claim keeps the text as sent."""
    assert number.isascii()
    return number.lower()


ONE_CONTRACT_ONE_CLAIM = Rule(
    "one-contract-one-claim",
    2,
    f"{SEED_003} 四(一): 同一项技术转移活动仅补助一次",
    {"compare": "ascii-case-insensitive"},
    one_contract_one_claim_key,
)


# ---- rules no command applies yet ---------------------------------------------------------------


def provincial_award_match_fen(
    provincial_award_fen: int, budget_remaining_fen: int | None = None, params: Params | None = None
) -> int:
    """City match of a provincial performance award, 1:1, within the budget left if given."""
    match_bp: int = (params or AWARD_MATCH.params)["match_bp"]
    amount_fen = apply_bp(provincial_award_fen, match_bp)
    if budget_remaining_fen is not None:
        amount_fen = min(amount_fen, max(0, budget_remaining_fen))
    return amount_fen


AWARD_MATCH = Rule(
    "provincial-award-match",
    1,
    f"{SEED_003} 五(三): 对获得省服务绩效奖励的, 市财政给予1∶1配套奖励",
    {"match_bp": 10_000},
    provincial_award_match_fen,
)


def instrument_sharing_subsidy_fen(
    lease_cost_fen: int,
    external_testing_fees_fen: int,
    cap_remaining_fen: int,
    params: Params | None = None,
) -> int:
    """min(10% of lease cost, 20% of external testing fees), within the institution's annual cap
    (二者取较小额度: the smaller of the two, read literally)."""
    p = params or INSTRUMENT_SHARING.params
    amount_fen = min(
        apply_bp(lease_cost_fen, p["lease_bp"]),
        apply_bp(external_testing_fees_fen, p["testing_bp"]),
    )
    annual_cap_fen: int = p["annual_cap_fen"]
    return max(0, min(amount_fen, cap_remaining_fen, annual_cap_fen))


INSTRUMENT_SHARING = Rule(
    "instrument-sharing-subsidy",
    1,
    f"{SEED_003} 五(三): 租赁费用10%或对外提供研发测试服务费用20%(二者取较小额度), "
    "同一机构每年最高不超过50万元",
    {"lease_bp": 1000, "testing_bp": 2000, "annual_cap_fen": 50_000_000},
    instrument_sharing_subsidy_fen,
)


def technology_contract_subsidy_fen(
    kind: str,
    contract_amount_fen: int,
    previously_transferred_fen: int = 0,
    cap_remaining_fen: int | None = None,
    params: Params | None = None,
) -> int:
    """Subsidy for a registered technology contract.

    ``kind`` is development, transfer, consulting or service. For a project transferred again,
    only the increment over the earlier transfer price is subsidised (仅就增值部分给予补助); a
    transfer at or below the earlier price gets nothing."""
    rate_bp: int
    cap_fen: int
    rate_bp, cap_fen = (params or TECH_CONTRACT_SUBSIDY.params)[kind]
    increment_fen = max(0, contract_amount_fen - previously_transferred_fen)
    amount_fen = min(apply_bp(increment_fen, rate_bp), cap_fen)
    if cap_remaining_fen is not None:
        amount_fen = min(amount_fen, max(0, cap_remaining_fen))
    return amount_fen


TECH_CONTRACT_SUBSIDY = Rule(
    "technology-contract-subsidy",
    1,
    f"{SEED_003} 四(一): 技术开发/转让合同不超过1.5%, 最高50万元; 技术咨询/服务合同不超过1‰, "
    "最高20万元; 同一项目多次转让, 仅就增值部分给予补助",
    {
        "development": (150, 50_000_000),
        "transfer": (150, 50_000_000),
        "consulting": (10, 20_000_000),
        "service": (10, 20_000_000),
    },
    technology_contract_subsidy_fen,
)


# ---- guarantee fund: loan risk compensation (seed 001 三(四)2–3) --------------------------------
#
# Seed 001 asks for 科技担保 and 科技贷款 services but gives no figures; the figures are Anhui's and
# Zhuhai's 2022 pool rules as listed in ../shared/fixtures/policy_parameters.md (row names below).
# Each rule records every parameter's source in ``GUARANTEE_PARAMETER_SOURCES``.

POLICY_PARAMETERS = "fixtures/policy_parameters.md"
UNSOURCED = "unsourced"
_ANHUI_2022 = (
    "安徽省科技企业贷款风险补偿资金池补偿标准 (2022-07-08) — http://m.nbaec.cn/display.asp?id=19349"
)
_ZHUHAI_2022 = "珠海科技信贷风险补偿金 (2022-06-02) — https://kjjr.zhsti.net/technology.html"
_SEED_001_GUARANTEE = (
    f"{SEED_001} 三(四)2 完善科技担保服务: 探索更多贴合本地科技企业发展需求的科技担保产品; "
    "三(四)3 深化科技贷款服务: 支持金融机构为科技企业开发“界科贷”“人才贷”等信贷产品"
)
RATE_TIER_TESTS = (
    "first_loan",
    "credit_only",
    "ip_pledge",
    "credit_share_at_least_bp",
    "credit_share_above_bp",
    "always",
)
COMPENSATION_LIMITS = ("loan-ceiling", "per-loan-cap", "bank-annual-cap", "pool-available")


@dataclass(frozen=True)
class LoanTerms:
    """What a covered loan's compensation rate depends on (API_CONTRACT.md §4c)."""

    first_loan: bool = False  # 首笔贷款 / 首贷
    credit_only: bool = False  # 纯信用
    ip_pledge: bool = False  # 知识产权质押
    credit_share_bp: int | None = None  # the credit part of the loan, bp of its principal


@dataclass(frozen=True)
class PoolTerms:
    """The pool a claim is paid from: its sources' shares (bp, Σ = 10000), what each source has
    available now (fen, same order) and its per-bank annual cap (fen, None: no cap)."""

    shares_bp: Sequence[int]
    available_by_source_fen: Sequence[int]
    bank_annual_cap_fen: int | None = None


@dataclass(frozen=True)
class ClaimHistory:
    """What earlier decisions already count against the caps, in fen: the losses and compensation
    of the same loan's earlier claims, and the compensation this pool decided for the same bank
    in the fiscal (calendar) year of the claim's ``default_date``."""

    loan_losses_before_fen: int = 0
    loan_compensated_before_fen: int = 0
    bank_compensated_in_year_fen: int = 0


@dataclass(frozen=True)
class CompensationCut:
    """One limit in the order applied (``COMPENSATION_LIMITS``). ``room_fen`` is what it leaves
    this claim (for the pool: the largest amount, up to what reached it, that its sources can pay
    by their shares); None when the rule has no such limit. ``cut_fen`` is what it took off."""

    limit: str
    room_fen: int | None
    cut_fen: int


@dataclass(frozen=True)
class CompensationDecision:
    """Why a claim is compensated what it is. ``params`` are every parameter used (the rule's,
    with the pool's bank cap); ``rate_tier`` is the tier of ``params["rate_tiers"]`` that won.
    Amounts in fen: ``uncapped_fen − Σ cuts = compensation_fen``; ``not_compensated_fen`` is
    ``loss_fen − compensation_fen``; ``splits`` is the compensation per pool source."""

    rule: str
    params: dict[str, Any]
    loss_fen: int
    rate_bp: int
    rate_tier: dict[str, Any]
    uncapped_fen: int
    cuts: list[CompensationCut]
    compensation_fen: int
    not_compensated_fen: int
    splits: list[int]


def risk_compensation_fen(
    loss_fen: int,
    loan: LoanTerms,
    pool: PoolTerms,
    history: ClaimHistory | None = None,
    rule_ref: str = "risk-compensation@1",
) -> CompensationDecision:
    """Compensation of a bank's principal loss (fen) on a covered loan by the rule ``rule_ref``:
    the highest rate tier the loan meets, then the loan ceiling, the per-loan cap, the bank's
    annual cap and the pool's available, each cutting what is above it (recorded, never
    dropped), split across the pool's sources by their shares (largest remainder)."""
    rule = BY_REF[rule_ref]
    assert rule.apply is risk_compensation_fen, f"{rule_ref} is not a risk-compensation rule"
    assert loss_fen >= 0
    # A copy: the decision is recorded and must not share the rule's own lists.
    params = copy.deepcopy(rule.with_overrides({"bank_annual_cap_fen": pool.bank_annual_cap_fen}))
    tier = risk_compensation_tier(params["rate_tiers"], loan)
    uncapped_fen = apply_bp(loss_fen, tier["rate_bp"])
    cuts = _cuts_in_order(uncapped_fen, loss_fen, params, history or ClaimHistory(), pool)
    compensation_fen = uncapped_fen - sum(cut.cut_fen for cut in cuts)
    splits = split_largest_remainder(compensation_fen, pool.shares_bp)
    assert 0 <= compensation_fen <= loss_fen
    assert all(cut.room_fen is None or compensation_fen <= cut.room_fen for cut in cuts)
    assert all(p <= a for p, a in zip(splits, pool.available_by_source_fen, strict=True))
    return CompensationDecision(
        rule=rule.ref,
        params=params,
        loss_fen=loss_fen,
        rate_bp=tier["rate_bp"],
        rate_tier=dict(tier),
        uncapped_fen=uncapped_fen,
        cuts=cuts,
        compensation_fen=compensation_fen,
        not_compensated_fen=loss_fen - compensation_fen,
        splits=splits,
    )


def risk_compensation_tier(rate_tiers: Sequence[Mapping[str, Any]], loan: LoanTerms) -> Params:
    """The tier whose rate (bp) applies: the highest of those the loan meets (从高), the first
    listed of equal ones, so the decision names the reason (e.g. the first-loan bonus)."""
    met = [tier for tier in rate_tiers if _tier_is_met(tier, loan)]
    assert met, "a rate table ends with an 'always' tier"
    return max(met, key=lambda tier: int(tier["rate_bp"]))  # max keeps the first of equals


def _tier_is_met(tier: Mapping[str, Any], loan: LoanTerms) -> bool:
    test = tier["if"]
    assert test in RATE_TIER_TESTS, f"unknown rate tier test {test!r}"
    if test == "always":
        return True
    if test in ("credit_share_at_least_bp", "credit_share_above_bp"):
        if loan.credit_share_bp is None:
            return False
        threshold_bp: int = tier["threshold_bp"]
        if test == "credit_share_at_least_bp":
            return loan.credit_share_bp >= threshold_bp
        return loan.credit_share_bp > threshold_bp
    return bool(getattr(loan, test))


def _cuts_in_order(
    uncapped_fen: int, loss_fen: int, params: Params, history: ClaimHistory, pool: PoolTerms
) -> list[CompensationCut]:
    """Each limit of ``COMPENSATION_LIMITS`` in turn, cutting what reached it down to its room."""
    ceiling_bp: int | None = params["loan_ceiling_bp"]
    bank_cap_fen: int | None = params["bank_annual_cap_fen"]
    loan_before_fen = history.loan_compensated_before_fen
    rooms: list[tuple[str, int | None]] = [
        ("loan-ceiling", None),
        ("per-loan-cap", max(0, params["per_loan_cap_fen"] - loan_before_fen)),
        ("bank-annual-cap", None),
    ]
    if ceiling_bp is not None:
        loan_losses_fen = history.loan_losses_before_fen + loss_fen
        rooms[0] = ("loan-ceiling", max(0, apply_bp(loan_losses_fen, ceiling_bp) - loan_before_fen))
    if bank_cap_fen is not None:
        rooms[2] = ("bank-annual-cap", max(0, bank_cap_fen - history.bank_compensated_in_year_fen))
    amount_fen = uncapped_fen
    cuts: list[CompensationCut] = []
    for limit, room_fen in rooms:
        kept_fen = amount_fen if room_fen is None else min(amount_fen, room_fen)
        cuts.append(CompensationCut(limit, room_fen, amount_fen - kept_fen))
        amount_fen = kept_fen
    fundable_fen = pool_fundable_fen(amount_fen, pool.shares_bp, pool.available_by_source_fen)
    cuts.append(CompensationCut("pool-available", fundable_fen, amount_fen - fundable_fen))
    assert tuple(cut.limit for cut in cuts) == COMPENSATION_LIMITS
    return cuts


def pool_fundable_fen(
    wanted_fen: int, shares_bp: Sequence[int], available_by_source_fen: Sequence[int]
) -> int:
    """The largest amount (fen) up to ``wanted_fen`` whose largest-remainder split by
    ``shares_bp`` gives no source more than it has available (fen, same order).

    Largest remainder is not monotone in the total (one fen more can move a fen away from a
    source), so the fundable amounts need not form a range: this scans down from the first
    amount whose floors exceed an available to the last whose ceilings all fit, at most
    Σshares + 1 amounts."""
    assert len(shares_bp) == len(available_by_source_fen)
    assert wanted_fen >= 0 and all(a >= 0 for a in available_by_source_fen)
    total_bp = sum(shares_bp)
    assert total_bp > 0
    pairs = [(w, a) for w, a in zip(shares_bp, available_by_source_fen, strict=True) if w > 0]
    # floor(x·w/Σ) ≤ a  ⇔  x ≤ ((a+1)·Σ − 1) // w: no amount above `high` fits.
    high = min([wanted_fen] + [((a + 1) * total_bp - 1) // w for w, a in pairs])
    # ceil(x·w/Σ) ≤ a  ⇔  x ≤ a·Σ // w: every part of `low` fits (each part is a floor or ceiling).
    low = min([wanted_fen] + [a * total_bp // w for w, a in pairs])
    assert 0 <= high - low <= total_bp
    for amount_fen in range(high, low - 1, -1):
        parts = split_largest_remainder(amount_fen, shares_bp)
        if all(p <= a for p, a in zip(parts, available_by_source_fen, strict=True)):
            return amount_fen
    raise AssertionError("unreachable: every part of `low` fits")


def _rate_tier(test: str, rate_bp: int, source: str, threshold_bp: int | None = None) -> Params:
    tier: dict[str, Any] = {"if": test, "rate_bp": rate_bp, "source": source}
    if threshold_bp is not None:
        tier["threshold_bp"] = threshold_bp
    return tier


RISK_COMPENSATION_V1 = Rule(
    "risk-compensation",
    1,
    f"{_SEED_001_GUARANTEE}. Figures as {POLICY_PARAMETERS} gives them: anhui.kjdk.2022.direct "
    '"direct bank loan: 30% of the NPL principal balance paid to the bank"; anhui.kjdk.2022.bonus '
    '"first loan (首笔), or pure credit, IP, receivables or inventory pledge: +5 pp (30→35%)"; '
    'anhui.kjdk.2022.cap "all levels of policy funds together ≤ 80% of the liability actually '
    f'borne by the bank or guarantor" ({_ANHUI_2022}); zhuhai.kjxd.2022.caps "≤ RMB 3m per loan" '
    f"({_ZHUHAI_2022}); the per-bank annual cap is the pool's, {UNSOURCED}",
    {
        "rate_tiers": [
            _rate_tier("first_loan", 3500, "anhui.kjdk.2022.bonus"),
            _rate_tier("credit_only", 3500, "anhui.kjdk.2022.bonus"),
            _rate_tier("ip_pledge", 3500, "anhui.kjdk.2022.bonus"),
            _rate_tier("always", 3000, "anhui.kjdk.2022.direct"),
        ],
        "loan_ceiling_bp": 8000,
        "per_loan_cap_fen": 300_000_000,
        "bank_annual_cap_fen": None,  # the pool sets it
    },
    risk_compensation_fen,
)

RISK_COMPENSATION_V2 = Rule(
    "risk-compensation",
    2,
    f"{_SEED_001_GUARANTEE}. Figures as {POLICY_PARAMETERS} gives them: zhuhai.kjxd.2022.tiers "
    '"credit-loan share >50% → 50% of NPL balance; ≥70% → 70%; first loan in the city → 90%; '
    '"从高" (highest tier wins)"; zhuhai.kjxd.2022.caps "≤ RMB 3m per loan" '
    f"({_ZHUHAI_2022}); the 30% tier below them and the per-bank annual cap are {UNSOURCED}; no "
    "80% ceiling (Zhuhai pays 90% to a first loan)",
    {
        "rate_tiers": [
            _rate_tier("first_loan", 9000, "zhuhai.kjxd.2022.tiers"),
            _rate_tier("credit_share_at_least_bp", 7000, "zhuhai.kjxd.2022.tiers", 7000),
            _rate_tier("credit_share_above_bp", 5000, "zhuhai.kjxd.2022.tiers", 5000),
            _rate_tier("always", 3000, UNSOURCED),
        ],
        "loan_ceiling_bp": None,
        "per_loan_cap_fen": 300_000_000,
        "bank_annual_cap_fen": None,  # the pool sets it
    },
    risk_compensation_fen,
)


def _check_risk_compensation_params(params: Params) -> None:
    """The rule's figures are sane, and no rate is above its own loan ceiling."""
    rates_bp = [tier["rate_bp"] for tier in params["rate_tiers"]]
    assert params["rate_tiers"][-1]["if"] == "always"
    assert all(tier["if"] in RATE_TIER_TESTS for tier in params["rate_tiers"])
    assert all(type(r) is int and 0 <= r <= BP_WHOLE for r in rates_bp)
    ceiling_bp = params["loan_ceiling_bp"]
    assert ceiling_bp is None or max(rates_bp) <= ceiling_bp <= BP_WHOLE
    assert type(params["per_loan_cap_fen"]) is int and params["per_loan_cap_fen"] >= 0


_check_risk_compensation_params(RISK_COMPENSATION_V1.params)
_check_risk_compensation_params(RISK_COMPENSATION_V2.params)


# ---- guarantee fund: recoveries shared back, and the compliant-loss exemption -----------------


def recovery_returned_fen(
    recovered_total_fen: int, compensation_fen: int, loss_fen: int, returned_before_fen: int
) -> int:
    """What a recovery returns to the fund now, in fen: the fund's share of all recoveries so far,
    ``floor(Σ recovered × compensation ÷ loss)`` (the running total is floored, never each
    recovery), minus what earlier recoveries returned. Recoveries beyond the loss return nothing
    more: the fund never gets back more than it paid."""
    assert 0 <= compensation_fen <= loss_fen and recovered_total_fen >= 0
    if loss_fen == 0:
        assert returned_before_fen == 0
        return 0
    share_fen = min(recovered_total_fen, loss_fen) * compensation_fen // loss_fen
    assert 0 <= returned_before_fen <= share_fen, "recoveries so far never decrease"
    return share_fen - returned_before_fen


def recovery_returned_splits(
    returned_total_fen: int, shares_bp: Sequence[int], returned_before_by_source_fen: Sequence[int]
) -> list[int]:
    """What each source gets back now (fen, in the pool's order) so that its running total is its
    largest-remainder share of ``returned_total_fen``, the fund's running total.

    Largest remainder is not monotone in the total (the Alabama paradox: with three or more
    sources, shares 500/1500/8000 split 10 as 1/1/8 and 11 as 0/2/9), and no source pays a
    recovery back. When the plain split would take a fen back, each source keeps at least what
    it has and at least the floor of its exact share, and the fen left go by largest remainder:
    every running total stays the floor or the ceiling of its exact share."""
    before = list(returned_before_by_source_fen)
    assert len(before) == len(shares_bp) and all(b >= 0 for b in before)
    assert returned_total_fen >= sum(before), "the fund's running total never decreases"
    target = split_largest_remainder(returned_total_fen, shares_bp)
    if any(t < b for t, b in zip(target, before, strict=True)):
        target = _kept_then_topped_up(returned_total_fen, shares_bp, before)
    parts = [t - b for t, b in zip(target, before, strict=True)]
    assert all(p >= 0 for p in parts) and sum(parts) == returned_total_fen - sum(before)
    return parts


def _kept_then_topped_up(total_fen: int, weights: Sequence[int], before: list[int]) -> list[int]:
    weight_sum = sum(weights)
    kept = [max(b, total_fen * w // weight_sum) for b, w in zip(before, weights, strict=True)]
    leftover = total_fen - sum(kept)
    if leftover < 0:
        # Only when ``before`` was not split by these shares (never by this ledger): split the
        # new money alone, which still never takes a fen back.
        new = split_largest_remainder(total_fen - sum(before), weights)
        return [b + n for b, n in zip(before, new, strict=True)]
    remainders = [total_fen * w - k * weight_sum for k, w in zip(kept, weights, strict=True)]
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:leftover]:
        assert remainders[i] > 0  # Σ(exact − kept) = leftover and each positive term is < 1
        kept[i] += 1
    return kept


RECOVERY_RETURNED = Rule(
    "recovery-returned",
    1,
    f"{UNSOURCED}: {POLICY_PARAMETERS} found no text on how recoveries are shared back "
    "(按比例返还); API_CONTRACT.md §4c: in the proportion the fund paid of the loss, floored on "
    "the running total, split by the pool's shares",
    {},
    recovery_returned_fen,
)


def compliant_loss_exemption_fen(compensation_fen: int, returned_fen: int) -> int:
    """The net loss (fen) an inspector's decision exempts from accountability: the claim's
    compensation less the recoveries returned to the fund, never below zero."""
    assert 0 <= returned_fen <= compensation_fen, "returned recoveries never exceed compensation"
    return compensation_fen - returned_fen


COMPLIANT_LOSS_EXEMPTION = Rule(
    "compliant-loss-exemption",
    1,
    f"{SEED_001} 二(四)3 容错纠错 (p. 9): 对市内国有创投、政府引导基金等平台公司按照产业政策导向和"
    "合法合规程序决策进行投资的项目,因投资失败导致损失的应予以免责; 牵头单位: 市纪委监委. This "
    "ledger extends it to the guarantee fund's net losses (issue 13)",
    {},
    compliant_loss_exemption_fen,
)

GUARANTEE_PARAMETER_SOURCES: dict[str, dict[str, str]] = {
    RISK_COMPENSATION_V1.ref: {
        "rate_tiers": f"each tier's 'source', a row of {POLICY_PARAMETERS} ({_ANHUI_2022})",
        "loan_ceiling_bp": f"{POLICY_PARAMETERS} anhui.kjdk.2022.cap ({_ANHUI_2022})",
        "per_loan_cap_fen": f"{POLICY_PARAMETERS} zhuhai.kjxd.2022.caps ({_ZHUHAI_2022})",
        "bank_annual_cap_fen": f"{UNSOURCED} (the pool's setting; {POLICY_PARAMETERS})",
    },
    RISK_COMPENSATION_V2.ref: {
        "rate_tiers": f"each tier's 'source', a row of {POLICY_PARAMETERS} ({_ZHUHAI_2022}); "
        f"the 'always' tier is {UNSOURCED}",
        "loan_ceiling_bp": "none: Zhuhai pays 90% to a first loan (zhuhai.kjxd.2022.tiers)",
        "per_loan_cap_fen": f"{POLICY_PARAMETERS} zhuhai.kjxd.2022.caps ({_ZHUHAI_2022})",
        "bank_annual_cap_fen": f"{UNSOURCED} (the pool's setting; {POLICY_PARAMETERS})",
    },
    RECOVERY_RETURNED.ref: {},
    COMPLIANT_LOSS_EXEMPTION.ref: {},
}

ALL_RULES = (
    VOUCHER_COFUNDING,
    PROVIDER_POST_SUBSIDY,
    ENTERPRISE_ANNUAL_CAP,
    ONE_CONTRACT_ONE_CLAIM,
    VOUCHER_RESERVATION,
    AWARD_MATCH,
    INSTRUMENT_SHARING,
    TECH_CONTRACT_SUBSIDY,
    RISK_COMPENSATION_V1,
    RISK_COMPENSATION_V2,
    RECOVERY_RETURNED,
    COMPLIANT_LOSS_EXEMPTION,
)
BY_REF: dict[str, Rule] = {rule.ref: rule for rule in ALL_RULES}
assert len(BY_REF) == len(ALL_RULES)  # refs are unique: one id may have several versions
assert all(rule.apply.__name__.replace("_", "-").startswith(rule.id) for rule in ALL_RULES)
