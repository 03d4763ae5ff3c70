"""Bank statements and the lines that settle payouts: reconciliation (DESIGN.md §3, seed 002
去向可查证: every fen paid is matched to a bank line, or sits in a visible unmatched queue).

An import is atomic: one command stores the statement, every new line and every settlement it
makes, or nothing. The same file again is the same ``BankStatement`` (its id is the file's
SHA-256): nothing changes. A line is a ``BankLine`` whose id derives from its account and its
content key, so a line another file already brought is recognised and ignored. Matching, in
order: the payout a line's end-to-end reference names (several, for a batch line whose
transactions name several, when the amounts add up exactly); the approved payouts (two or more)
into the account the line paid, when their amounts add up exactly (many-to-one); else one
payout of that amount into that account, approved within the window, is only *suggested*, for
treasury to confirm. A reversal, or money coming back with a payout's reference, returns it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState, ValidationError
from ledger.events import create
from ledger.ids import named_id, unique_named_id
from ledger.payout_commands import return_payout_in, settle_payout_in
from ledger.payouts import APPROVED, SETTLED, Payout, payout_of_end_to_end_id
from ledger.unit_of_work import Work

MATCHED, SUGGESTED, UNMATCHED, IGNORED = "matched", "suggested", "unmatched", "ignored"
MATCHED_CURRENCY = "CNY"  # other currencies are kept and reported, never matched
SUGGESTION_WINDOW_DAYS = 10  # a line booked this long after a payout's approval may be it


@dataclass(frozen=True, slots=True)
class LineIn:
    """What the ledger keeps of one bank line (the edge parses the file: treasury/)."""

    line: int
    key: str  # the parser's content identity of the line
    account: str  # the account it is booked on
    booking_date: str | None
    value_date: str | None
    amount_fen: int
    currency: str
    credit_debit: str  # CRDT or DBIT
    reversal: bool
    end_to_end_ids: tuple[str, ...]  # the entry's own and its transactions' references
    counterparty_account: str | None
    counterparty_name: str | None
    reference: str | None  # the bank's (AcctSvcrRef) or the row's


@dataclass(frozen=True)
class OpenPayout:
    """An approved payout not yet settled, as the views list it: a candidate for the lines
    that name no payout (the ledger checks it against the payout itself)."""

    payout_id: UUID
    payee_id: str
    bank_account: str
    amount_fen: int
    approved_on: dt.date


@dataclass(frozen=True)
class ImportStatement:
    file_sha256: str
    summary: dict[str, Any]  # format, account, currency, balances and their check, per statement
    lines: tuple[LineIn, ...]
    open_payouts: tuple[OpenPayout, ...]
    actor: str


class BankStatement(Aggregate):
    @staticmethod
    def create_id(file_sha256: str) -> UUID:
        return named_id("bank-statement", file_sha256)

    @event("Imported")
    def __init__(
        self,
        file_sha256: str,
        summary: dict[str, Any],
        line_count: int,
        counts: dict[str, int],
        duplicates: list[list[Any]],
        actor: str,
    ) -> None:
        self.file_sha256 = file_sha256
        self.summary = summary
        self.line_count = line_count
        self.counts = counts  # lines by status at import
        self.duplicates = duplicates  # [[line, bank line id]]: brought by an earlier file
        self.imported_by = actor


class BankLine(Aggregate):
    @staticmethod
    def create_id(account: str, key: str) -> UUID:
        return unique_named_id("bank-line", account, key)  # seen once: no cache to fill

    @event("Recorded")
    def __init__(
        self,
        statement_id: UUID,
        account: str,
        line: int,
        key: str,
        booking_date: str | None,
        value_date: str | None,
        amount_fen: int,
        currency: str,
        credit_debit: str,
        reversal: bool,
        end_to_end_id: str | None,
        counterparty_account: str | None,
        counterparty_name: str | None,
        reference: str | None,
        status: str,
        payout_ids: list[UUID],
        reason: str,
        actor: str,
    ) -> None:
        self.statement_id = statement_id
        self.line = line
        self.amount_fen = amount_fen
        self.credit_debit = credit_debit
        self.status = status
        self.payout_ids = list(payout_ids)
        self.reason = reason

    def confirm(self, payout_ids: list[UUID], actor: str) -> None:
        """Treasury confirms a suggested match, or matches an unmatched line by hand."""
        if self.status not in (SUGGESTED, UNMATCHED):
            raise InvalidState(f"bank line {self.line} is {self.status}: nothing to confirm")
        self._confirmed(payout_ids=payout_ids, actor=actor)

    @event("Confirmed")
    def _confirmed(self, payout_ids: list[UUID], actor: str) -> None:
        self.status = MATCHED
        self.payout_ids = list(payout_ids)
        self.reason = "confirmed by treasury"


@dataclass
class _Matcher:
    """The matching of one import: which payouts its lines took (a payout is settled by one
    line), and the candidates by the account they pay."""

    work: Work
    by_account: dict[str, list[OpenPayout]]
    taken: set[UUID] = field(default_factory=set)

    def payout(self, payout_id: UUID, statuses: tuple[str, ...]) -> Payout | None:
        found = self.work.find(Payout, payout_id)
        ok = found is not None and found.status in statuses and payout_id not in self.taken
        return found if ok else None

    def decide(self, line: LineIn) -> tuple[str, list[UUID], str, str]:
        """(status, payout ids, reason, what to do: settle, return or nothing)."""
        if line.currency != MATCHED_CURRENCY:
            return IGNORED, [], f"{line.currency} is kept, not matched", ""
        named = [p for p in map(payout_of_end_to_end_id, line.end_to_end_ids) if p]
        if line.reversal or (line.credit_debit == "CRDT" and named):
            return self._returned(line, named)
        if line.credit_debit == "CRDT":
            return IGNORED, [], "money in, not a payout", ""
        if named:
            return self._by_reference(line, list(dict.fromkeys(named)))
        return self._by_account(line)

    def _by_reference(self, line: LineIn, named: list[UUID]) -> tuple[str, list[UUID], str, str]:
        payouts = [self.payout(p, (APPROVED,)) for p in named]
        if all(payouts) and sum(p.amount_fen for p in payouts if p) == line.amount_fen:
            return MATCHED, named, "end-to-end reference", "settle"
        return UNMATCHED, [], "its reference names no approved payout of this amount", ""

    def _by_account(self, line: LineIn) -> tuple[str, list[UUID], str, str]:
        candidates = [
            c
            for c in self.by_account.get(line.counterparty_account or "", [])
            if c.payout_id not in self.taken
        ]
        if len(candidates) > 1 and sum(c.amount_fen for c in candidates) == line.amount_fen:
            ids = [c.payout_id for c in candidates]
            if all(self.payout(p, (APPROVED,)) for p in ids):
                return MATCHED, ids, "the payee's approved payouts add up to it", "settle"
        booked = dt.date.fromisoformat(line.booking_date) if line.booking_date else None
        for c in candidates:
            in_window = booked is None or 0 <= (booked - c.approved_on).days <= (
                SUGGESTION_WINDOW_DAYS
            )
            if c.amount_fen == line.amount_fen and in_window:
                return SUGGESTED, [c.payout_id], "amount and account, to confirm", ""
        return UNMATCHED, [], "no payout of this amount to this account", ""

    def _returned(self, line: LineIn, named: list[UUID]) -> tuple[str, list[UUID], str, str]:
        payouts = [self.payout(p, (APPROVED, SETTLED)) for p in named]
        if named and all(payouts) and sum(p.amount_fen for p in payouts if p) == line.amount_fen:
            return MATCHED, named, "returned: the money came back", "return"
        return UNMATCHED, [], "a reversal that names no payout of this amount", ""


def import_statement(work: Work, c: ImportStatement) -> dict[str, Any]:
    """Store the statement, its new lines and every settlement or return they make."""
    statement_id = BankStatement.create_id(c.file_sha256)
    existing = work.find(BankStatement, statement_id)
    if existing is not None:
        return {**statement_answer(existing), "replayed": True}
    by_account: dict[str, list[OpenPayout]] = {}
    for p in c.open_payouts:
        by_account.setdefault(p.bank_account, []).append(p)
    matcher = _Matcher(work, by_account)
    counts = {MATCHED: 0, SUGGESTED: 0, UNMATCHED: 0, IGNORED: 0}
    duplicates: list[list[Any]] = []
    for line in c.lines:
        line_id = BankLine.create_id(line.account, line.key)
        # Like a claim: an optimistic batch trusts the cache, and a line another file brought
        # makes the insert collide, so the import is decided again carefully, asking the store.
        if work.claim_exists(BankLine, line_id):
            duplicates.append([line.line, line_id])
            counts[IGNORED] += 1
            continue
        status, payout_ids, reason, action = matcher.decide(line)
        matcher.taken.update(payout_ids if action else ())
        counts[status] += 1
        work.add(_line(line_id, statement_id, line, status, payout_ids, reason, c.actor))
        _carry_out(work, action, payout_ids, statement_id, line, c.actor)
    statement = work.add(
        BankStatement(
            file_sha256=c.file_sha256,
            summary=c.summary,
            line_count=len(c.lines),
            counts=counts,
            duplicates=duplicates,
            actor=c.actor,
        )
    )
    return statement_answer(statement)


def _line(
    line_id: UUID,
    statement_id: UUID,
    line: LineIn,
    status: str,
    payout_ids: list[UUID],
    reason: str,
    actor: str,
) -> BankLine:
    return create(
        BankLine,
        BankLine.Recorded,  # type: ignore[attr-defined]
        line_id,
        statement_id=statement_id,
        account=line.account,
        line=line.line,
        key=line.key,
        booking_date=line.booking_date,
        value_date=line.value_date,
        amount_fen=line.amount_fen,
        currency=line.currency,
        credit_debit=line.credit_debit,
        reversal=line.reversal,
        end_to_end_id=line.end_to_end_ids[0] if line.end_to_end_ids else None,
        counterparty_account=line.counterparty_account,
        counterparty_name=line.counterparty_name,
        reference=line.reference,
        status=status,
        payout_ids=payout_ids,
        reason=reason,
        actor=actor,
    )


def _carry_out(
    work: Work, action: str, payout_ids: list[UUID], statement_id: UUID, line: LineIn, actor: str
) -> None:
    for payout_id in payout_ids if action else ():
        if action == "settle":
            settle_payout_in(work, payout_id, str(statement_id), line.line, actor)
        else:
            return_payout_in(work, payout_id, str(statement_id), line.line, "reversal", actor)


def statement_answer(s: BankStatement) -> dict[str, Any]:
    return {
        "id": str(s.id),
        **s.summary,
        "line_count": s.line_count,
        **{k: v for k, v in s.counts.items() if k != IGNORED},
        "ignored": s.counts.get(IGNORED, 0),
    }


@dataclass(frozen=True)
class ConfirmLine:
    bank_line_id: UUID
    payout_ids: tuple[UUID, ...]
    actor: str


def confirm_line(work: Work, c: ConfirmLine) -> dict[str, Any]:
    """The payouts a treasury principal says a line paid: approved, unsettled, adding up."""
    line = work.get(BankLine, c.bank_line_id, "bank line")
    if not c.payout_ids:
        raise ValidationError("payout_ids must name at least one payout")
    payouts = [work.get(Payout, p, f"payout {p}") for p in c.payout_ids]
    if line.credit_debit != "DBIT":
        raise InvalidState(f"bank line {line.line} is money in: it settles no payout")
    if any(p.status != APPROVED for p in payouts):
        raise InvalidState("every payout confirmed must be approved and not settled")
    if sum(p.amount_fen for p in payouts) != line.amount_fen:
        raise InvalidState(
            f"the payouts add up to {sum(p.amount_fen for p in payouts)} fen, the line is "
            f"{line.amount_fen}"
        )
    line.confirm(list(c.payout_ids), c.actor)
    for payout in payouts:
        settle_payout_in(work, payout.id, str(line.statement_id), line.line, c.actor)
    return {
        "statement_id": str(line.statement_id),
        "line": line.line,
        "status": line.status,
        "payout_ids": [str(p) for p in line.payout_ids],
    }
