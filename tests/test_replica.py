"""A second machine on PostgreSQL's own replication (issue 15): a hot standby streaming from the
primary (scripts/pg.sh standby), with ``synchronous_commit = remote_apply``, holds every
acknowledged write the moment it is acknowledged; the primary crashes, the standby is promoted
and the ledger goes on there with nothing acknowledged lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ledger.application import VoucherLedger
from ledger.settings import Settings
from tests.conftest import TODAY, issue, open_worked_example, redeem
from tests.outage_support import Cluster, cluster_folder, own_cluster, pg_sh, remove_cluster

REDEMPTIONS = 30
REPLICATION_WAIT_S = 30.0


@contextmanager
def standby_of(primary: Cluster) -> Iterator[Cluster]:
    folder = cluster_folder("standby")
    try:
        url = pg_sh("standby", folder, primary.folder).strip().splitlines()[-1]
        yield Cluster(folder, url)
    finally:
        remove_cluster(folder)


def one(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def wait_for(what: str, check: object) -> None:
    deadline = time.monotonic() + REPLICATION_WAIT_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def wait_streaming(primary: Cluster) -> None:
    """Until the primary streams to one standby."""
    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    wait_for("the standby never streamed", lambda: one(primary.url, streaming) == 1)


def test_remote_apply_standby_has_every_acknowledged_write_and_takes_over() -> None:
    with own_cluster() as primary, standby_of(primary) as standby:
        # The standby streams; then every commit waits until the standby has applied it.
        wait_streaming(primary)
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            conn.execute("SELECT pg_reload_conf()")
        wait_for(
            "the standby never became synchronous",
            lambda: (
                one(
                    primary.url,
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                )
                == 1
            ),
        )
        assert one(standby.url, "SELECT pg_is_in_recovery()") is True

        app = VoucherLedger(Settings(database_url=primary.url), clock=lambda: TODAY)
        try:
            open_worked_example(app)
            for n in range(REDEMPTIONS):
                redeem(app, issue(app), contract_no=f"R-{n}", amount_fen=10_000)
                # Acknowledged, so already applied on the standby: read there at once.
                assert standby.claims_in_log() == n + 1
            # While the standby does not apply what it receives, nothing is acknowledged.
            voucher = issue(app)
            one(standby.url, "SELECT pg_wal_replay_pause()")
            done = threading.Event()
            writer = threading.Thread(
                target=lambda: (
                    redeem(app, voucher, contract_no="HELD", amount_fen=10_000),
                    done.set(),
                )
            )
            writer.start()
            try:
                assert not done.wait(1.0), "acknowledged before the standby applied it"
            finally:
                one(standby.url, "SELECT pg_wal_replay_resume()")
                writer.join(REPLICATION_WAIT_S)
            assert done.is_set() and standby.claims_in_log() == REDEMPTIONS + 1
            head = app.recorder.max_notification_id()
        finally:
            app.close()
        assert one(standby.url, "SELECT max(notification_id) FROM voucherledger_events") == head

        # The primary crashes; the standby is promoted and the ledger goes on there.
        primary.kill()
        pg_sh("promote", standby.folder)
        wait_for(
            "the standby was not promoted",
            lambda: one(standby.url, "SELECT NOT pg_is_in_recovery()"),
        )
        with psycopg.connect(standby.url, autocommit=True) as conn:  # no standby of its own
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            conn.execute("SELECT pg_reload_conf()")
        taken_over = VoucherLedger(Settings(database_url=standby.url), clock=lambda: TODAY)
        try:
            assert standby.claims_in_log() == REDEMPTIONS + 1
            assert taken_over.recorder.max_notification_id() == head
            redeem(taken_over, issue(taken_over), contract_no="AFTER", amount_fen=10_000)
            assert standby.claims_in_log() == REDEMPTIONS + 2
        finally:
            taken_over.close()
