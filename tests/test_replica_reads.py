"""Reads from a hot standby (issue 15, DATABASE_REPLICA_URL): the API writes and projects on the
primary and reads the views, the audit chain, verify, proofs and the report on the standby's
copy; read-your-writes holds there (``min_position`` waits for the standby's replay, else 503
``projection-behind``), and what it answers is what the primary answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.api_support import Api, issue, open_worked_example, redemption_body
from tests.conftest import PROVIDER, _api
from tests.outage_support import Cluster, own_cluster
from tests.test_replica import one, standby_of, wait_for, wait_streaming

# What the worked example (API_CONTRACT.md §5) is read through, as every role may.
VIEW_READS = (
    ("treasury", f"/v1/institutions/{PROVIDER}/balances", {"fiscal_year": "2026"}),
    ("treasury", "/v1/funding-sources/province-2026", {}),
    ("treasury", "/v1/funding-sources/city-2026", {}),
    ("treasury", "/v1/payables", {"provider_id": PROVIDER}),
    ("auditor", "/v1/audit/flows", {"fiscal_year": "2026"}),
    ("auditor", "/v1/audit/trace/funding-sources/province-2026", {}),
)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Cluster, Cluster]]:
    with own_cluster() as primary, standby_of(primary) as standby:
        wait_streaming(primary)
        yield primary, standby


@pytest.fixture
def both(pair: tuple[Cluster, Cluster]) -> Iterator[tuple[Api, Api, Cluster]]:
    """The API reading the standby, and one reading the primary (the first one projects)."""
    primary, standby = pair
    schema = f"r_{uuid.uuid4().hex[:12]}"  # a ledger of its own on the module's pair
    with psycopg.connect(primary.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{primary.url}?schema={schema}"
    wait_for("the schema never reached the standby", lambda: _has_schema(standby.url, schema))
    replica_api = _api(url, replica_url=standby.url)
    on_standby = next(replica_api)
    primary_api = _api(url, projector="external")
    on_primary = next(primary_api)
    try:
        yield on_standby, on_primary, standby
    finally:
        for generator in (primary_api, replica_api):
            generator.close()


def _has_schema(url: str, schema: str) -> bool:
    return bool(one(url, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"))


def get(api: Api, role: str, path: str, params: dict[str, Any]) -> Any:
    answer = api.get(path, api.tokens[role], **params)
    assert answer.status_code == 200, (path, answer.text)
    return answer


def test_the_worked_example_read_from_the_standby_is_what_the_primary_answers(
    both: tuple[Api, Api, Cluster],
) -> None:
    on_standby, on_primary, _ = both
    open_worked_example(on_standby)
    on_primary.tokens = on_standby.tokens
    voucher = issue(on_standby)
    written = on_standby.post(
        "/v1/redemptions", redemption_body(voucher), on_standby.tokens["provider"]
    )
    assert written.status_code == 201, written.text
    position = written.headers["X-Ledger-Position"]

    for role, path, params in VIEW_READS:
        standby = get(on_standby, role, path, {**params, "min_position": position})
        primary = get(on_primary, role, path, {**params, "min_position": position})
        assert standby.json == primary.json, path
    balances = get(on_standby, "treasury", *VIEW_READS[0][1:]).json
    assert balances["redeemed_contract_fen"] == 1_000_000
    province = get(on_standby, "treasury", "/v1/funding-sources/province-2026", {}).json
    assert province["committed_fen"] == 1_333_333
    # The chain as the standby holds it verifies, and says what the primary's says.
    trace = f"/v1/audit/trace/redemptions/{written.json['id']}"
    traced = get(on_standby, "auditor", trace, {"min_position": position}).json
    assert traced == get(on_primary, "auditor", trace, {"min_position": position}).json
    verdict = get(on_standby, "auditor", "/v1/audit/verify", {}).json
    assert verdict == get(on_primary, "auditor", "/v1/audit/verify", {}).json
    assert verdict["ok"] is True and verdict["events_checked"] >= int(position)
    report = get(on_standby, "auditor", "/v1/audit/report", {"fiscal_year": "2026"}).json
    assert report["ledger"]["verified"] is True


def test_a_read_waits_for_the_standby_to_replay_the_write_it_names(
    both: tuple[Api, Api, Cluster],
) -> None:
    """``min_position`` names a write the primary has and the standby has not replayed: the
    standby's answer is 503 ``projection-behind`` (never an older balance, never a 422 that
    takes the standby's end for the log's), and the same read answers once replay resumes."""
    on_standby, on_primary, standby = both
    open_worked_example(on_standby)
    on_primary.tokens = on_standby.tokens
    voucher = issue(on_standby)
    _, path, params = VIEW_READS[0]
    with psycopg.connect(standby.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            written = on_standby.post(
                "/v1/redemptions", redemption_body(voucher), on_standby.tokens["provider"]
            )
            assert written.status_code == 201, written.text
            position = written.headers["X-Ledger-Position"]
            behind = on_standby.get(
                path, on_standby.tokens["treasury"], **params, min_position=position
            )
            assert behind.status_code == 503, behind.text
            assert behind.json["type"].endswith("/projection-behind")
            assert behind.headers["Retry-After"] == "1"
            # A trace reads the redemption on the standby too: not there yet.
            trace = f"/v1/audit/trace/redemptions/{written.json['id']}"
            assert on_standby.get(trace, on_standby.tokens["auditor"]).status_code == 404
            # The primary's views have it: the write is not what is missing.
            on_primary_now = get(on_primary, "treasury", path, {**params, "min_position": position})
            assert on_primary_now.json["redeemed_contract_fen"] == 1_000_000
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    caught_up = get(on_standby, "treasury", path, {**params, "min_position": position})
    assert caught_up.json["redeemed_contract_fen"] == 1_000_000
    assert get(on_standby, "auditor", trace, {"min_position": position}).json["steps"]
