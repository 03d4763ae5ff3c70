"""The read models (projections/): every row equals what replaying the log gives, a projector
killed mid-catch-up resumes without applying an event twice or skipping one, a rebuild gives the
same rows, and two projectors on one store cannot interleave their batches."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger.application import VoucherLedger
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim, RefusedRedemption
from ledger.funding import FundingSource
from ledger.institution import Institution
from ledger.settings import Settings
from ledger.voucher import ACTIVE, Voucher
from projections.runner import Projector
from projections.store import (
    ACTIONS,
    ENTERPRISE_YEARS,
    INSTITUTIONS,
    PAYABLES,
    PROVIDER_YEARS,
    REDEMPTIONS,
    REFUSALS,
    SOURCES,
    TABLES,
    VOUCHERS,
    Row,
    Table,
    ViewStore,
    open_views,
)
from tests.conftest import TODAY, AppFactory, issue, open_worked_example, redeem
from tests.test_properties import Harness, aggregate_ids, random_step, random_world

Rows = dict[str, list[Row]]


def views_of(store: ViewStore, *, positions: bool = True) -> Rows:
    """Every row of every view, keyed by table; ``positions=False`` drops the bookkeeping
    columns a replay does not recompute."""
    skip = set() if positions else {"position"}
    return {
        t.name: [{k: v for k, v in r.items() if k not in skip} for r in store.all_rows(t)]
        for t in TABLES
    }


def first_positions(app: VoucherLedger) -> dict[UUID, int]:
    """The position of each aggregate's first event."""
    seen: dict[UUID, int] = {}
    start = 1
    while page := app.recorder.select_notifications(start, 1000):
        for n in page:
            seen.setdefault(n.originator_id, n.id)  # type: ignore[arg-type]
        start = page[-1].id + 1
    return seen


def replayed_views(app: VoucherLedger) -> Rows:
    """The rows recomputed without the projector: each aggregate replayed from its events, the
    disbursed totals from the claims in the log."""
    issued_at = first_positions(app)
    rows: dict[Table, list[Row]] = {t: [] for t in TABLES}
    aggregates = [app.repository.get(agg_id) for agg_id in aggregate_ids(app)]
    vouchers = [a for a in aggregates if isinstance(a, Voucher)]
    for a in aggregates:
        if isinstance(a, FundingSource):
            rows[SOURCES].append(source_row(app, a, vouchers))
        elif isinstance(a, Voucher):
            rows[VOUCHERS].append(voucher_row(a, issued_at[a.id]))
        elif isinstance(a, ContractClaim):
            rows[PAYABLES].extend(payable_rows(a, issued_at[a.id]))
            rows[REDEMPTIONS].append(redemption_row(a, issued_at[a.id]))
        elif isinstance(a, Institution):
            rows[INSTITUTIONS].append(
                {
                    "aggregate_id": str(a.id),
                    "institution_id": a.uscc,
                    "name": a.name,
                    "kind": a.kind,
                    "bank_account": a.bank_account,
                    "contact": a.contact,
                    "frozen": int(a.frozen),
                }
            )
        elif isinstance(a, RefusedRedemption):
            rows[REFUSALS].append(
                {
                    "attempt_id": str(a.id),
                    "slug": a.slug,
                    "provider_id": a.provider_id,
                    "voucher_id": str(a.voucher_id),
                    "contract_no": a.contract_no,
                    "invoice_no": a.invoice_no,
                    "contract_amount_fen": a.contract_amount_fen,
                    "detail": a.detail,
                    "attempted_by": a.attempted_by,
                    "recorded_at": a.created_on.isoformat(),
                }
            )
        elif isinstance(a, EnterpriseYear):
            rows[ENTERPRISE_YEARS].append(
                {
                    "aggregate_id": str(a.id),
                    "institution_id": a.holder_id,
                    "fiscal_year": a.fiscal_year,
                    "subsidy_received_fen": a.subsidy_received_fen,
                    "clawed_back_fen": a.clawed_back_fen,
                    "cap_fen": a.cap_fen,
                }
            )
        elif isinstance(a, ProviderYear):
            rows[PROVIDER_YEARS].append(
                {
                    "aggregate_id": str(a.id),
                    "institution_id": a.provider_id,
                    "fiscal_year": a.fiscal_year,
                    "redeemed_contract_fen": a.redeemed_contract_fen,
                    "subsidy_earned_fen": a.subsidy_earned_fen,
                    "post_subsidy_accrued_fen": a.post_subsidy_accrued_fen,
                    "post_subsidy_clawed_back_fen": a.post_subsidy_clawed_back_fen,
                    "post_subsidy_cap_fen": a.post_subsidy_cap_fen,
                }
            )
    replayed = {t.name: sorted(rows[t], key=lambda r, t=t: t.key_of(r)) for t in TABLES}
    # An action's key is its position, which views_of(positions=False) leaves out.
    replayed[ACTIONS.name] = [
        {k: v for k, v in a.items() if k != "position"} for a in actions_in_log(app)
    ]
    return replayed


