"""The group-commit writer: batches stay atomic per command, lost races are retried, and another
process's changes reach the cache."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.application import VoucherLedger
from ledger.caps import ProviderYear
from ledger.claims import ContractClaim, InvoiceClaim
from ledger.errors import DuplicateClaim, InsufficientFunds, LedgerError
from ledger.funding import FundingSource
from ledger.settings import Settings
from ledger.unit_of_work import Work
from tests.conftest import (
    PROVIDER,
    PROVIDER_2,
    TODAY,
    World,
    issue,
    log_length,
    open_ledger,
    open_worked_example,
    redeem,
)


def test_a_claim_made_by_another_process_is_refused_as_a_duplicate(
    make_app: Callable[..., VoucherLedger],
) -> None:
    first, second = make_app(), make_app()
    open_worked_example(first)
    voucher_id = issue(first)
    redeem(second, voucher_id, contract_no="HT-9", invoice_no="FP-9")
    before = log_length(first)

    with pytest.raises(LedgerError) as caught:
        redeem(first, voucher_id, contract_no="HT-9", invoice_no="FP-10")

    assert caught.value.slug == "duplicate-claim"
    attempt = first.recorder.select_notifications(before + 1, 10)
    assert [n.topic.split(":")[1].split(".")[0] for n in attempt] == ["RefusedRedemption"]
    assert first.writer.stats.fallbacks >= 1
    assert first.writer.stats.careful >= 1  # the refusal was decided again on its own


def test_a_stale_cached_voucher_is_reloaded_and_the_redemption_decided_again(
    make_app: Callable[..., VoucherLedger],
) -> None:
    first, second = make_app(), make_app()
    open_worked_example(first)
    voucher_id = issue(first, face_value_fen=1_000_000)
    redeem(first, voucher_id, contract_no="C-1", amount_fen=500_000)  # first caches it
    redeem(second, voucher_id, contract_no="C-2", amount_fen=500_000)  # behind first's back

    redemption, _ = redeem(first, voucher_id, contract_no="C-3", amount_fen=500_000)

    assert redemption.subsidy_fen == 100_000  # 1,000,000 - 450,000 - 450,000 left
    assert first.voucher(voucher_id).remaining_fen == 0
    assert first.writer.stats.fallbacks + first.writer.stats.retries >= 1


def test_a_freeze_by_another_process_binds_the_next_redemption_here(
    make_app: Callable[..., VoucherLedger],
) -> None:
    first, second = make_app(), make_app()
    open_worked_example(first)
    voucher_id = issue(first)
    redeem(first, voucher_id, contract_no="C-1")  # first caches the provider, unfrozen
    second.freeze_institution(PROVIDER, reason="inspection", actor="inspector-1")

    with pytest.raises(LedgerError) as caught:
        redeem(first, voucher_id, contract_no="C-2")
    assert caught.value.slug == "payee-frozen"

    second.unfreeze_institution(PROVIDER, reason="cleared", actor="inspector-1")
    redemption, _ = redeem(first, voucher_id, contract_no="C-2")
    assert redemption.provider_id == PROVIDER


def test_a_command_that_fails_after_changing_something_stores_nothing(
    app: VoucherLedger, world: World
) -> None:
    source_id = FundingSource.create_id(world.city)

    def half_done(work: Work) -> None:
        work.get(FundingSource, source_id, "source").recover(
            amount_fen=1, redemption_id=source_id, reason_code="x", actor="bug"
        )
        raise InsufficientFunds("refused after a change")

    before = log_length(app)
    with pytest.raises(InsufficientFunds):
        app.writer.run(half_done)

    assert log_length(app) == before
    assert app.funding_source(world.city).recovered_fen == 0
    redemption, _ = redeem(app, issue(app))  # the writer still works, with a clean cache
    assert redemption.subsidy_fen == 900_000


def test_concurrent_commands_share_transactions_and_each_gets_its_own_position(
    app: VoucherLedger, world: World
) -> None:
    vouchers = [issue(app) for _ in range(4)]
    positions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        barrier.wait()
        try:
            _, position = redeem(app, vouchers[i % 4], contract_no=f"C-{i}", amount_fen=10_000)
            assert position is not None
            positions.append(position)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(set(positions)) == 16
    assert max(positions) == log_length(app)
    assert app.writer.stats.batches < app.writer.stats.commands  # some were grouped


class SnapshottingLedger(VoucherLedger):
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        **VoucherLedger.snapshotting_intervals,
        ProviderYear: 3,
    }


def test_a_long_provider_year_is_snapshotted_and_reloads_to_the_same_totals(
    store_url: str,
) -> None:
    with open_ledger(store_url, SnapshottingLedger) as app:
        open_worked_example(app)
        voucher_id = issue(app, face_value_fen=5_000_000)
        for i in range(7):
            redeem(app, voucher_id, contract_no=f"C-{i}", amount_fen=10_000 + i)
        provider_year_id = ProviderYear.create_id(PROVIDER, 2026)
        assert app.snapshots is not None
        snapshots = list(app.snapshots.get(provider_year_id))
        assert [s.originator_version for s in snapshots] == [3, 6]

        reloaded = app.provider_year(PROVIDER, 2026)

        assert reloaded is not None and reloaded.version == 8
        assert reloaded.redeemed_contract_fen == sum(10_000 + i for i in range(7))


def test_several_ledgers_can_open_a_fresh_postgresql_schema_at_once(pg_schema_url: str) -> None:
    """Server workers start together; creating the tables and functions must not race."""
    barrier = threading.Barrier(6)
    opened: list[VoucherLedger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(VoucherLedger(Settings(database_url=pg_schema_url), clock=lambda: TODAY))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        open_worked_example(opened[0])
        assert opened[-1].funding_source("city-2026").appropriation_fen == 50_000_000
    finally:
        for app in opened:
            app.close()


def test_postgresql_refuses_an_event_that_follows_no_stored_event(pg_schema_url: str) -> None:
    """A batch built on one that failed must store neither version 3 after version 1, nor
    anything decided on a version that is not the latest."""
    with open_ledger(pg_schema_url) as app:
        year = ProviderYear(provider_id=PROVIDER, fiscal_year=2026, actor="t")
        app.recorder.insert_events([app.mapper.to_stored_event(e) for e in year.collect_events()])
        for _ in range(2):
            year.accrue(
                contract_amount_fen=1,
                subsidy_fen=0,
                post_subsidy_fen=0,
                post_subsidy_cap_fen=0,
                redemption_id=year.id,
                rule="r",
                actor="t",
            )
        version_3 = [app.mapper.to_stored_event(e) for e in year.collect_events()][1:]
        other = ProviderYear(provider_id=PROVIDER_2, fiscal_year=2026, actor="t")
        other_events = [app.mapper.to_stored_event(e) for e in other.collect_events()]
        before = log_length(app)

        with pytest.raises(IntegrityError):
            app.recorder.insert_events(version_3)
        with pytest.raises(IntegrityError):  # decided on version 2, which was never stored
            app.recorder.insert_events(other_events, read_set=[(year.id, 2)])

        assert log_length(app) == before
        assert [e.originator_version for e in app.events.get(year.id)] == [1]


def accrued(year: ProviderYear, contract_amount_fen: int) -> list[StoredEvent]:
    year.accrue(
        contract_amount_fen=contract_amount_fen,
        subsidy_fen=0,
        post_subsidy_fen=0,
        post_subsidy_cap_fen=0,
        redemption_id=year.id,
        rule="r",
        actor="t",
    )
    return list(year.collect_events())


def test_a_pipelined_batch_built_on_one_that_failed_is_refused_even_if_its_versions_exist(
    pg_schema_url: str,
) -> None:
    """Another process stores version 2 first, so this writer's batch with its own version 2
    fails; the next batch, already at the server, follows a stored version 2 — the other
    process's, not the one it was decided on. It must be refused (it was decided on a state
    that never existed), and the inserter must go on storing after it."""
    with open_ledger(pg_schema_url) as app:
        to_stored = app.mapper.to_stored_event
        ours = ProviderYear(provider_id=PROVIDER, fiscal_year=2026, actor="t")
        app.recorder.insert_events([to_stored(e) for e in ours.collect_events()])
        theirs = app.repository.get(ours.id)
        app.recorder.insert_events([to_stored(e) for e in accrued(theirs, 7)])  # their version 2
        our_2 = [to_stored(e) for e in accrued(ours, 1)]
        our_3 = [to_stored(e) for e in accrued(ours, 1)]
        inserter = app.recorder.pipelined_inserter()  # type: ignore[attr-defined]
        try:
            inserter.send(our_2, [])
            inserter.send(our_3, [])
            outcomes: list[Any] = []
            while len(outcomes) < 2:
                select.select([inserter.fileno()], [], [], 1.0)
                outcomes += inserter.poll()
            assert [type(o) for o in outcomes] == [IntegrityError, IntegrityError]
            after = app.repository.get(ours.id)
            assert (after.version, after.redeemed_contract_fen) == (2, 7)
            inserter.send([to_stored(e) for e in accrued(after, 5)], [])
            stored: list[Any] = []
            while not stored:
                select.select([inserter.fileno()], [], [], 1.0)
                stored += inserter.poll()
            assert isinstance(stored[0], list)
        finally:
            inserter.close()
        assert app.repository.get(ours.id).redeemed_contract_fen == 12


def test_the_writer_recovers_when_its_postgresql_connection_is_killed(
    pg_schema_url: str,
) -> None:
    with open_ledger(pg_schema_url) as app:
        open_worked_example(app)
        voucher_id = issue(app, face_value_fen=5_000_000)
        redeem(app, voucher_id, contract_no="C-0", amount_fen=1_000)
        with psycopg.connect(pg_schema_url.split("?")[0], autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1

        outcomes: list[str] = []

        def redeem_five() -> None:  # the first may meet the dead connection: an error, no hang
            for i in range(1, 6):
                try:
                    redeem(app, voucher_id, contract_no=f"C-{i}", amount_fen=1_000)
                    outcomes.append("ok")
                except Exception as exc:
                    outcomes.append(type(exc).__name__)

        caller = threading.Thread(target=redeem_five, daemon=True)
        caller.start()
        caller.join(timeout=60)

        assert not caller.is_alive(), f"redemptions hang after {outcomes}"
        assert outcomes[-1] == "ok", outcomes
        stored = app.redemption(ContractClaim.create_id(PROVIDER, f"C-{outcomes.index('ok') + 1}"))
        assert stored.contract_amount_fen == 1_000


def test_closing_while_postgresql_is_unreachable_fails_the_waiting_callers_and_returns(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = VoucherLedger(Settings(database_url=pg_schema_url), clock=lambda: TODAY)
    open_worked_example(app)
    voucher_id = issue(app, face_value_fen=5_000_000)
    redeem(app, voucher_id, contract_no="C-up", amount_fen=1_000)  # all it needs is cached

    def unreachable(*_: Any, **__: Any) -> Any:
        raise psycopg.OperationalError("connection refused (test)")

    monkeypatch.setattr("ledger.adapters.postgres.own_connection", unreachable)
    with psycopg.connect(pg_schema_url.split("?")[0], autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()"
        )
    outcome: list[str] = []

    def caller() -> None:
        try:
            redeem(app, voucher_id, contract_no="C-down", amount_fen=1_000)
            outcome.append("ok")
        except Exception as exc:
            outcome.append(type(exc).__name__)

    waiting = threading.Thread(target=caller, daemon=True)
    waiting.start()
    waiting.join(timeout=1.5)  # its batch meets the dead connection; reconnecting fails
    started = time.monotonic()
    app.close()
    waiting.join(timeout=10)

    assert time.monotonic() - started < 10
    assert not waiting.is_alive()
    assert outcome and outcome[0] != "ok", outcome


def test_claims_are_kept_as_ids_and_still_refuse_a_duplicate_and_take_a_claw_back(
    app: VoucherLedger,
) -> None:
    """The writer keeps a redemption's invoice claim as its id alone (ledger/unit_of_work.py):
    a second claim of the invoice is refused from the id; the contract's claim stays whole
    (payouts read it), and a claw-back changes it."""
    open_worked_example(app)
    voucher = issue(app)
    first, _ = redeem(app, voucher, contract_no="IDS-1")
    cache = app.writer.cache
    invoice = InvoiceClaim.create_id("INV-IDS-1")
    assert cache.get(invoice) is None and cache.exists(InvoiceClaim, invoice)
    assert cache.get(first.id) is not None and not cache.exists(InvoiceClaim, first.id)
    with pytest.raises(DuplicateClaim):
        redeem(app, voucher, contract_no="IDS-1", invoice_no="INV-other")
    with pytest.raises(DuplicateClaim):
        redeem(app, voucher, contract_no="IDS-2", invoice_no="INV-IDS-1")
    clawed, _ = app.claw_back(first.id, reason_code="false-invoice", actor="inspector-1")
    assert clawed.id == first.id
    assert cache.exists(InvoiceClaim, invoice)
    # Another process's ledger, which kept nothing, refuses the duplicate from the store.
    with open_ledger(app.settings.database_url) as other:
        assert not other.writer.cache.exists(InvoiceClaim, invoice)
        with pytest.raises(DuplicateClaim):
            redeem(other, voucher, contract_no="IDS-1", invoice_no="INV-elsewhere")


def test_a_payout_reads_its_lines_stored_aggregates_in_a_few_queries_not_one_each(
    app: VoucherLedger,
) -> None:
    """A hot provider's payout reads a contract claim and a payable line for each of its
    lines. One query each held the writer's thread for seconds (4.3 s for 1,500 lines), every
    other write waiting; a ledger that kept nothing now loads them with one query a thousand
    (ledger/adapters/many_streams.py), and the payout, its approval and its cancellation
    decide exactly as before."""
    world = open_worked_example(app)
    voucher = issue(app)
    redeemed = [
        redeem(app, voucher, contract_no=f"BULK-{n}", amount_fen=1_000)[0] for n in range(40)
    ]
    candidates = [(r.id, "subsidy") for r in redeemed]
    with open_ledger(app.settings.database_url) as cold:
        loads = counted_loads(cold)
        cold.change_payment_details(
            PROVIDER, bank_account="6222000011112222", contact=None, reason="t", actor="officer-1"
        )
        made, _ = cold.create_payout(
            payee_id=PROVIDER, source_id=world.province, candidates=candidates, actor="clerk-1"
        )
        assert len(made.lines) == 40
        assert made.amount_fen == sum(dict(r.splits)[world.province] for r in redeemed)
        assert len(loads) < 5, "the lines were loaded one by one"
    with open_ledger(app.settings.database_url) as cold:
        loads = counted_loads(cold)
        approved, _ = cold.approve_payout(made.id, actor="clerk-2")
        assert approved.status == "approved" and len(loads) < 5
        cancelled, _ = cold.cancel_payout(made.id, reason="wrong period", actor="clerk-2")
        assert cancelled.status == "cancelled"
    # Its lines are free again: a new payout takes every one of them.
    again, _ = app.create_payout(
        payee_id=PROVIDER, source_id=world.province, candidates=candidates, actor="clerk-1"
    )
    assert again.amount_fen == made.amount_fen and again.id != made.id


def counted_loads(ledger: VoucherLedger) -> list[Any]:
    """The ids the ledger's writer loads one by one from now on."""
    loads: list[Any] = []
    load = ledger.writer._load

    def counting(agg_id: Any) -> Any:
        loads.append(agg_id)
        return load(agg_id)

    ledger.writer._load = counting  # type: ignore[method-assign]
    return loads
