"""A voucher (创新券): a reservation per funding source that redemptions draw down."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState, ValidationError, VoucherExpired, VoucherNotActive
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
        issued_on: str | None = None,
        post_subsidy_source_id: str | None = None,
        post_subsidy_reserved_fen: int = 0,
        rule_params: dict[str, Any] | None = None,
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
        self.issued_on = issued_on  # the day it was issued (China Standard Time)
        # The most post-subsidy its redemptions can earn, reserved on this source at issuance;
        # each redemption draws its post-subsidy from it, and the rest goes back at the end.
        self.post_subsidy_source_id = post_subsidy_source_id
        self.post_subsidy_reserved_fen = post_subsidy_reserved_fen
        self.post_subsidy_remaining_fen = post_subsidy_reserved_fen
        self.post_subsidy_released_fen = 0

    @property
    def remaining_fen(self) -> int:
        return sum(self.remaining_by_source.values())

    def status_on(self, day: dt.date) -> str:
        return observed_status(self.status, self.valid_until, day)

    def check_redeemable(self, service_date: dt.date, today: dt.date | None = None) -> None:
        """Active, and the service was rendered while the voucher was valid: not after its
        use-by date (checked first), not after ``today``, not before it was issued."""
        if self.status != ACTIVE:
            raise VoucherNotActive(f"voucher {self.id} is {self.status}")
        if service_date > dt.date.fromisoformat(self.valid_until):
            raise VoucherExpired(
                f"service date {service_date} is after the voucher's valid_until {self.valid_until}"
            )
        if today is not None and service_date > today:
            raise ValidationError(f"service_date {service_date} is in the future (today {today})")
        if self.issued_on is not None and service_date < dt.date.fromisoformat(self.issued_on):
            raise ValidationError(
                f"service_date {service_date} is before the voucher was issued ({self.issued_on})"
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
        post_subsidy_fen: int = 0,
    ) -> int:
        """Draw the subsidy down from each source's remaining reservation, and the post-subsidy
        from its own. Returns the post-subsidy reservation released because this redemption
        used the voucher up (0 otherwise), for its source to release."""
        self.check_redeemable(service_date)
        for source_id, amount_fen in splits:
            if amount_fen > self.remaining_by_source.get(source_id, -1):
                raise InvalidState(f"split for {source_id} exceeds the voucher's reservation")
        if not 0 <= post_subsidy_fen <= self.post_subsidy_remaining_fen:
            raise InvalidState("post-subsidy exceeds what the voucher reserved for it")
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
            post_subsidy_fen=post_subsidy_fen,
        )
        if self.status != USED_UP:
            return 0
        released_fen = self.post_subsidy_remaining_fen
        self._used_up(post_subsidy_released_fen=released_fen, actor=actor)
        return released_fen

    class Redeemed(Aggregate.Event):
        redemption_id: UUID
        provider_id: str
        contract_amount_fen: int
        splits: list[list[Any]]
        service_date: str
        actor: str
        rule: str
        post_subsidy_fen: int = 0

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Voucher)
            for source_id, amount_fen in self.splits:
                aggregate.remaining_by_source[source_id] -= amount_fen
            aggregate.post_subsidy_remaining_fen -= self.post_subsidy_fen
            aggregate.redemption_ids.append(self.redemption_id)
            if self.provider_id not in aggregate.provider_ids:
                aggregate.provider_ids.append(self.provider_id)
            if aggregate.remaining_fen == 0:
                aggregate.status = USED_UP

    @event("UsedUp")
    def _used_up(self, post_subsidy_released_fen: int, actor: str) -> None:
        self.post_subsidy_remaining_fen -= post_subsidy_released_fen
        self.post_subsidy_released_fen += post_subsidy_released_fen

    def expire(self, as_of: dt.date, actor: str) -> Unused:
        """Record expiry observed on ``as_of``; returns what the sources get back."""
        if self.status_on(as_of) != EXPIRED or self.status != ACTIVE:
            raise InvalidState(f"voucher {self.id} is not expiring on {as_of}")
        unused = self._unused()
        self._expired(
            as_of=as_of.isoformat(),
            released=[[s, a] for s, a in unused.subsidy],
            actor=actor,
            post_subsidy_released_fen=unused.post_subsidy_fen,
        )
        return unused

    @event("Expired")
    def _expired(
        self, as_of: str, released: list[list[Any]], actor: str, post_subsidy_released_fen: int = 0
    ) -> None:
        self._release_all(released, post_subsidy_released_fen)
        self.status = EXPIRED

    def revoke(self, reason: str, actor: str) -> Unused:
        """Withdraw the voucher; returns what the sources get back."""
        if self.status != ACTIVE:
            raise VoucherNotActive(f"voucher {self.id} is {self.status}")
        unused = self._unused()
        self._revoked(
            reason=reason,
            released=[[s, a] for s, a in unused.subsidy],
            actor=actor,
            post_subsidy_released_fen=unused.post_subsidy_fen,
        )
        return unused

    @event("Revoked")
    def _revoked(
        self, reason: str, released: list[list[Any]], actor: str, post_subsidy_released_fen: int = 0
    ) -> None:
        self._release_all(released, post_subsidy_released_fen)
        self.status = REVOKED

    def _unused(self) -> Unused:
        return Unused(
            [(s, self.remaining_by_source[s]) for s, _ in self.reservations],
            self.post_subsidy_source_id,
            self.post_subsidy_remaining_fen,
        )

    def _release_all(self, released: list[list[Any]], post_subsidy_fen: int) -> None:
        for source_id, amount_fen in released:
            self.remaining_by_source[source_id] -= amount_fen
            self.released_by_source[source_id] += amount_fen
        self.post_subsidy_remaining_fen -= post_subsidy_fen
        self.post_subsidy_released_fen += post_subsidy_fen


@dataclass(frozen=True)
class Unused:
    """What a voucher that ends (expired or revoked) gives back to its sources."""

    subsidy: list[tuple[str, int]]  # per share source
    post_subsidy_source_id: str | None
    post_subsidy_fen: int
