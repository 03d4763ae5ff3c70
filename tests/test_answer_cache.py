"""Answers of the views kept at their position (api/answers.py), and aggregates kept for reads
(VoucherLedger.reads): what is given again is exactly what a fresh read gives, never to another
principal, never after the views or the stream moved on."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any
from uuid import UUID

import pytest

import ledger.read_repository as ledger_read_repository
from api.answers import MAX_BODY_CHARS, AnswerCache
from ledger.application import VoucherLedger
from ledger.settings import Settings
from ledger.uscc import make_uscc
from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import PROVIDER, PROVIDER_2, TODAY


@pytest.fixture
def world(api: Api) -> Api:
    return open_worked_example(api)


def redeem(api: Api, voucher_id: str, contract_no: str, fen: int = 10_000) -> Any:
    result = api.post(
        "/v1/redemptions",
        redemption_body(voucher_id, contract_no=contract_no, contract_amount_fen=fen),
        api.tokens["provider"],
    )
    assert result.status_code == 201, result.text
    return result


def balances(api: Api, token: str, institution: str = PROVIDER, **params: Any) -> Any:
    return api.get(f"/v1/institutions/{institution}/balances", token, fiscal_year="2026", **params)


def test_a_read_again_at_the_same_position_is_the_same_answer_without_a_query(world: Api) -> None:
    voucher = issue(world)
    redeem(world, voucher, "C-1")
    token = world.tokens["provider"]
    first = balances(world, token)
    cache: AnswerCache = world.app.answers
    hits = cache.hits
    again = balances(world, token)
    assert cache.hits == hits + 1
    assert again.status_code == 200
    assert again.text == first.text
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers["X-Ledger-Position"] == first.headers["X-Ledger-Position"]
    # The same query spelt with min_position is the same answer at that position.
    at = balances(world, token, min_position=first.headers["X-Ledger-Position"])
    assert at.text == first.text and cache.hits == hits + 2


def test_a_write_moves_the_position_and_the_next_read_sees_it(world: Api) -> None:
    voucher = issue(world)
    redeem(world, voucher, "C-1")
    token = world.tokens["provider"]
    before = balances(world, token)
    balances(world, token)  # kept
    redeem(world, voucher, "C-2", fen=20_000)
    after = balances(world, token)
    assert int(after.headers["X-Ledger-Position"]) > int(before.headers["X-Ledger-Position"])
    assert after.text != before.text
    assert after.json["redeemed_contract_fen"] == before.json["redeemed_contract_fen"] + 20_000
    assert sum(p["amount_fen"] for p in after.json["by_source"]) > sum(
        p["amount_fen"] for p in before.json["by_source"]
    )
    # And the payables page, kept before the write, is read afresh after it.
    page = world.get("/v1/payables", world.tokens["treasury"], provider_id=PROVIDER).json
    redeem(world, voucher, "C-3")
    newer = world.get("/v1/payables", world.tokens["treasury"], provider_id=PROVIDER).json
    assert len(newer["items"]) > len(page["items"])


def test_an_answer_kept_for_one_principal_is_not_given_to_another(world: Api) -> None:
    voucher = issue(world)
    redeem(world, voucher, "C-1")
    officer = balances(world, world.tokens["program_officer"])
    assert officer.status_code == 200
    assert balances(world, world.tokens["program_officer"]).text == officer.text  # kept
    # Another provider asking for the same path at the same position learns nothing of it.
    other = balances(world, world.tokens["provider_2"])
    assert other.status_code == 404
    assert other.headers["Content-Type"].startswith("application/problem+json")
    # The same path and query mean each provider's own payables: two answers, not one.
    mine = world.get("/v1/payables", world.tokens["provider"])
    assert world.get("/v1/payables", world.tokens["provider"]).text == mine.text  # kept
    assert {p["provider_id"] for p in mine.json["items"]} == {PROVIDER}
    theirs = world.get("/v1/payables", world.tokens["provider_2"])
    assert theirs.status_code == 200 and theirs.json["items"] == []
    # Its own balances are its own.
    own = balances(world, world.tokens["provider_2"], institution=PROVIDER_2)
    assert own.status_code == 200 and own.json["institution_id"] == PROVIDER_2


def test_errors_and_csv_are_not_kept(world: Api) -> None:
    cache: AnswerCache = world.app.answers
    token = world.tokens["treasury"]
    size = len(cache)
    bad = world.get("/v1/payables", token, provider_id=PROVIDER, limit="0")
    assert bad.status_code == 422
    csv = world.get("/v1/payables", token, provider_id=PROVIDER, format="csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert world.get("/v1/payables", token, provider_id=PROVIDER, format="csv").text == csv.text
    assert len(cache) == size
    unknown = balances(
        world, world.tokens["program_officer"], institution=make_uscc("91350100M000100Y8")
    )
    assert unknown.status_code == 404
    assert len(cache) == size


def test_the_day_is_part_of_the_answer(world: Api) -> None:
    issue(world)
    token = world.tokens["program_officer"]
    active = world.get("/v1/vouchers", token).json["items"]
    assert [v["status"] for v in active] == ["active"]
    world.get("/v1/vouchers", token)  # kept
    world.app.ledger.today = lambda: dt.date(2027, 1, 2)  # past valid_until, nothing written
    expired = world.get("/v1/vouchers", token).json["items"]
    assert [v["status"] for v in expired] == ["expired"]


def test_the_cache_keeps_at_most_its_size_and_no_large_answer() -> None:
    import falcon

    cache = AnswerCache(max_answers=2)
    for n in range(3):
        resp = falcon.Response()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = f'{{"n":{n}}}'
        cache.keep(("k", n), resp)
    assert len(cache) == 2 and cache.get(("k", 0)) is None and cache.get(("k", 2)) is not None
    big = falcon.Response()
    big.content_type = falcon.MEDIA_JSON
    big.text = "x" * (MAX_BODY_CHARS + 1)
    cache.keep(("big",), big)
    assert cache.get(("big",)) is None
    # However many fit by count, no more than max_total_chars are kept.
    small = AnswerCache(max_answers=100, max_total_chars=25)
    for n in range(5):
        resp = falcon.Response()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "y" * 10
        small.keep(("s", n), resp)
        small.keep(("s", n), resp)  # kept again: counted once
    assert len(small) == 2 and small.total_chars == 20
    assert small.get(("s", 4)) is not None and small.get(("s", 2)) is None


def test_a_voucher_read_again_sees_what_another_process_stored(world: Api, store_url: str) -> None:
    """The aggregate kept for reads is brought up to date from the store on every read, so a
    change made by another process (another ledger on the same database) shows at once."""
    voucher = issue(world, face_value_fen=1_000_000)
    token = world.tokens["program_officer"]
    first = world.get(f"/v1/vouchers/{voucher}", token).json
    assert first["remaining_fen"] == 1_000_000
    other = VoucherLedger(Settings(database_url=store_url), clock=lambda: TODAY)
    try:
        other.revoke_voucher(voucher, reason="duplicate application", actor="officer-2")
    finally:
        other.close()
    again = world.get(f"/v1/vouchers/{voucher}", token).json
    assert again["status"] == "revoked"
    # A copy is given, so nothing a reader does to it reaches the one kept.
    kept = world.app.ledger.load_aggregate(world.app.ledger.voucher(voucher).id)
    kept.__dict__.clear()
    assert world.get(f"/v1/vouchers/{voucher}", token).json == again


def test_a_voucher_answer_is_kept_at_its_version_and_not_after_it_changes(world: Api) -> None:
    voucher = issue(world, face_value_fen=1_000_000)
    other = issue(world, face_value_fen=1_000_000)
    token = world.tokens["program_officer"]
    cache: AnswerCache = world.app.answers
    first = world.get(f"/v1/vouchers/{voucher}", token)
    hits = cache.hits
    again = world.get(f"/v1/vouchers/{voucher}", token)
    assert cache.hits == hits + 1
    assert (again.status_code, again.text) == (200, first.text)
    # A write to another voucher leaves this answer as it was, and kept.
    redeem(world, other, "C-other")
    assert world.get(f"/v1/vouchers/{voucher}", token).text == first.text
    assert cache.hits == hits + 2
    # A write to this one is seen at once, and never the answer kept before it.
    redeem(world, voucher, "C-1", fen=10_000)
    after = world.get(f"/v1/vouchers/{voucher}", token)
    assert after.json["remaining_fen"] < first.json["remaining_fen"]
    fresh = world.app.ledger.voucher(voucher)
    assert after.json["remaining_fen"] == fresh.remaining_fen
    # As of an instant, and for an unknown id, nothing is kept.
    instant = dt.datetime.now(dt.UTC).isoformat()
    kept = len(cache)
    world.get(f"/v1/vouchers/{voucher}", token, as_of=instant)
    missing = world.get(f"/v1/vouchers/{UUID(int=7)}", token)
    assert missing.status_code == 404 and len(cache) == kept


def test_a_voucher_as_of_an_instant_is_read_from_its_events(world: Api) -> None:
    voucher = issue(world)
    before = world.get(f"/v1/vouchers/{voucher}", world.tokens["program_officer"]).json
    instant = dt.datetime.now(dt.UTC).isoformat()
    redeem(world, voucher, "C-1")
    now = world.get(f"/v1/vouchers/{voucher}", world.tokens["program_officer"]).json
    then = world.get(f"/v1/vouchers/{voucher}", world.tokens["program_officer"], as_of=instant).json
    assert now["remaining_fen"] < before["remaining_fen"]
    assert then["remaining_fen"] == before["remaining_fen"]


def test_a_copy_for_a_read_and_a_fast_forward_of_the_same_aggregate_never_overlap(
    world: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader copying the kept voucher while another reader applies the voucher's newest
    events to it could copy half of them: the second waits until the copy is made."""
    import eventsourcing.application

    ledger = world.app.ledger
    voucher = UUID(issue(world))
    ledger.load_aggregate(voucher)  # kept for reads
    copying, go = threading.Event(), threading.Event()
    real = copy.deepcopy

    def slow_copy(thing: Any, *args: Any) -> Any:
        if threading.current_thread().name == "copier":
            copying.set()
            go.wait(5)
        return real(thing, *args)

    monkeypatch.setattr(ledger_read_repository, "deepcopy", slow_copy)
    monkeypatch.setattr(eventsourcing.application, "deepcopy", slow_copy)  # the library's copy
    copier = threading.Thread(target=ledger.load_aggregate, args=(voucher,), name="copier")
    copier.start()
    assert copying.wait(5)
    ledger.revoke_voucher(voucher, reason="duplicate application", actor="officer-2")
    forwarded = threading.Event()

    def fast_forward() -> None:
        ledger.load_aggregate(voucher)
        forwarded.set()

    follower = threading.Thread(target=fast_forward)
    follower.start()
    try:
        assert not forwarded.wait(0.3), "the kept voucher changed while it was being copied"
    finally:
        go.set()
        copier.join(5)
        follower.join(5)
    assert forwarded.is_set()
    assert ledger.voucher(str(voucher)).status == "revoked"
