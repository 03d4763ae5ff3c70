"""PostgreSQL goes away and comes back (issue 12, item 8): while it is away every request that
needs it is refused with 503 ``database-unavailable`` and ``Retry-After``, never a 500 and never
a hang; once it is back every pool heals by itself and every endpoint answers within 5 s."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eventsourcing.persistence as es
import falcon
import falcon.testing
import httpx
import psycopg
import pytest
from psycopg_pool import PoolTimeout

from api import problems
from ledger.adapters.postgres import ReconnectingPool, looks_alive
from ledger.application import VoucherLedger
from ledger.claims import ContractClaim
from ledger.errors import Busy, DatabaseUnavailable
from ledger.settings import Settings
from projections.reader import ProjectionBehind
from projections.runner import Projector
from projections.store import open_views
from tests.conftest import PROVIDER, TODAY, issue, log_length, open_worked_example, redeem
from tests.outage_support import (
    REQUEST_TIMEOUT_S,
    Record,
    free_port,
    keep_redeeming,
    own_cluster,
    probe_until_healed,
    probes,
    seed,
    served,
)

ADMIN = "outage-admin-token-" + "z" * 24
CLIENTS = 8
LOAD_BEFORE_S = 1.5
OUTAGE_S = 4.0
HEAL_S = 5.0
PROMPT_S = 1.0  # how soon a command or a read is refused while nothing can connect
SERVICE_DATE = TODAY.isoformat()  # the ledgers' clock: issued and served today
VALID_UNTIL = TODAY.replace(month=12, day=31).isoformat()


# ---- the edge: one mapping, every 503 with Retry-After --------------------------------------
def _wrapped(error: BaseException, wrapper: type[Exception]) -> Exception:
    """``error`` as eventsourcing's recorders raise it: ``raise wrapper(...) from error``."""
    outer = wrapper(str(error))
    outer.__cause__ = error
    return outer


UNAVAILABLE = {
    "psycopg-refused": psycopg.OperationalError("connection refused"),
    "psycopg-closed": psycopg.InterfaceError("the connection is closed"),
    "psycopg-read-only": psycopg.errors.ReadOnlySqlTransaction("read-only transaction"),
    "pool-timeout": PoolTimeout("couldn't get a connection after 10.00 sec"),
    "recorder-wrapped": _wrapped(psycopg.OperationalError("server closed"), es.OperationalError),
    "recorder-own": es.OperationalError("no result for an insert"),
    "recorder-interface": es.InterfaceError("connection lost"),
    "sqlite-locked": sqlite3.OperationalError("database is locked"),
    "sqlite-wrapped": _wrapped(
        sqlite3.OperationalError("unable to open database file"), es.OperationalError
    ),
    "sqlite-full": _wrapped(sqlite3.OperationalError("database or disk is full"), es.DatabaseError),
}
BUGS = {
    "sqlite-no-table": _wrapped(sqlite3.OperationalError("no such table: x"), es.OperationalError),
    "key-error": KeyError("x"),
    "data-error": _wrapped(psycopg.DataError("invalid input syntax"), es.DataError),
}


class Raises:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise self.error


def answer_to(error: BaseException) -> falcon.testing.Result:
    app = falcon.App()
    problems.install(app)
    app.add_route("/", Raises(error))
    return falcon.testing.TestClient(app).simulate_get("/")


@pytest.mark.parametrize("name", sorted(UNAVAILABLE))
def test_a_database_that_cannot_be_reached_is_a_503_with_retry_after_not_a_500(name: str) -> None:
    result = answer_to(UNAVAILABLE[name])

    assert result.status_code == 503, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["type"].endswith("/database-unavailable")
    assert result.json["status"] == 503
    assert result.headers["retry-after"].isdigit()
    assert "127.0.0.1" not in result.text and "refused" not in result.text  # says little


@pytest.mark.parametrize("name", sorted(BUGS))
def test_a_bug_stays_a_500_however_much_it_looks_like_the_database(name: str) -> None:
    result = answer_to(BUGS[name])

    assert result.status_code == 500
    assert result.json["type"].endswith("/internal-error")


@pytest.mark.parametrize(
    "error",
    [
        ProjectionBehind("at 3, not yet 9"),
        Busy("gave up"),
        DatabaseUnavailable("down"),
        falcon.HTTPServiceUnavailable(),
    ],
    ids=["projection-behind", "busy", "database-unavailable", "falcon"],
)
def test_every_503_says_when_to_retry(error: Exception) -> None:
    result = answer_to(error)

    assert result.status_code == 503
    assert result.headers["retry-after"].isdigit()


