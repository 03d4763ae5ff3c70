"""The tamper-evident log on real SQLite and PostgreSQL: an untouched log verifies; an edited,
deleted or inserted event is named at exactly its position; a forged checkpoint fails its
signature; inclusion proofs verify with the public key alone and fail for an altered event."""

from __future__ import annotations

import base64
import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from audit.follower import ChainFollower
from audit.keys import load_or_create
from audit.proofs import check_proof, prove
from audit.store import CHAIN, CHECKPOINTS, open_audit
from audit.verify import verify
from ledger.application import VoucherLedger
from ledger.settings import persistence_env
from projections.runner import Projector
from tests.conftest import AppFactory, issue, open_worked_example, redeem

EVERY = 8  # events per checkpoint here, so a small log has several


@pytest.fixture
def chained(make_app: AppFactory) -> Iterator[tuple[VoucherLedger, Any, Any]]:
    """A ledger with the worked example and a few redemptions, its chain caught up."""
    app = make_app()
    open_worked_example(app)
    for n in range(6):
        redeem(app, issue(app, face_value_fen=200_000), contract_no=f"C-{n}", amount_fen=1_000)
    store = open_audit(app.settings)
    signer = load_or_create(app.settings.signing_key_path)
    Projector(app, store, ChainFollower(store, signer, every=EVERY)).catch_up()
    try:
        yield app, store, signer
    finally:
        store.close()
        app.close()


@contextmanager
def raw_sql(app: VoucherLedger) -> Iterator[tuple[Any, str, str]]:
    """A connection to the ledger's own database, the events table and its position column:
    what someone with database access could do."""
    url = app.settings.database_url
    if app.settings.backend == "sqlite":
        conn = sqlite3.connect(persistence_env(url)["SQLITE_DBNAME"], isolation_level=None)
        try:
            yield conn, "stored_events", "rowid"
        finally:
            conn.close()
    else:
        schema = parse_qs(urlsplit(url).query)["schema"][0]
        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            yield conn, f'"{schema}".voucherledger_events', "notification_id"


def verdict(app: VoucherLedger, store: Any, signer: Any) -> Any:
    return verify(app, store, signer.key.public_key())


def test_an_untouched_log_verifies_with_every_checkpoint(chained: Any) -> None:
    app, store, signer = chained
    result = verdict(app, store, signer)
    assert result.ok and result.first_bad_position is None
    assert result.events_checked == len(app.recorder.select_notifications(1, 10_000))
    assert len(store.checkpoints()) >= result.events_checked // EVERY


def test_an_edited_event_is_named_at_its_position(chained: Any) -> None:
    app, store, signer = chained
    with raw_sql(app) as (conn, table, position):
        conn.execute(
            f"UPDATE {table} SET state = {_bytes_sql(app)} WHERE {position} = 9",
            (b'{"amount_fen": 1}',),
        )
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, 9)
    assert "edited" in result.detail


def test_an_event_whose_state_was_nulled_is_named_not_a_crash(chained: Any) -> None:
    app, store, signer = chained
    with raw_sql(app) as (conn, table, position):
        conn.execute(f"UPDATE {table} SET state = NULL WHERE {position} = 7")
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, 7)


def test_an_edited_chain_row_is_named_at_its_position(chained: Any) -> None:
    """Proofs and traces read a chain row's leaf hash and originator: they are checked too."""
    app, store, signer = chained
    store.commit(
        store.position(),
        store.position(),
        {CHAIN: [{**store.chain_row(10), "leaf_hash": "0" * 64}]},
    )
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, 10)
    store.commit(
        store.position(),
        store.position(),
        {CHAIN: [{**store.chain_row(9), "chain_hash": "not hex at all"}]},
    )
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, 9)


def test_two_chain_followers_never_sign_overlapping_checkpoints(chained: Any) -> None:
    """A checkpoint signed on demand (``prove``) does not move the position; the server's
    follower must still notice it and not sign the same events again."""
    app, store, signer = chained
    for n in range(3):
        redeem(app, issue(app, face_value_fen=200_000), contract_no=f"D-{n}", amount_fen=1_000)
    server = Projector(app, store, ChainFollower(store, signer, every=10**6))
    server.catch_up()  # both followers now hold the same unsigned events
    on_demand = ChainFollower(store, signer, every=10**6)
    on_demand.checkpoint_now()
    Projector(app, store, on_demand).step()
    for n in range(2):
        redeem(app, issue(app, face_value_fen=200_000), contract_no=f"E-{n}", amount_fen=1_000)
    server.catch_up()
    server.follower.checkpoint_now()  # type: ignore[attr-defined]
    server.step()
    spans = [(c["first_position"], c["position"]) for c in store.checkpoints(limit=10**6)]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans
    assert verdict(app, store, signer).ok


def test_a_deleted_event_is_named_at_its_position(chained: Any) -> None:
    app, store, signer = chained
    with raw_sql(app) as (conn, table, position):
        conn.execute(f"DELETE FROM {table} WHERE {position} = 12")
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, 12)
    assert "deleted" in result.detail


