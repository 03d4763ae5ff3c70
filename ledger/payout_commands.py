"""Treasury's commands: create, approve, cancel, settle and return payouts (ledger/payouts.py).

What a payable line is owed comes from the decision that made it owed, read from its aggregate
when the payout is made and again when it is approved: a redemption's split or post-subsidy
(nothing once it is clawed back), or a guarantee claim's compensation from one source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.claims import ContractClaim
from ledger.errors import InvalidState, NothingToPay, ValidationError
from ledger.funding import FundingSource
from ledger.institution import Institution
from ledger.payouts import GUARANTEE, MAX_LINES, POST_SUBSIDY, SUBSIDY, PayableLine, Payout
from ledger.unit_of_work import Work
from ledger.views import PayoutView

# How much an origin aggregate owes, per kind: (origin, source id, payee id) -> fen. A later
# kind (guarantee compensation) registers itself here.
OWED: dict[str, tuple[type[Aggregate], Callable[[Any, str, str], int]]] = {}


def owed_by_redemption_subsidy(claim: ContractClaim, source_id: str, payee_id: str) -> int:
    if claim.provider_id != payee_id or claim.clawed_back:
        return 0
    return dict(claim.splits).get(source_id, 0)


def owed_by_redemption_post_subsidy(claim: ContractClaim, source_id: str, payee_id: str) -> int:
    if claim.provider_id != payee_id or claim.clawed_back:
        return 0
    return claim.post_subsidy_fen if claim.post_subsidy_source_id == source_id else 0


OWED[SUBSIDY] = (ContractClaim, owed_by_redemption_subsidy)
OWED[POST_SUBSIDY] = (ContractClaim, owed_by_redemption_post_subsidy)


def owed_fen(work: Work, origin_id: UUID, kind: str, source_id: str, payee_id: str) -> int:
    """What ``origin_id`` owes ``payee_id`` from ``source_id`` as ``kind`` now (0: nothing)."""
    if kind not in OWED:
        return 0
    origin_class, owed = OWED[kind]
    origin = work.find(origin_class, origin_id)
    return 0 if origin is None else owed(origin, source_id, payee_id)


@dataclass(frozen=True)
class CreatePayout:
    payout_id: UUID
    payee_id: str
    source_id: str
    # (origin id, kind) of every line the views list as outstanding for the payee and source:
    # each is checked against its origin and its line here.
    candidates: tuple[tuple[UUID, str], ...]
    actor: str


def create_payout(work: Work, c: CreatePayout) -> PayoutView:
    """Every outstanding payable of the payee from the source that no live payout holds."""
    work.get(Institution, Institution.create_id(c.payee_id), f"payee {c.payee_id}")
    work.get(FundingSource, FundingSource.create_id(c.source_id), f"funding source {c.source_id}")
    taken: list[tuple[UUID, str, int, PayableLine | None]] = []
    candidates = c.candidates[:MAX_LINES]
    work.prefetch(
        [origin_id for origin_id, _ in candidates]
        + [PayableLine.create_id(o, kind, c.source_id) for o, kind in candidates]
    )
    for origin_id, kind in candidates:
        amount_fen = owed_fen(work, origin_id, kind, c.source_id, c.payee_id)
        line = work.find(PayableLine, PayableLine.create_id(origin_id, kind, c.source_id))
        if amount_fen > 0 and (line is None or line.free):
            taken.append((origin_id, kind, amount_fen, line))
    if not taken:
        raise NothingToPay(
            f"{c.payee_id} is owed nothing from {c.source_id} that no live payout holds"
        )
    lines = [
        {"origin_id": str(o), "kind": k, "source_id": c.source_id, "amount_fen": a}
        for o, k, a, _ in taken
    ]
    payout = work.add(Payout.create(c.payout_id, c.payee_id, c.source_id, lines, c.actor))
    for origin_id, kind, amount_fen, line in taken:
        line = line or work.add(
            PayableLine(
                origin_id=origin_id,
                kind=kind,
                source_id=c.source_id,
                payee_id=c.payee_id,
                amount_fen=amount_fen,
            )
        )
        line.assign(payout.id, c.actor)
    return PayoutView.of(payout)


@dataclass(frozen=True)
class ApprovePayout:
    payout_id: UUID
    actor: str


def approve_payout(work: Work, c: ApprovePayout) -> PayoutView:
    """Four eyes, a payee that may be paid and has an account, lines still owed as taken."""
    payout = work.get(Payout, c.payout_id, f"payout {c.payout_id}")
    payout.check_approvable(c.actor)
    payee = work.get(Institution, Institution.create_id(payout.payee_id), "payee")
    payee.check_payable()
    if not payee.bank_account:
        raise ValidationError(f"payee {payout.payee_id} has no bank account to pay into")
    work.prefetch([UUID(line["origin_id"]) for line in payout.lines])
    for line in payout.lines:
        owed = owed_fen(work, UUID(line["origin_id"]), line["kind"], payout.source_id, payee.uscc)
        if owed != line["amount_fen"]:
            raise InvalidState(
                f"line {line['origin_id']} ({line['kind']}) is owed {owed} fen now, not "
                f"{line['amount_fen']}: cancel this payout and make another"
            )
    payout.approve(c.actor, payee.bank_account, payee.name)
    return PayoutView.of(payout)


@dataclass(frozen=True)
class CancelPayout:
    payout_id: UUID
    reason: str
    actor: str


def cancel_payout(work: Work, c: CancelPayout) -> PayoutView:
    payout = work.get(Payout, c.payout_id, f"payout {c.payout_id}")
    lines = _lines_of(work, payout)
    payout.cancel(c.reason, c.actor)
    for line in lines:
        line.free_from(payout.id, f"payout cancelled: {c.reason}", c.actor)
    return PayoutView.of(payout)


def settle_payout_in(
    work: Work, payout_id: UUID, statement_id: str, line: int, actor: str
) -> PayoutView:
    """A bank line paid the payout (its whole amount): its payable lines are paid."""
    payout = work.get(Payout, payout_id, f"payout {payout_id}")
    lines = _lines_of(work, payout)
    payout.settle(statement_id, line, payout.amount_fen, actor)
    for payable in lines:
        payable.pay(payout.id, actor)
    return PayoutView.of(payout)


def return_payout_in(
    work: Work, payout_id: UUID, statement_id: str, line: int, reason: str, actor: str
) -> PayoutView:
    """A reversal line brought the money back: its payable lines are payable again."""
    payout = work.get(Payout, payout_id, f"payout {payout_id}")
    lines = _lines_of(work, payout)
    payout.return_(statement_id, line, reason, actor)
    for payable in lines:
        payable.free_from(payout.id, f"returned: {reason}", actor)
    return PayoutView.of(payout)


def _lines_of(work: Work, payout: Payout) -> list[PayableLine]:
    work.prefetch(list(payout.line_ids()))
    return [work.get(PayableLine, line_id, "payable line") for line_id in payout.line_ids()]


assert set(OWED) <= {SUBSIDY, POST_SUBSIDY, GUARANTEE}
