"""Policy rules as data plus small pure functions (DESIGN.md §4).

Each rule has an id, a version and the clause it comes from; every money decision event records
the id and version of the rule that produced it, so an auditor can see why an amount is what it is.
Seed files are in ../shared/seeds/; seed 003 is 003_0b34bd42ca6e5c30.txt (聊政字〔2020〕15号)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.money import apply_bp, split_largest_remainder

SEED_003 = "seeds/003_0b34bd42ca6e5c30.txt"
SEED_001 = "seeds/001_184da36d701c505f.txt"


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    source: str
    params: dict[str, Any] = field(default_factory=dict)

    ref: str = field(init=False)  # ``id@version``, the form recorded in events

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", f"{self.id}@{self.version}")


VOUCHER_COFUNDING = Rule(
    "voucher-cofunding",
    1,
    f"{SEED_003} 五(三): 省补贴60%补助的同时市财政再给予30%的补助",
    {"province_bp": 6000, "city_bp": 3000},
)
PROVIDER_POST_SUBSIDY = Rule(
    "provider-post-subsidy",
    1,
    f"{SEED_003} 五(三): 按兑现条件服务合同额的5%给予后补助, 年获补助总额不超过50万元",
    {"rate_bp": 500, "annual_cap_fen": 50_000_000},
)
ENTERPRISE_ANNUAL_CAP = Rule("enterprise-annual-cap", 1, "programme setting", {})
ONE_CONTRACT_ONE_CLAIM = Rule(
    "one-contract-one-claim", 1, f"{SEED_003} 四(一): 同一项技术转移活动仅补助一次", {}
)
VOUCHER_RESERVATION = Rule(
    "voucher-reservation", 1, "DESIGN.md §3: reserve face value by programme shares", {}
)
AWARD_MATCH = Rule(
    "provincial-award-match",
    1,
    f"{SEED_003} 五(三): 对获得省服务绩效奖励的, 市财政给予1∶1配套奖励",
    {"match_bp": 10_000},
)
INSTRUMENT_SHARING = Rule(
    "instrument-sharing-subsidy",
    1,
    f"{SEED_003} 五(三): 租赁费用10%或对外提供研发测试服务费用20%(二者取较小额度), "
    "同一机构每年最高不超过50万元",
    {"lease_bp": 1000, "testing_bp": 2000, "annual_cap_fen": 50_000_000},
)
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


def reservation_split(face_value_fen: int, shares_bp: Sequence[int]) -> list[int]:
    """Face value reserved per source, in proportion to the programme shares (largest remainder)."""
    return split_largest_remainder(face_value_fen, shares_bp)


@dataclass(frozen=True)
class SubsidyDecision:
    subsidy_fen: int
    enterprise_pays_fen: int
    splits: list[int]


def voucher_subsidy(
    contract_amount_fen: int,
    shares_bp_total: int,
    remaining_by_source: Sequence[int],
    enterprise_cap_remaining_fen: int,
) -> SubsidyDecision:
    """``min(contract × Σshares, voucher remaining, enterprise cap left)``, split by the voucher's
    remaining reservation per source so a used-up voucher leaves exactly zero everywhere."""
    subsidy_fen = min(
        apply_bp(contract_amount_fen, shares_bp_total),
        sum(remaining_by_source),
        enterprise_cap_remaining_fen,
    )
    splits = split_largest_remainder(subsidy_fen, remaining_by_source)
    return SubsidyDecision(subsidy_fen, contract_amount_fen - subsidy_fen, splits)


def provider_bonus_fen(contract_amount_fen: int, rate_bp: int, cap_remaining_fen: int) -> int:
    """Provider post-subsidy: rate × contract, cut to what is left of the annual cap, never < 0."""
    return max(0, min(apply_bp(contract_amount_fen, rate_bp), cap_remaining_fen))


def technology_contract_subsidy_fen(
    kind: str,
    contract_amount_fen: int,
    previously_transferred_fen: int = 0,
    cap_remaining_fen: int | None = None,
) -> int:
    """Subsidy for a registered technology contract.

    ``kind`` is development, transfer, consulting or service. For a project transferred again,
    only the increment over the earlier transfer price is subsidised (仅就增值部分给予补助); a
    transfer at or below the earlier price gets nothing."""
    rate_bp: int
    cap_fen: int
    rate_bp, cap_fen = TECH_CONTRACT_SUBSIDY.params[kind]
    increment_fen = max(0, contract_amount_fen - previously_transferred_fen)
    amount_fen = min(apply_bp(increment_fen, rate_bp), cap_fen)
    if cap_remaining_fen is not None:
        amount_fen = min(amount_fen, max(0, cap_remaining_fen))
    return amount_fen


def instrument_sharing_subsidy_fen(
    lease_cost_fen: int, external_testing_fees_fen: int, cap_remaining_fen: int
) -> int:
    """min(10% of lease cost, 20% of external testing fees), within the institution's annual cap
    (二者取较小额度: the smaller of the two, read literally)."""
    lease_bp: int = INSTRUMENT_SHARING.params["lease_bp"]
    testing_bp: int = INSTRUMENT_SHARING.params["testing_bp"]
    amount_fen = min(
        apply_bp(lease_cost_fen, lease_bp), apply_bp(external_testing_fees_fen, testing_bp)
    )
    return max(0, min(amount_fen, cap_remaining_fen))


def award_match_fen(provincial_award_fen: int, budget_remaining_fen: int | None = None) -> int:
    """City match of a provincial performance award, 1:1, within the budget left if given."""
    match_bp: int = AWARD_MATCH.params["match_bp"]
    amount_fen = apply_bp(provincial_award_fen, match_bp)
    if budget_remaining_fen is not None:
        amount_fen = min(amount_fen, max(0, budget_remaining_fen))
    return amount_fen