def test_an_inserted_event_is_named_at_its_position(make_app: AppFactory) -> None:
    """A gap in the positions (on PostgreSQL, a rolled-back insert leaves one) is where a forged
    event can be slipped in after the fact."""
    app = make_app()
    open_worked_example(app)
    redeem(app, issue(app))
    with raw_sql(app) as (conn, table, position):
        copy = conn.execute(
            f"SELECT originator_id, originator_version, topic, state FROM {table} "
            f"WHERE {position} = 10"
        ).fetchone()
        conn.execute(f"DELETE FROM {table} WHERE {position} = 10")
    redeem(app, issue(app), contract_no="C-2")
    store = open_audit(app.settings)
    signer = load_or_create(app.settings.signing_key_path)
    try:
        Projector(app, store, ChainFollower(store, signer, every=EVERY)).catch_up()
        assert verdict(app, store, signer).ok
        with raw_sql(app) as (conn, table, position):
            mark = "?" if app.settings.backend == "sqlite" else "%s"
            conn.execute(
                f"INSERT INTO {table} ({position}, originator_id, originator_version, topic, "
                f"state) VALUES (10, {mark}, {mark}, {mark}, {mark})",
                (copy[0], 99, copy[2], copy[3]),
            )
        result = verdict(app, store, signer)
        assert (result.ok, result.first_bad_position) == (False, 10)
        assert "inserted" in result.detail
    finally:
        store.close()
        app.close()


def test_a_forged_checkpoint_fails_its_signature(chained: Any) -> None:
    app, store, signer = chained
    first = store.checkpoints()[0]
    forged = {**first, "head_hash": "0" * 64}  # claims another history, with the old signature
    store.commit(store.position(), store.position(), {CHECKPOINTS: [forged]})
    result = verdict(app, store, signer)
    assert (result.ok, result.first_bad_position) == (False, first["position"])
    assert "does not verify" in result.detail


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoints(chained: Any) -> None:
    """Editing an event and recomputing the chain rows after it still fails: the signed
    checkpoints hold the old head."""
    app, store, signer = chained
    with raw_sql(app) as (conn, table, position):
        conn.execute(f"UPDATE {table} SET state = {_bytes_sql(app)} WHERE {position} = 3", (b"{}",))
    checkpoints = store.checkpoints()
    rebuilt = open_audit(app.settings)  # the same tables, rewritten by someone without the key
    try:
        rebuilt.reset()
        cheat = ChainFollower(rebuilt, load_or_create(None), every=10**6)
        Projector(app, rebuilt, cheat).catch_up()
        rebuilt.commit(rebuilt.position(), rebuilt.position(), {CHECKPOINTS: checkpoints})
        result = verdict(app, rebuilt, signer)
        assert not result.ok and result.first_bad_position == checkpoints[0]["position"]
    finally:
        rebuilt.close()


def test_an_inclusion_proof_verifies_with_the_public_key_alone(chained: Any) -> None:
    app, store, signer = chained
    proof = prove(app, store, 10)
    assert check_proof(proof, signer.public_pem)

    other_key = load_or_create(None)
    assert not check_proof(proof, other_key.public_pem)

    altered = {**proof, "event": {**proof["event"]}}
    state = base64.b64decode(altered["event"]["state_base64"]).replace(b"1", b"2", 1)
    altered["event"]["state_base64"] = base64.b64encode(state).decode()
    assert not check_proof(altered, signer.public_pem)

    moved = {**proof, "position": 11}
    assert not check_proof(moved, signer.public_pem)


def _bytes_sql(app: VoucherLedger) -> str:
    return "?" if app.settings.backend == "sqlite" else "%s"


def test_whichever_event_is_edited_verify_names_exactly_it(chained: Any) -> None:
    """Every position, one at a time, at the start, middle or end of a run between checkpoints
    (verify checks a run at once and goes one by one only where something is wrong)."""
    app, store, signer = chained
    head = store.position()
    assert head > 3 * EVERY
    with raw_sql(app) as (conn, table, position):
        for n in range(1, head + 1):
            row = conn.execute(f"SELECT state FROM {table} WHERE {position} = {n}").fetchone()
            if row is None:
                continue  # a gap: no event at this position
            conn.execute(
                f"UPDATE {table} SET state = {_bytes_sql(app)} WHERE {position} = {n}",
                (b'{"amount_fen": 1}',),
            )
            result = verdict(app, store, signer)
            conn.execute(
                f"UPDATE {table} SET state = {_bytes_sql(app)} WHERE {position} = {n}", (row[0],)
            )
            assert (result.ok, result.first_bad_position) == (False, n), result
    assert verdict(app, store, signer).ok


def test_whichever_chain_row_is_rewritten_verify_names_exactly_it(chained: Any) -> None:
    """Each position in turn, with one of the chain row's columns rewritten."""
    app, store, signer = chained
    head = store.position()
    forgeries = itertools.cycle(
        [
            {"chain_hash": "0" * 64},
            {"leaf_hash": "0" * 64},
            {"originator_id": "00000000-0000-0000-0000-000000000000"},
            {"originator_version": 99},
        ]
    )
    for n in range(1, head + 1):
        row = store.chain_row(n)
        if row is None:
            continue
        store.commit(head, head, {CHAIN: [{**row, **next(forgeries)}]})
        result = verdict(app, store, signer)
        store.commit(head, head, {CHAIN: [row]})
        assert (result.ok, result.first_bad_position) == (False, n), result
    assert verdict(app, store, signer).ok