# ---- the writer: refuses at once while it cannot connect, stores again after --------------
@dataclass
class CutOff:
    app: VoucherLedger
    voucher_id: Any


@pytest.fixture
def cut_off(pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CutOff]:
    """A PostgreSQL ledger with a voucher, whose connections the server has just killed and
    which cannot open new connections of its own (the writer's) until the test undoes the
    patch of ``own_connection``."""
    app = VoucherLedger(Settings(database_url=pg_schema_url), clock=lambda: TODAY)
    try:
        open_worked_example(app)
        voucher_id = issue(app, face_value_fen=5_000_000, valid_until=VALID_UNTIL)

        def unreachable(*_: Any, **__: Any) -> Any:
            raise psycopg.OperationalError("connection refused (test)")

        monkeypatch.setattr("ledger.adapters.postgres.own_connection", unreachable)
        terminate_connections(pg_schema_url)
        yield CutOff(app, voucher_id)
    finally:
        monkeypatch.undo()
        app.close()


TERMINATE_WAIT_MS = 5_000


def terminate_connections(url: str) -> None:
    """What a database restart does to every connection open to it; returns once each of
    those backends has exited (has sent its goodbye and closed the socket). Without the wait,
    ``pg_terminate_backend`` returns as soon as it has signalled, and a query may still go out
    on a connection whose backend is about to say it is terminating: no pre-ping can close
    that window, and the test would race it (it failed so once in a full run)."""
    with psycopg.connect(url.split("?")[0], autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()",
            (TERMINATE_WAIT_MS,),
        )


def redeem_now(cut: CutOff, contract_no: str) -> tuple[str, float]:
    """Redeem a little on the voucher: the outcome's name ("ok" or the error's) and the time."""
    started_s = time.monotonic()
    try:
        redeem(cut.app, cut.voucher_id, contract_no, amount_fen=1_000, service_date=SERVICE_DATE)
    except Exception as exc:
        return type(exc).__name__, time.monotonic() - started_s
    return "ok", time.monotonic() - started_s


def test_the_writer_refuses_queued_commands_at_once_while_postgresql_cannot_be_reached(
    cut_off: CutOff,
) -> None:
    # Given its batch met the dead connection (its outcome is the store's error, a 503 too)
    first, took_s = redeem_now(cut_off, "C-first")
    assert first in ("OperationalError", "DatabaseUnavailable") and took_s < PROMPT_S, first
    # When callers queue commands while the writer cannot connect again
    outcomes: list[tuple[str, float]] = []
    callers = [
        threading.Thread(target=lambda n=n: outcomes.append(redeem_now(cut_off, f"C-{n}")))
        for n in range(8)
    ]

    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=10)

    # Then each is refused, at once
    assert not any(thread.is_alive() for thread in callers), "callers left waiting"
    assert [name for name, _ in outcomes] == ["DatabaseUnavailable"] * 8, outcomes
    assert max(took_s for _, took_s in outcomes) < PROMPT_S, outcomes


