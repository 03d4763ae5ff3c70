"""Annual cap counters, one stream per institution per fiscal year (the calendar year)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from ledger.errors import InvalidState
from ledger.events import emit, evolve, renamed
from ledger.ids import named_id


def cap_remaining_fen(cap_fen: int, counted_fen: int) -> int:
    """Room left under an annual cap. Clawed-back amounts stay counted: an improper claim must
    not make room for more."""
    return max(0, cap_fen - counted_fen)


class EnterpriseYear(Aggregate):
    """Subsidy an enterprise (voucher holder) received in a fiscal year."""

    @staticmethod
    def create_id(holder_id: str, fiscal_year: int) -> UUID:
        return named_id("enterprise-year", holder_id, fiscal_year)

    @event("Opened")
    def __init__(self, holder_id: str, fiscal_year: int, actor: str) -> None:
        self.holder_id = holder_id
        self.fiscal_year = fiscal_year
        self.subsidy_received_fen = 0
        self.clawed_back_fen = 0
        self.cap_fen: int | None = None  # the cap applied at the latest redemption

    def cap_remaining_fen(self, cap_fen: int) -> int:
        return cap_remaining_fen(cap_fen, self.subsidy_received_fen)

    def receive(
        self, subsidy_fen: int, cap_fen: int, redemption_id: UUID, rule: str, actor: str
    ) -> None:
        if not 0 <= subsidy_fen <= self.cap_remaining_fen(cap_fen):
            raise InvalidState(
                f"subsidy {subsidy_fen} fen exceeds what the annual cap of enterprise "
                f"{self.holder_id} leaves"
            )
        emit(
            self,
            self.SubsidyReceived,
            subsidy_fen=subsidy_fen,
            cap_fen=cap_fen,
            redemption_id=redemption_id,
            rule=rule,
            actor=actor,
        )

    class SubsidyReceived(Aggregate.Event):
        subsidy_fen: int
        cap_fen: int
        redemption_id: UUID
        rule: str
        actor: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, EnterpriseYear)
            aggregate.subsidy_received_fen += self.subsidy_fen
            aggregate.cap_fen = self.cap_fen

    @event("SubsidyClawedBack")
    def claw_back(self, amount_fen: int, redemption_id: UUID, reason_code: str, actor: str) -> None:
        self.clawed_back_fen += amount_fen


class ProviderYear(Aggregate):
    """What a service provider redeemed and accrued as post-subsidy in a fiscal year. It holds
    the guard of the annual post-subsidy cap (seed 003 五(三): 年获补助总额不超过50万元)."""

    @staticmethod
    def create_id(provider_id: str, fiscal_year: int) -> UUID:
        return named_id("provider-year", provider_id, fiscal_year)

    @event("Opened")
    def __init__(self, provider_id: str, fiscal_year: int, actor: str) -> None:
        self.provider_id = provider_id
        self.fiscal_year = fiscal_year
        self.redeemed_contract_fen = 0
        self.subsidy_earned_fen = 0
        self.post_subsidy_accrued_fen = 0
        self.post_subsidy_clawed_back_fen = 0
        self.post_subsidy_cap_fen: int | None = None  # the cap applied at the latest redemption

    def post_subsidy_room_fen(self, cap_fen: int) -> int:
        """What the annual cap leaves: clawed-back post-subsidy stays counted."""
        return cap_remaining_fen(cap_fen, self.post_subsidy_accrued_fen)

    def accrue(
        self,
        contract_amount_fen: int,
        subsidy_fen: int,
        post_subsidy_fen: int,
        post_subsidy_cap_fen: int,
        redemption_id: UUID,
        rule: str,
        actor: str,
    ) -> None:
        if not 0 <= post_subsidy_fen <= self.post_subsidy_room_fen(post_subsidy_cap_fen):
            raise InvalidState(
                f"post-subsidy {post_subsidy_fen} fen exceeds what the annual cap of provider "
                f"{self.provider_id} leaves"
            )
        emit(
            self,
            self.Accrued,
            contract_amount_fen=contract_amount_fen,
            subsidy_fen=subsidy_fen,
            post_subsidy_fen=post_subsidy_fen,
            post_subsidy_cap_fen=post_subsidy_cap_fen,
            redemption_id=redemption_id,
            rule=rule,
            actor=actor,
        )

    class Accrued(Aggregate.Event):
        contract_amount_fen: int
        subsidy_fen: int
        post_subsidy_fen: int
        post_subsidy_cap_fen: int
        redemption_id: UUID
        rule: str
        actor: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, ProviderYear)
            aggregate.redeemed_contract_fen += self.contract_amount_fen
            aggregate.subsidy_earned_fen += self.subsidy_fen
            aggregate.post_subsidy_accrued_fen += self.post_subsidy_fen
            aggregate.post_subsidy_cap_fen = self.post_subsidy_cap_fen

    @event("PostSubsidyClawedBack")
    def claw_back(self, amount_fen: int, redemption_id: UUID, reason_code: str, actor: str) -> None:
        self.post_subsidy_clawed_back_fen += amount_fen


def room_fen(year: EnterpriseYear | ProviderYear | None, cap_fen: int) -> int:
    """What a year's cap leaves before its counter exists (the first redemption opens it)."""
    if year is None:
        return cap_fen
    if isinstance(year, EnterpriseYear):
        return year.cap_remaining_fen(cap_fen)
    return year.post_subsidy_room_fen(cap_fen)


def _accrued_v1_v2(state: dict[str, Any]) -> None:
    renamed(state, {"bonus_fen": "post_subsidy_fen", "bonus_cap_fen": "post_subsidy_cap_fen"})


def _provider_year_v1_v2(state: dict[str, Any]) -> None:
    renamed(
        state,
        {
            "bonus_accrued_fen": "post_subsidy_accrued_fen",
            "bonus_clawed_back_fen": "post_subsidy_clawed_back_fen",
            "bonus_cap_fen": "post_subsidy_cap_fen",
        },
    )


evolve(ProviderYear.Accrued, _accrued_v1_v2)
evolve(ProviderYear, _provider_year_v1_v2)
# The event's name before "one word per concept" (STYLE.md): stored events keep their topic.
register_topic(
    "ledger.caps:ProviderYear.BonusClawedBack",
    ProviderYear.PostSubsidyClawedBack,  # type: ignore[attr-defined]
)
