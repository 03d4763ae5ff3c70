"""A batch of many events (a statement import) is sent to PostgreSQL in chunks, serialised as it
goes, in one transaction: stored whole or not at all, and run again carefully when it fails."""

from __future__ import annotations

import select
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger import writer
from ledger.application import VoucherLedger
from ledger.bank_statements import BankLine, LineIn
from ledger.caps import ProviderYear
from ledger.unit_of_work import Work
from tests.conftest import log_length, open_ledger


def outcomes_of(inserter: Any, n: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < n:
        select.select([inserter.fileno()], [], [], 1.0)
        got += inserter.poll()
    return got


def new_years(app: VoucherLedger, prefix: str, n: int) -> list[StoredEvent]:
    to_stored = app.mapper.to_stored_event
    years = [
        ProviderYear(provider_id=f"{prefix}{i}", fiscal_year=2026, actor="t") for i in range(n)
    ]
    return [to_stored(e) for y in years for e in y.collect_events()]


def stored(app: VoucherLedger, events: Sequence[StoredEvent]) -> list[bool]:
    return [bool(app.recorder.select_events(e.originator_id, desc=True, limit=1)) for e in events]


def test_chunks_are_one_transaction_stored_whole_or_not_at_all(pg_schema_url: str) -> None:
    with open_ledger(pg_schema_url) as app:
        first = new_years(app, "A", 7)
        inserter = app.recorder.pipelined_inserter()  # type: ignore[attr-defined]
        try:
            inserter.send_chunks(iter([first[:3], first[3:6], first[6:]]), [])
            [ids] = outcomes_of(inserter, 1)
            assert len(ids) == 7 and ids == sorted(ids)
            assert stored(app, first) == [True] * 7

            # The last chunk collides with a stored event: the chunks before it go too.
            second = new_years(app, "B", 4)
            inserter.send_chunks(iter([second[:2], second[2:], first[:1]]), [])
            assert [type(o) for o in outcomes_of(inserter, 1)] == [IntegrityError]
            assert stored(app, second) == [False] * 4

            # An event that cannot be serialised: what was sent is rolled back.
            def failing() -> Iterator[list[StoredEvent]]:
                yield second[:2]
                raise TypeError("an event that cannot be serialised")

            inserter.send_chunks(failing(), [])
            assert [type(o) for o in outcomes_of(inserter, 1)] == [IntegrityError]
            assert stored(app, second) == [False] * 4

            # The connection goes on storing, plain batches and chunked ones.
            inserter.send(second[:2], [])
            inserter.send_chunks(iter([second[2:3], second[3:]]), [])
            got = outcomes_of(inserter, 2)
            assert [o if isinstance(o, BaseException) else len(o) for o in got] == [2, 2]
            assert stored(app, second) == [True] * 4
        finally:
            inserter.close()


def lines(numbers: range, account: str = "CN12TREASURY0000000001") -> list[LineIn]:
    return [
        LineIn(
            line=n,
            key=f"key-{n}",
            account=account,
            booking_date="2026-04-01",
            value_date="2026-04-01",
            amount_fen=1_000 + n,
            currency="CNY",
            credit_debit="DBIT",
            reversal=False,
            end_to_end_ids=(f"OUT-{n}",),
            counterparty_account=f"ELSEWHERE-{n}",
            counterparty_name=f"payee {n}",
            reference=f"REF{n}",
        )
        for n in numbers
    ]


def import_lines(app: VoucherLedger, name: str, these: list[LineIn]) -> dict[str, Any]:
    answer, _ = app.import_statement(
        file_sha256=name * 64 if len(name) == 1 else name,
        summary={"format": "test"},
        lines=these,
        open_payouts=[],
        actor="treasury",
    )
    return answer


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "STREAMED_BATCH_EVENTS", 5)
    monkeypatch.setattr(writer, "SEND_CHUNK_EVENTS", 4)


@pytest.mark.usefixtures("small_chunks")
def test_an_import_streamed_in_chunks_stores_every_line_once(pg_schema_url: str) -> None:
    with open_ledger(pg_schema_url) as app, open_ledger(pg_schema_url) as other:
        before = log_length(app)
        answer = import_lines(app, "a", lines(range(1, 31)))
        assert (answer["line_count"], answer["unmatched"]) == (30, 30)
        assert log_length(app) == before + 31  # 30 lines and the statement, in one batch
        line: BankLine = app.repository.get(BankLine.create_id("CN12TREASURY0000000001", "key-7"))
        assert (line.line, line.amount_fen, line.status) == (7, 1_007, "unmatched")

        # Another process brought lines 25..40 meanwhile: this one's streamed insert
        # collides, and the import is decided again carefully, knowing them.
        import_lines(other, "b", lines(range(25, 41)))
        fallbacks = app.writer.stats.fallbacks
        answer = import_lines(app, "c", lines(range(31, 61)))
        assert app.writer.stats.fallbacks > fallbacks
        assert (answer["line_count"], answer["unmatched"], answer["ignored"]) == (30, 20, 10)
        # (A failed insert leaves a gap in the positions: count the events.)
        assert len(app.recorder.select_notifications(before + 1, 1_000)) == 31 + 11 + 21


@pytest.mark.usefixtures("small_chunks")
def test_a_streamed_batch_that_cannot_be_serialised_stores_nothing(pg_schema_url: str) -> None:
    with open_ledger(pg_schema_url) as app:
        before = log_length(app)

        def many_then_unserialisable(work: Work) -> None:
            for i in range(10):
                work.add(ProviderYear(provider_id=f"P{i}", fiscal_year=2026, actor="t"))
            work.add(ProviderYear(provider_id="X", fiscal_year=2026, actor=object()))  # type: ignore[arg-type]

        with pytest.raises(TypeError):
            app.writer.run(many_then_unserialisable)
        assert log_length(app) == before
        assert import_lines(app, "d", lines(range(1, 11)))["line_count"] == 10  # still works
