"""Payouts: treasury pays what the sources owe, with four eyes (DESIGN.md §3, seed 002 去向可查证).

A payable is one line of what a source owes a payee: a redemption's subsidy from one source, its
post-subsidy, or a guarantee claim's compensation from one pool source. Each line a payout takes
is a ``PayableLine`` with a deterministic id, so two payouts racing for one line cannot both
take it (the second one's save conflicts and is decided again, without the line). A payout is
created by one treasury principal and approved by another, which fixes the end-to-end reference
the bank line will carry and the payee's bank account in force then; bank lines settle it, a
reversal line returns it (its lines are payable again), and it may be cancelled before it is
settled."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState, SameApprover
from ledger.ids import named_id

SUBSIDY, POST_SUBSIDY, GUARANTEE = "subsidy", "bonus", "guarantee"  # the wire's kinds
KINDS = (SUBSIDY, POST_SUBSIDY, GUARANTEE)
CREATED, APPROVED, SETTLED, RETURNED, CANCELLED = (
    "created",
    "approved",
    "settled",
    "returned",
    "cancelled",
)
LIVE = (CREATED, APPROVED, SETTLED)  # a line in a payout in one of these is taken
MAX_LINES = 10_000  # per payout: a payment instruction stays a size a bank accepts
END_TO_END_PREFIX = "VL"  # + the payout id's 32 hex digits: 34 characters, ISO 20022 allows 35
_END_TO_END = re.compile(r"VL([0-9A-F]{32})")


def end_to_end_id(payout_id: UUID) -> str:
    """The reference a payout's bank line carries back (ISO 20022 EndToEndId, ≤ 35 chars): it
    names the payout, so a bank line finds its payout without an index."""
    return END_TO_END_PREFIX + payout_id.hex.upper()


def payout_of_end_to_end_id(reference: str | None) -> UUID | None:
    """The payout a reference names, if it is one of ours (any case, surrounding blanks)."""
    found = _END_TO_END.fullmatch((reference or "").strip().upper())
    return UUID(found.group(1)) if found else None


class PayableLine(Aggregate):
    """One line of what a source owes a payee, once a payout has taken it: which payout holds
    it now, and whether it was paid."""

    @staticmethod
    def create_id(origin_id: UUID, kind: str, source_id: str) -> UUID:
        return named_id("payable-line", str(origin_id), kind, source_id)

    @event("Opened")
    def __init__(
        self, origin_id: UUID, kind: str, source_id: str, payee_id: str, amount_fen: int
    ) -> None:
        self.origin_id = origin_id  # the redemption or the guarantee claim
        self.kind = kind
        self.source_id = source_id
        self.payee_id = payee_id
        self.amount_fen = amount_fen
        self.payout_id: UUID | None = None  # the live payout that holds it
        self.paid = False

    @property
    def free(self) -> bool:
        return self.payout_id is None and not self.paid

    def assign(self, payout_id: UUID, actor: str) -> None:
        if not self.free:
            raise InvalidState(f"payable line {self.id} is in payout {self.payout_id}")
        self._assigned(payout_id=payout_id, actor=actor)

    @event("Assigned")
    def _assigned(self, payout_id: UUID, actor: str) -> None:
        self.payout_id = payout_id

    def free_from(self, payout_id: UUID, reason: str, actor: str) -> None:
        """Payable again: its payout was cancelled, or the money came back (what was paid is
        unpaid again: ``unpaid_fen``)."""
        if self.payout_id != payout_id:
            raise InvalidState(f"payable line {self.id} is not in payout {payout_id}")
        unpaid_fen = self.amount_fen if self.paid else 0
        self._freed(payout_id=payout_id, reason=reason, actor=actor, unpaid_fen=unpaid_fen)

    @event("Freed")
    def _freed(self, payout_id: UUID, reason: str, actor: str, unpaid_fen: int) -> None:
        self.payout_id = None
        self.paid = False

    def pay(self, payout_id: UUID, actor: str) -> None:
        if self.payout_id != payout_id or self.paid:
            raise InvalidState(f"payable line {self.id} is not unpaid in payout {payout_id}")
        self._paid(payout_id=payout_id, amount_fen=self.amount_fen, actor=actor)

    @event("Paid")
    def _paid(self, payout_id: UUID, amount_fen: int, actor: str) -> None:
        self.paid = True


class Payout(Aggregate):
    """What one source pays one payee in one transfer."""

    @event("Created")
    def __init__(
        self,
        payee_id: str,
        source_id: str,
        lines: list[dict[str, Any]],
        amount_fen: int,
        created_by: str,
    ) -> None:
        assert 0 < len(lines) <= MAX_LINES
        assert amount_fen == sum(int(line["amount_fen"]) for line in lines) > 0
        self.payee_id = payee_id
        self.source_id = source_id
        self.lines = lines  # [{origin_id, kind, source_id, amount_fen}], what it settles
        self.amount_fen = amount_fen
        self.created_by = created_by
        self.status = CREATED
        self.approved_by: str | None = None
        self.end_to_end_id: str | None = None
        self.bank_account: str | None = None  # the payee's account in force at approval
        self.payee_name: str | None = None
        self.bank_lines: list[dict[str, Any]] = []  # [{statement_id, line, amount_fen, ...}]

    @classmethod
    def create(
        cls, payout_id: UUID, payee_id: str, source_id: str, lines: list[dict[str, Any]], actor: str
    ) -> Payout:
        return cls._create(  # type: ignore[no-any-return]
            cls.Created,  # type: ignore[attr-defined]
            id=payout_id,
            payee_id=payee_id,
            source_id=source_id,
            lines=lines,
            amount_fen=sum(int(line["amount_fen"]) for line in lines),
            created_by=actor,
        )

    def line_ids(self) -> list[UUID]:
        return [
            PayableLine.create_id(UUID(str(line["origin_id"])), line["kind"], self.source_id)
            for line in self.lines
        ]

    def check_approvable(self, actor: str) -> None:
        if self.status != CREATED:
            raise InvalidState(f"payout {self.id} is {self.status}, not created")
        if actor == self.created_by:
            raise SameApprover(f"payout {self.id} was created by this principal: another approves")

    def approve(self, actor: str, bank_account: str, payee_name: str) -> None:
        """The second pair of eyes: fixes the reference and the account the money goes to."""
        self.check_approvable(actor)
        self._approved(
            approved_by=actor,
            end_to_end_id=end_to_end_id(self.id),
            bank_account=bank_account,
            payee_name=payee_name,
        )

    @event("Approved")
    def _approved(
        self, approved_by: str, end_to_end_id: str, bank_account: str, payee_name: str
    ) -> None:
        self.status = APPROVED
        self.approved_by = approved_by
        self.end_to_end_id = end_to_end_id
        self.bank_account = bank_account
        self.payee_name = payee_name

    def cancel(self, reason: str, actor: str) -> None:
        if self.status not in (CREATED, APPROVED):
            raise InvalidState(f"payout {self.id} is {self.status}: only before settlement")
        self._cancelled(reason=reason, actor=actor)

    @event("Cancelled")
    def _cancelled(self, reason: str, actor: str) -> None:
        self.status = CANCELLED

    def settle(self, statement_id: str, line: int, amount_fen: int, actor: str) -> None:
        """A bank line paid it (its amount, or its share of a line paying several payouts)."""
        if self.status != APPROVED:
            raise InvalidState(f"payout {self.id} is {self.status}, not approved")
        if amount_fen != self.amount_fen:
            raise InvalidState(f"payout {self.id} is {self.amount_fen} fen, not {amount_fen}")
        self._settled(statement_id=statement_id, line=line, amount_fen=amount_fen, actor=actor)

    @event("Settled")
    def _settled(self, statement_id: str, line: int, amount_fen: int, actor: str) -> None:
        self.status = SETTLED
        self.bank_lines.append(
            {"statement_id": statement_id, "line": line, "amount_fen": amount_fen, "kind": "paid"}
        )

    def return_(self, statement_id: str, line: int, reason: str, actor: str) -> None:
        """A reversal line brought the money back: its lines are payable again."""
        if self.status not in (APPROVED, SETTLED):
            raise InvalidState(f"payout {self.id} is {self.status}: nothing went out to return")
        self._returned(statement_id=statement_id, line=line, reason=reason, actor=actor)

    @event("Returned")
    def _returned(self, statement_id: str, line: int, reason: str, actor: str) -> None:
        self.status = RETURNED
        self.bank_lines.append(
            {
                "statement_id": statement_id,
                "line": line,
                "amount_fen": self.amount_fen,
                "kind": "returned",
            }
        )
