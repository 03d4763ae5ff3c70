"""Enterprises, service providers and banks, keyed by their unified social credit code."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState
from ledger.ids import named_id

KINDS = ("enterprise", "provider", "bank")


class Institution(Aggregate):
    @staticmethod
    def create_id(uscc: str) -> UUID:
        return named_id("institution", uscc)

    @event("Registered")
    def __init__(
        self,
        uscc: str,
        name: str,
        kind: str,
        public_key_pem: str | None,
        actor: str,
        bank_account: str | None = None,
        contact: str | None = None,
    ) -> None:
        self.uscc = uscc
        self.name = name
        self.kind = kind
        self.public_key_pem = public_key_pem
        self.bank_account = bank_account
        self.contact = contact
        self.registered_by = actor
        self.frozen = False
        self.frozen_reason: str | None = None

    def freeze(self, reason: str, actor: str) -> None:
        if self.frozen:
            raise InvalidState(f"institution {self.uscc} is already frozen")
        self._frozen(reason=reason, actor=actor)

    @event("Frozen")
    def _frozen(self, reason: str, actor: str) -> None:
        self.frozen = True
        self.frozen_reason = reason

    def unfreeze(self, reason: str, actor: str) -> None:
        if not self.frozen:
            raise InvalidState(f"institution {self.uscc} is not frozen")
        self._unfrozen(reason=reason, actor=actor)

    @event("Unfrozen")
    def _unfrozen(self, reason: str, actor: str) -> None:
        self.frozen = False
        self.frozen_reason = None
