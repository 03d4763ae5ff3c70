"""Importing a bank statement: the edge's part (the HTTP resource and ``voucher-ledger
reconcile`` share it). treasury/ parses the file; this turns it into what the ledger keeps, finds
in the views the approved payouts its lines may pay, and hands both to one atomic command."""

from __future__ import annotations

import datetime as dt
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from ledger.application import VoucherLedger
from ledger.bank_statements import MATCHED_CURRENCY, LineIn, OpenPayout
from ledger.idempotency import Idempotency
from ledger.payouts import payout_of_end_to_end_id
from projections.store import ViewStore
from treasury import ParsedStatement, Statement, StatementLine, parse_statement

CHINA_OFFSET = dt.timedelta(hours=8)

Progress = Callable[[int, int], None]


def import_file(
    ledger: VoucherLedger,
    store: ViewStore,
    data: bytes,
    content_type: str,
    *,
    actor: str,
    idempotency: Idempotency | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], int | None]:
    """Parse, then import atomically: the statement's summary and what it matched; the same
    file again answers its first import (``replayed``) and changes nothing."""
    with _collector_paused():
        return _import(ledger, store, data, content_type, actor, idempotency, progress)


class _CollectorPause:
    """Python's cyclic garbage collector off while statements are parsed and imported, and
    on again (if it was) when the last import in the process ends. A 100,000-line statement
    makes millions of objects that live until it is stored, none of them garbage, and each
    full collection walks them all again: with it on, a 30,000-line import's command took
    5.7 s, with it off 4.6 s (benchmarks/reconcile.py). Reference counting still frees
    everything else at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = True

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._was_enabled = gc.isenabled()
                gc.disable()
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()


_collector_paused = _CollectorPause()


def _import(
    ledger: VoucherLedger,
    store: ViewStore,
    data: bytes,
    content_type: str,
    actor: str,
    idempotency: Idempotency | None,
    progress: Progress | None,
) -> tuple[dict[str, Any], int | None]:
    parsed = parse_statement(data, content_type)
    lines = [line_in(s, line) for s in parsed.statements for line in s.lines]
    if progress is not None:
        progress(0, len(lines))
    accounts = sorted(
        {line.counterparty_account or "" for line in lines if _may_pay_by_account(line)}
    )
    candidates = [open_payout(r) for r in store.open_payouts_paying(accounts)]
    answer, position = ledger.import_statement(
        file_sha256=parsed.file_sha256,
        summary=summary_of(parsed),
        lines=lines,
        open_payouts=candidates,
        actor=actor,
        idempotency=idempotency,
    )
    if progress is not None:
        progress(len(lines), len(lines))
    return answer, position


def _may_pay_by_account(line: LineIn) -> bool:
    """A debit in CNY that names none of our payouts may still pay one into its account."""
    named = any(payout_of_end_to_end_id(e) for e in line.end_to_end_ids)
    return (
        line.credit_debit == "DBIT"
        and line.currency == MATCHED_CURRENCY
        and not named
        and line.counterparty_account is not None
    )


def line_in(statement: Statement, line: StatementLine) -> LineIn:
    references = [line.end_to_end_id] + [t.end_to_end_id for t in line.transactions]
    return LineIn(
        line=line.line,
        key=line.key,
        account=line.own_account or statement.account or "",
        booking_date=line.booking_date.isoformat() if line.booking_date else None,
        value_date=line.value_date.isoformat() if line.value_date else None,
        amount_fen=line.amount_fen,
        currency=line.currency,
        credit_debit=line.credit_debit,
        reversal=line.reversal,
        end_to_end_ids=tuple(dict.fromkeys(r for r in references if r)),
        counterparty_account=line.counterparty_account,
        counterparty_name=line.counterparty_name,
        reference=line.acct_svcr_ref or line.transaction_id or line.entry_ref,
    )


def open_payout(row: dict[str, Any]) -> OpenPayout:
    approved = dt.datetime.fromisoformat(row["approved_at"])
    return OpenPayout(
        payout_id=UUID(row["payout_id"]),
        payee_id=row["payee_id"],
        bank_account=row["bank_account"],
        amount_fen=int(row["amount_fen"]),
        approved_on=(approved + CHINA_OFFSET).date(),
    )


def summary_of(parsed: ParsedStatement) -> dict[str, Any]:
    """The import's summary (API_CONTRACT.md §4c): the first statement's account and
    currency, the first opening and the last closing balance; balances add up when every
    statement's do; and each statement with its own."""
    first, last = parsed.statements[0], parsed.statements[-1]
    checks = [s.balances_add_up for s in parsed.statements]
    return {
        "format": parsed.format,
        "account": first.account or "",
        "currency": first.currency,
        "opening_balance_fen": first.opening_balance_fen,
        "closing_balance_fen": last.closing_balance_fen,
        "balances_add_up": None if None in checks else all(checks),
        "difference_fen": sum(s.difference_fen or 0 for s in parsed.statements),
        "explained_difference_fen": sum(s.explained_difference_fen or 0 for s in parsed.statements),
        "statements": [statement_summary(s) for s in parsed.statements],
    }


def statement_summary(s: Statement) -> dict[str, Any]:
    return {
        "statement_id": s.statement_id,
        "account": s.account,
        "currency": s.currency,
        "from_date": s.from_date.isoformat() if s.from_date else None,
        "to_date": s.to_date.isoformat() if s.to_date else None,
        "opening_balance_fen": s.opening_balance_fen,
        "closing_balance_fen": s.closing_balance_fen,
        "balances_add_up": s.balances_add_up,
        "difference_fen": s.difference_fen,
        "explained_difference_fen": s.explained_difference_fen,
        "line_count": len(s.lines),
        "credits": [s.credit_count, s.credit_total_fen],
        "debits": [s.debit_count, s.debit_total_fen],
        "balances": [
            {"type": b.type_code, "amount_fen": b.amount_fen, "currency": b.currency}
            for b in s.balances
        ],
        "notes": list(s.notes),
    }
