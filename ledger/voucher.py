"""A voucher (创新券): a reservation per funding source that redemptions draw down."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState, VoucherExpired, VoucherNotActive
from ledger.events import emit

ACTIVE, USED_UP, EXPIRED, REVOKED = "active", "used_up", "expired", "revoked"


def observed_status(status: str, valid_until: str, day: dt.date) -> str:
    """The status an observer sees on ``day``: an active voucher past its date is expired, even
    before the expiry sweep records it."""
    if status == ACTIVE and day > dt.date.fromisoformat(valid_until):
        return EXPIRED
    return status


class Voucher(Aggregate):
    @event("Issued")
    def __init__(
        self,
        programme_id: str,
        holder_id: str,
        fiscal_year: int,
        face_value_fen: int,
        valid_until: str,
        reservations: list[list[Any]],
        actor: str,
        rule: str,
    ) -> None:
        self.programme_id = programme_id
        self.holder_id = holder_id
        self.fiscal_year = fiscal_year
        self.face_value_fen = face_value_fen
        self.valid_until = valid_until  # ISO date; service dates after it are refused
        self.reservations = [(str(s), int(a)) for s, a in reservations]
        self.remaining_by_source = dict(self.reservations)
        self.released_by_source = {s: 0 for s, _ in self.reservations}
        self.status = ACTIVE
        self.issued_by = actor
        self.redemption_ids: list[UUID] = []
        self.provider_ids: list[str] = []  # who redeemed it, each once

    @property
    def remaining_fen(self) -> int:
        return sum(self.remaining_by_source.values())

    def status_on(self, day: dt.date) -> str:
        return observed_status(self.status, self.valid_until, day)

    def check_redeemable(self, service_date: dt.date) -> None:
        if self.status != ACTIVE:
            raise VoucherNotActive(f"voucher {self.id} is {self.status}")
        if service_date > dt.date.fromisoformat(self.valid_until):
            raise VoucherExpired(
                f"service date {service_date} is after the voucher's valid_until {self.valid_until}"
            )

    def redeem(
        self,
        redemption_id: UUID,
        provider_id: str,
        contract_amount_fen: int,
        splits: list[tuple[str, int]],
        service_date: dt.date,
        actor: str,
        rule: str,
    ) -> None:
        """Draw the subsidy down from each source's remaining reservation."""
        self.check_redeemable(service_date)
        for source_id, amount_fen in splits:
            if amount_fen > self.remaining_by_source.get(source_id, -1):
                raise InvalidState(f"split for {source_id} exceeds the voucher's reservation")
        # Emitted leanly (ledger/events.py), not through a decorated method: this is the hot path.
        emit(
            self,
            self.Redeemed,
            redemption_id=redemption_id,
            provider_id=provider_id,
            contract_amount_fen=contract_amount_fen,
            splits=[[s, a] for s, a in splits],
            service_date=service_date.isoformat(),
            actor=actor,
            rule=rule,
        )

    class Redeemed(Aggregate.Event):
        redemption_id: UUID
        provider_id: str
        contract_amount_fen: int
        splits: list[list[Any]]
        service_date: str
        actor: str
        rule: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Voucher)
            for source_id, amount_fen in self.splits:
                aggregate.remaining_by_source[source_id] -= amount_fen
            aggregate.redemption_ids.append(self.redemption_id)
            if self.provider_id not in aggregate.provider_ids:
                aggregate.provider_ids.append(self.provider_id)
            if aggregate.remaining_fen == 0:
                aggregate.status = USED_UP

    def expire(self, as_of: dt.date, actor: str) -> list[tuple[str, int]]:
        """Record expiry observed on ``as_of``; returns what each source gets back."""
        if self.status_on(as_of) != EXPIRED or self.status != ACTIVE:
            raise InvalidState(f"voucher {self.id} is not expiring on {as_of}")
        released = self._unused()
        self._expired(as_of=as_of.isoformat(), released=[[s, a] for s, a in released], actor=actor)
        return released

    @event("Expired")
    def _expired(self, as_of: str, released: list[list[Any]], actor: str) -> None:
        self._release_all(released)
        self.status = EXPIRED

    def revoke(self, reason: str, actor: str) -> list[tuple[str, int]]:
        """Withdraw the voucher; returns what each source gets back."""
        if self.status != ACTIVE:
            raise VoucherNotActive(f"voucher {self.id} is {self.status}")
        released = self._unused()
        self._revoked(reason=reason, released=[[s, a] for s, a in released], actor=actor)
        return released

    @event("Revoked")
    def _revoked(self, reason: str, released: list[list[Any]], actor: str) -> None:
        self._release_all(released)
        self.status = REVOKED

    def _unused(self) -> list[tuple[str, int]]:
        return [(s, self.remaining_by_source[s]) for s, _ in self.reservations]

    def _release_all(self, released: list[list[Any]]) -> None:
        for source_id, amount_fen in released:
            self.remaining_by_source[source_id] -= amount_fen
            self.released_by_source[source_id] += amount_fen
