"""Enterprises, service providers and banks, keyed by their unified social credit code."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState, PayeeFrozen, ValidationError
from ledger.ids import named_id

KINDS = ("enterprise", "provider", "bank")


def key_fingerprint(public_key_pem: str) -> str:
    """SHA-256 of the PEM text, hex: names the key a claim was signed with."""
    return hashlib.sha256(public_key_pem.encode()).hexdigest()


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
        self.public_key_pem = public_key_pem  # the key in force: claims are checked against it
        self.key_sha256 = None if public_key_pem is None else key_fingerprint(public_key_pem)
        # Every key it ever registered, oldest first, as (fingerprint, pem): every stored claim
        # stays verifiable against the key it was signed with (the claim names its fingerprint).
        self.public_keys: list[tuple[str, str]] = []
        if public_key_pem is not None:
            self.public_keys.append((key_fingerprint(public_key_pem), public_key_pem))
        self.bank_account = bank_account
        self.contact = contact
        self.registered_by = actor
        self.frozen = False
        self.frozen_reason: str | None = None

    # ---- who it is and whether it can be paid -----------------------------------------------
    def check_kind(self, kind: str) -> None:
        if self.kind != kind:
            what = "a service provider" if kind == "provider" else f"a {kind}"
            raise ValidationError(f"institution {self.uscc} is not {what}")

    def check_payable(self) -> None:
        """A payee an inspector froze is paid nothing until the freeze is lifted."""
        if self.frozen:
            raise PayeeFrozen(f"institution {self.uscc} is frozen: {self.frozen_reason}")

    # ---- changes, each its own event --------------------------------------------------------
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

    def register_key(self, public_key_pem: str, reason: str, actor: str) -> None:
        """A new signing key replaces the one in force (a leaked or expiring key); claims
        committed from now on are checked against it."""
        if public_key_pem == self.public_key_pem:
            raise InvalidState(f"institution {self.uscc} already signs with this key")
        if self.kind != "provider":
            raise ValidationError(f"institution {self.uscc} is not a service provider")
        self._key_registered(
            public_key_pem=public_key_pem,
            fingerprint=key_fingerprint(public_key_pem),
            reason=reason,
            actor=actor,
        )

    @event("KeyRegistered")
    def _key_registered(
        self, public_key_pem: str, fingerprint: str, reason: str, actor: str
    ) -> None:
        self.public_key_pem = public_key_pem
        self.key_sha256 = fingerprint
        self.public_keys.append((fingerprint, public_key_pem))

    def change_payment_details(
        self, bank_account: str | None, contact: str | None, reason: str, actor: str
    ) -> None:
        """A new bank account or contact, by its own event: treasury pays the account in force
        when a payout is approved."""
        if (bank_account, contact) == (self.bank_account, self.contact):
            raise InvalidState(f"institution {self.uscc} already has these payment details")
        self._payment_details_changed(
            bank_account=bank_account, contact=contact, reason=reason, actor=actor
        )

    @event("PaymentDetailsChanged")
    def _payment_details_changed(
        self, bank_account: str | None, contact: str | None, reason: str, actor: str
    ) -> None:
        self.bank_account = bank_account
        self.contact = contact

    def differences(self, **attributes: Any) -> list[str]:
        """Which of ``attributes`` differ from this institution's: a registration again with
        other attributes is refused, naming them."""
        return sorted(name for name, value in attributes.items() if getattr(self, name) != value)
