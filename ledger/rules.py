"""Policy rules: each one record (id, version, the clause it comes from, its parameters) and the
function that applies it, named after it (DESIGN.md §4; STYLE.md: a rule is found by its name).

A rule's function reads its parameters from the rule. A programme that sets a parameter of its
own (its shares, its post-subsidy rate, its caps) records the override when it is created
(``Programme.rule_params``), and every decision event records the id, version and the
parameters it was decided with, so an auditor can see why an amount is what it is. Seed files
are in ../shared/seeds/; seed 003 is 003_0b34bd42ca6e5c30.txt (聊政字〔2020〕15号)."""

from __future__ import annotations

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

ALL_RULES = (
    VOUCHER_COFUNDING,
    PROVIDER_POST_SUBSIDY,
    ENTERPRISE_ANNUAL_CAP,
    ONE_CONTRACT_ONE_CLAIM,
    VOUCHER_RESERVATION,
    AWARD_MATCH,
    INSTRUMENT_SHARING,
    TECH_CONTRACT_SUBSIDY,
)
BY_REF: dict[str, Rule] = {rule.ref: rule for rule in ALL_RULES}
assert len(BY_REF) == len(ALL_RULES)
assert all(rule.apply.__name__.replace("_", "-").startswith(rule.id) for rule in ALL_RULES)