def test_the_writer_stores_again_soon_after_postgresql_can_be_reached_again(
    cut_off: CutOff, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert redeem_now(cut_off, "C-down")[0] in ("OperationalError", "DatabaseUnavailable")

    monkeypatch.undo()  # the database can be reached again
    deadline_s = time.monotonic() + 2.0
    while (outcome := redeem_now(cut_off, "C-up"))[0] != "ok":
        assert outcome[0] == "DatabaseUnavailable", outcome
        assert time.monotonic() < deadline_s, "the writer did not reconnect"
        time.sleep(0.1)

    stored = cut_off.app.redemption(ContractClaim.create_id(PROVIDER, "C-up"))
    assert stored.contract_amount_fen == 1_000


# ---- the pools: refuse at once while nothing can connect, heal after a restart ---------------
def test_a_pool_refuses_at_once_while_nothing_can_connect() -> None:
    kwargs = {"host": "127.0.0.1", "port": free_port(), "dbname": "x", "user": "x"}
    pool = ReconnectingPool(pre_ping=True, kwargs=kwargs, min_size=1, open=False, timeout=10)
    pool.open()
    try:
        time.sleep(0.2)  # its first attempt to connect has failed
        started_s = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        assert time.monotonic() - started_s < PROMPT_S
    finally:
        pool.close()


def test_the_views_answer_at_once_after_the_server_killed_their_connections(
    pg_schema_url: str,
) -> None:
    store = open_views(Settings(database_url=pg_schema_url))
    try:
        assert store.position() == 0  # the pool holds connections now
        terminate_connections(pg_schema_url)

        started_s = time.monotonic()
        assert store.position() == 0
        assert time.monotonic() - started_s < PROMPT_S
    finally:
        store.close()


def test_a_catch_up_waits_out_a_database_that_goes_away_for_a_moment(
    memory_app: VoucherLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_worked_example(memory_app)
    store = open_views(memory_app.settings)
    failures = [es.OperationalError("server closed the connection unexpectedly")] * 2
    commit = store.commit

    def flaky_commit(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit", flaky_commit)
    try:
        Projector(memory_app, store).catch_up()

        assert not failures
        assert store.position() == log_length(memory_app)
    finally:
        store.close()


# ---- the served API, PostgreSQL stopped under load ------------------------------------------
def test_postgresql_stopped_under_load_then_started_again_costs_no_500_and_heals_by_itself(
    tmp_path: Path,
) -> None:
    # Given a served ledger on a cluster of its own, under redemption load
    with (
        own_cluster() as cluster,
        served(cluster.url, tmp_path, ADMIN) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as client,
    ):
        world = seed(client, ADMIN, CLIENTS)
        record = Record()
        stop = threading.Event()
        load = [
            threading.Thread(target=keep_redeeming, args=(server, world, v, record, stop))
            for v in world.vouchers
        ]
        back: dict[str, float] = {}
        healed: dict[str, list[float]] = {name: [] for name in probes(world)}
        probing = [
            threading.Thread(
                target=probe_until_healed, args=(server, p, record, back, healed[name], HEAL_S)
            )
            for name, p in probes(world).items()
        ]
        for thread in load:
            thread.start()
        try:
            time.sleep(LOAD_BEFORE_S)
            # When PostgreSQL stops in immediate mode for a few seconds, then starts again
            killed_s = time.monotonic()
            cluster.kill()
            for thread in probing:
                thread.start()
            time.sleep(OUTAGE_S)
            cluster.restart()
            back["at"] = time.monotonic()
            for thread in probing:
                thread.join(timeout=HEAL_S + 2 * REQUEST_TIMEOUT_S)
            time.sleep(0.5)  # a little load after healing too
        finally:
            stop.set()
            for thread in load + probing:
                thread.join(timeout=2 * REQUEST_TIMEOUT_S)
        story = record.timeline(killed_s) + f"\nback at {back['at'] - killed_s:.1f} s"

        # Then nothing answered 500, and every 503 said when to retry
        failed = [s for s in record.seen if s.status is not None and s.status >= 500]
        assert all(s.status == 503 for s in failed), (story, server.log_tail())
        assert all(s.retry_after and s.retry_after.isdigit() for s in failed), story
        assert failed, "the outage went unnoticed: " + story
        # ... and each kind of request succeeded within 5 s of PostgreSQL being back
        late = {name: took for name, took in healed.items() if not took or took[0] > HEAL_S}
        assert not late, (late, story, server.log_tail())
        # ... and every redemption whose outcome was unknown answers 201 when retried
        firsts = {a.key: a for a in record.attempts}
        assert {a.status for a in firsts.values()} <= {201, 503, None}, story
        provider = {"Authorization": f"Bearer {world.provider}"}
        for attempt in (a for a in firsts.values() if a.status != 201):
            again = client.post(
                "/v1/redemptions",
                json=attempt.body,
                headers={**provider, "Idempotency-Key": attempt.key},
            )
            assert again.status_code == 201, again.text
            attempt.redemption_id = again.json()["id"]
        # ... and every acknowledged redemption is in the log, once
        acknowledged = {a.redemption_id for a in firsts.values()}
        assert None not in acknowledged and len(acknowledged) == len(firsts)
        assert cluster.claims_in_log() == len(acknowledged)


def test_an_idle_connection_is_taken_as_alive_without_a_query_until_the_server_closes_it(
    pg_schema_url: str,
) -> None:
    """The pool's pre-ping asks the server only when the socket says something happened."""
    url = pg_schema_url.split("?")[0]
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as admin:
        assert looks_alive(conn)
        with conn.transaction():
            assert not looks_alive(conn)  # not idle: the real check decides
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        deadline_s = time.monotonic() + PROMPT_S
        while looks_alive(conn) and time.monotonic() < deadline_s:
            time.sleep(0.01)
        assert not looks_alive(conn)