def actions_in_log(app: VoucherLedger) -> list[Row]:
    """Clawbacks, freezes and unfreezes, read from the log's events one by one."""
    kinds = {
        "ContractClaim.ClawedBack": "clawback",
        "Institution.Frozen": "freeze",
        "Institution.Unfrozen": "unfreeze",
        "Institution.PaymentDetailsChanged": "payment-details",
        "Principal.Revoked": "revoke-principal",
    }
    found = []
    start = 1
    while page := app.recorder.select_notifications(start, 1000):
        for n in page:
            kind = kinds.get(n.topic.split(":", 1)[-1])
            if kind is None:
                continue
            e: Any = app.mapper.to_domain_event(n)
            subject = str(e.originator_id)
            if kind not in ("clawback", "revoke-principal"):
                subject = app.repository.get(e.originator_id).uscc
            found.append(
                {
                    "position": n.id,
                    "kind": kind,
                    "subject_id": subject,
                    "reason": e.reason_code if kind == "clawback" else e.reason,
                    "actor": e.actor,
                    "recorded_at": e.timestamp.isoformat(),
                }
            )
        start = page[-1].id + 1
    return found


def redemption_row(c: ContractClaim, position: int) -> Row:
    return {
        "redemption_id": str(c.id),
        "provider_id": c.provider_id,
        "holder_id": c.holder_id,
        "voucher_id": str(c.voucher_id),
        "programme_id": c.programme_id,
        "fiscal_year": c.fiscal_year,
        "contract_no": c.contract_no,
        "invoice_no": c.invoice_no,
        "contract_amount_fen": c.contract_amount_fen,
        "subsidy_fen": c.subsidy_fen,
        "service_date": c.service_date,
        "recorded_at": c.created_on.isoformat(),
        "recorded_day": (c.created_on + dt.timedelta(hours=8)).date().isoformat(),
        "redeemed_by": c.redeemed_by,
        "clawed_back": int(c.clawed_back),
        "redeemed_position": position,
    }


def source_row(app: VoucherLedger, s: FundingSource, vouchers: list[Voucher]) -> Row:
    live = [v for v in vouchers if v.status == ACTIVE and s.source_id in dict(v.reservations)]
    return {
        "aggregate_id": str(s.id),
        "source_id": s.source_id,
        "name": s.name,
        "level": s.level,
        "fiscal_year": s.fiscal_year,
        "document_ref": s.document_ref,
        "appropriation_fen": s.appropriation_fen,
        "reserved_fen": s.reserved_fen,
        "released_fen": s.released_fen,
        "post_subsidy_reserved_fen": s.post_subsidy_reserved_fen,
        "post_subsidy_released_fen": s.post_subsidy_released_fen,
        "disbursed_fen": app.owed_fen(s.source_id)[0],
        "post_subsidy_fen": app.owed_fen(s.source_id)[1],
        "paid_fen": 0,  # no payout in these workloads
        "recovered_fen": s.recovered_fen,
        "live_vouchers": len(live),
    }


def voucher_row(v: Voucher, issued_position: int) -> Row:
    return {
        "voucher_id": str(v.id),
        "programme_id": v.programme_id,
        "holder_id": v.holder_id,
        "fiscal_year": v.fiscal_year,
        "face_value_fen": v.face_value_fen,
        "remaining_fen": v.remaining_fen,
        "valid_until": v.valid_until,
        "status": v.status,
        "source_ids": ",".join(s for s, _ in v.reservations),
        "issued_position": issued_position,
        "issued_at": v.created_on.isoformat(),
    }


def payable_rows(c: ContractClaim, position: int) -> list[Row]:
    lines = [(f"subsidy:{s}", "subsidy", s, a) for s, a in c.splits]
    lines.append(("bonus", "bonus", c.post_subsidy_source_id, c.post_subsidy_fen))
    return [
        {
            "redemption_id": str(c.id),
            "line": line,
            "kind": kind,
            "source_id": source_id,
            "provider_id": c.provider_id,
            "holder_id": c.holder_id,
            "programme_id": c.programme_id,
            "voucher_id": str(c.voucher_id),
            "contract_no": c.contract_no,
            "fiscal_year": c.fiscal_year,
            "amount_fen": amount_fen,
            "clawed_back_fen": amount_fen if c.clawed_back else 0,
            "paid_fen": 0,
            "payout_id": None,
            "recorded_at": c.created_on.isoformat(),
            "redeemed_position": position,
        }
        for line, kind, source_id, amount_fen in lines
        if amount_fen
    ]


@pytest.mark.parametrize("seed", [5, 2026])
def test_every_view_row_equals_the_log_replayed_after_random_workloads(
    make_app: AppFactory, seed: int
) -> None:
    """Seeded workloads of issue / redeem / revoke / expire / claw back / freeze; the projector
    runs in small pages at random moments in between, so rows are cached, reloaded and changed
    across batches. Then a rebuild from 0 gives the same rows, positions included."""
    rng = random.Random(seed)
    app = make_app()
    store = open_views(app.settings)
    try:
        projector = Projector(app, store, page_size=rng.choice((7, 50, 500)))
        h = Harness(app, random_world(rng))
        h.open_world()
        for _ in range(80):
            random_step(h, rng)
            if rng.randrange(5) == 0:
                projector.step()
        projector.catch_up()
        assert h.outcomes["redeemed"] > 0 and h.outcomes["clawed-back"] > 0, h.outcomes
        assert views_of(store, positions=False) == replayed_views(app)

        followed = views_of(store)
        store.reset()
        Projector(app, store).catch_up()
        assert views_of(store) == followed
    finally:
        store.close()
        app.close()


