"""Funding sources (appropriations) and programmes that draw on them (DESIGN.md §3)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InsufficientFunds, InvalidState
from ledger.ids import named_id

LEVELS = ("province", "city", "county", "guarantee_fund")


def available_fen(appropriation_fen: int, committed_fen: int, recovered_fen: int) -> int:
    """What a source can still reserve: recovered subsidy is available again."""
    return appropriation_fen - committed_fen + recovered_fen


class FundingSource(Aggregate):
    """An appropriation for one fiscal year. ``committed = reserved − released``;
    ``available = appropriation − committed + recovered``, never below zero."""

    @staticmethod
    def create_id(source_id: str) -> UUID:
        return named_id("funding-source", source_id)

    @event("Opened")
    def __init__(
        self,
        source_id: str,
        name: str,
        level: str,
        fiscal_year: int,
        appropriation_fen: int,
        document_ref: str,
        actor: str,
    ) -> None:
        self.source_id = source_id
        self.name = name
        self.level = level
        self.fiscal_year = fiscal_year
        self.appropriation_fen = appropriation_fen
        self.document_ref = document_ref
        self.opened_by = actor
        self.reserved_fen = 0
        self.released_fen = 0
        self.recovered_fen = 0

    @property
    def committed_fen(self) -> int:
        return self.reserved_fen - self.released_fen

    @property
    def available_fen(self) -> int:
        return available_fen(self.appropriation_fen, self.committed_fen, self.recovered_fen)

    def reserve(self, amount_fen: int, voucher_id: UUID, actor: str, rule: str) -> None:
        """Encumber ``amount_fen`` for a voucher; refused when not available."""
        if amount_fen > self.available_fen:
            raise InsufficientFunds(
                f"funding source {self.source_id} has {self.available_fen} fen available, "
                f"{amount_fen} fen needed"
            )
        self._reserved(amount_fen=amount_fen, voucher_id=voucher_id, actor=actor, rule=rule)

    @event("Reserved")
    def _reserved(self, amount_fen: int, voucher_id: UUID, actor: str, rule: str) -> None:
        self.reserved_fen += amount_fen

    def release(self, amount_fen: int, voucher_id: UUID, reason: str, actor: str) -> None:
        """Give back a voucher's unused reservation (expiry or revocation)."""
        if amount_fen > self.committed_fen:
            raise InvalidState(
                f"cannot release {amount_fen} fen: only {self.committed_fen} committed"
            )
        self._released(amount_fen=amount_fen, voucher_id=voucher_id, reason=reason, actor=actor)

    @event("Released")
    def _released(self, amount_fen: int, voucher_id: UUID, reason: str, actor: str) -> None:
        self.released_fen += amount_fen

    @event("Recovered")
    def recover(self, amount_fen: int, redemption_id: UUID, reason_code: str, actor: str) -> None:
        """Money clawed back from an improper redemption returns as recovered."""
        self.recovered_fen += amount_fen


class Programme(Aggregate):
    """A voucher programme: which sources pay which share, and the caps that apply."""

    @staticmethod
    def create_id(programme_id: str) -> UUID:
        return named_id("programme", programme_id)

    @event("Created")
    def __init__(
        self,
        programme_id: str,
        name: str,
        fiscal_year: int,
        shares: list[list[Any]],
        max_face_value_fen: int,
        provider_bonus_rate_bp: int,
        provider_bonus_source_id: str,
        provider_annual_cap_fen: int,
        enterprise_annual_cap_fen: int,
        actor: str,
    ) -> None:
        self.programme_id = programme_id
        self.name = name
        self.fiscal_year = fiscal_year
        self.shares = [(str(s), int(bp)) for s, bp in shares]  # [(source_id, share_bp)], ordered
        self.max_face_value_fen = max_face_value_fen
        self.provider_bonus_rate_bp = provider_bonus_rate_bp
        self.provider_bonus_source_id = provider_bonus_source_id
        self.provider_annual_cap_fen = provider_annual_cap_fen
        self.enterprise_annual_cap_fen = enterprise_annual_cap_fen
        self.created_by = actor

    @property
    def shares_bp_total(self) -> int:
        return sum(bp for _, bp in self.shares)