def test_a_projector_whose_position_moved_starts_again_from_the_stored_rows(
    make_app: AppFactory,
) -> None:
    """Two projectors on one store (a server's and a second one): each batch is applied once."""
    app = make_app()
    open_worked_example(app)
    first_store, second_store = open_views(app.settings), open_views(app.settings)
    try:
        first = Projector(app, first_store, page_size=3)
        second = Projector(app, second_store, page_size=3)
        first.step()
        for n in range(4):
            redeem(app, issue(app), contract_no=f"C-{n}")
        second.catch_up()  # moves the position under the first one's feet
        assert first.step() == 0  # refused: its start position moved; nothing written
        first.catch_up()
        assert views_of(first_store, positions=False) == replayed_views(app)
    finally:
        first_store.close()
        second_store.close()
        app.close()


def _project(url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_projector_killed_mid_catch_up_resumes_to_the_same_rows_as_a_rebuild(
    make_app: AppFactory,
) -> None:
    """A real process, SIGKILLed while catching up in small transactions, then restarted."""
    app = make_app()
    url = app.settings.database_url
    open_worked_example(app)
    for n in range(150):
        redeem(app, issue(app, face_value_fen=200_000), contract_no=f"C-{n}", amount_fen=1_000)
    head = app.recorder.max_notification_id() or 0
    store = open_views(app.settings)
    try:
        doomed = _project(url, "--once", "--page-size", "3")
        deadline = time.monotonic() + 60
        while store.position() < head // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = store.position()
        assert 0 < killed_at < head, (killed_at, head)

        assert _project(url, "--once").wait(timeout=120) == 0
        assert store.position() == head
        resumed = views_of(store)
        assert views_of(store, positions=False) == replayed_views(app)

        store.reset()
        Projector(app, store).catch_up()
        assert views_of(store) == resumed
    finally:
        store.close()
        app.close()


def test_the_memory_ledger_gets_views_of_its_own() -> None:
    settings = Settings(database_url="memory://")
    app = VoucherLedger(settings, clock=lambda: TODAY)
    first, second = open_views(settings), open_views(settings)
    try:
        open_worked_example(app)
        Projector(app, first).catch_up()
        assert first.source("province-2026") is not None
        assert second.source("province-2026") is None
    finally:
        first.close()
        second.close()
        app.close()


def test_asking_how_far_the_views_are_does_not_wait_for_a_projector_committing(
    pg_schema_url: str,
) -> None:
    """Every read with read-your-writes asks for the views' position: it must not queue on the
    tracking row that a projector's commit holds locked (nor behind the other readers)."""
    app = VoucherLedger(Settings(database_url=pg_schema_url), clock=lambda: TODAY)
    store = open_views(app.settings)
    try:
        open_worked_example(app)
        Projector(app, store).catch_up()
        position = store.position()
        base = pg_schema_url.split("?")[0]
        with psycopg.connect(base) as holder:  # a projector in the middle of its commit
            holder.execute(
                f"SELECT notification_id FROM {store._tracking_table()} "  # type: ignore[attr-defined]
                "WHERE application_name = %s FOR UPDATE",
                (store.tracking_name,),
            )
            with ThreadPoolExecutor(1) as pool:
                asked = pool.submit(store.position)
                try:
                    seen = asked.result(timeout=2)
                finally:
                    holder.rollback()  # lets a reader that queued finish, so the pool ends
            assert seen == position
    finally:
        store.close()
        app.close()


def test_tables_are_created_again_when_sqlite_refuses_at_once_for_a_commit_in_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector committing between CREATE TABLE IF NOT EXISTS's read of the schema and its
    write makes SQLite answer "database is locked" at once; opening the store asks again."""
    from eventsourcing.persistence import OperationalError as StoreOperationalError
    from eventsourcing.sqlite import SQLiteFactory

    refusals = [StoreOperationalError("database is locked")] * 2
    real = SQLiteFactory.tracking_recorder

    def refusing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteFactory, "tracking_recorder", refusing)
    store = open_views(Settings(database_url=f"sqlite:///{tmp_path / 'views.sqlite'}"))
    try:
        assert refusals == [] and store.position() == 0
    finally:
        store.close()
    monkeypatch.setattr(
        SQLiteFactory,
        "tracking_recorder",
        lambda self, *a, **k: (_ for _ in ()).throw(StoreOperationalError("disk I/O error")),
    )
    with pytest.raises(StoreOperationalError):  # anything else is not asked again
        open_views(Settings(database_url=f"sqlite:///{tmp_path / 'other.sqlite'}"))
