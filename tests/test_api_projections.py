"""Reads served from the projections over HTTP: read-your-writes with ``min_position``, ``as_of``
from the events after later redemptions and a clawback, voucher and payable lists with cursors
and filters, and the projection lag in /v1/health and /metrics."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import pytest

from projections.runner import Projector
from tests.api_support import (
    Api,
    issue,
    open_worked_example,
    redemption_body,
)
from tests.conftest import ENTERPRISE, ENTERPRISE_2, PROVIDER, PROVIDER_2, _api


@pytest.fixture
def lagging_api(store_url: str) -> Iterator[Api]:
    """The API with no projector of its own (as a server worker): the test projects by hand."""
    yield from _api(store_url, projector="external")


def _stamp_of_last_event(api: Api) -> str:
    last = api.app.ledger.recorder.select_notifications(api.log_length(), 1)[0]
    return str(api.app.ledger.mapper.to_domain_event(last).timestamp.isoformat())


def redeem(api: Api, voucher_id: str, contract_no: str = "C-1", token: str = "provider") -> str:
    result = api.post(
        "/v1/redemptions", redemption_body(voucher_id, contract_no), api.tokens[token]
    )
    assert result.status_code == 201, result.text
    return str(result.headers["X-Ledger-Position"])


def test_a_read_with_min_position_waits_for_the_projector_and_then_sees_the_write(
    lagging_api: Api,
) -> None:
    api = open_worked_example(lagging_api)
    position = redeem(api, issue(api))
    auditor = api.tokens["auditor"]

    started = time.monotonic()
    behind = api.get("/v1/funding-sources/province-2026", auditor, min_position=position)
    assert behind.status_code == 503
    assert behind.json["type"].endswith("/projection-behind")
    assert time.monotonic() - started < 3

    Projector(api.app.ledger, api.app.reader.store).catch_up()
    read = api.get("/v1/funding-sources/province-2026", auditor, min_position=position)
    assert read.status_code == 200
    assert read.json["disbursed_fen"] == 600_000
    assert int(read.headers["X-Ledger-Position"]) >= int(position)

    beyond = api.get("/v1/funding-sources/province-2026", auditor, min_position=10**9)
    assert beyond.status_code == 422


def test_a_read_without_min_position_waits_for_the_head_of_the_log(api: Api) -> None:
    """The API's own projector: a read right after a write includes it."""
    open_worked_example(api)
    for n in range(5):
        redeem(api, issue(api), f"C-{n}")
        source = api.get("/v1/funding-sources/province-2026", api.tokens["treasury"]).json
        assert source["disbursed_fen"] == 600_000 * (n + 1)
        assert source["live_vouchers"] == n + 1


def test_as_of_balances_and_sources_are_what_they_were_before_later_redemptions_and_a_clawback(
    api: Api,
) -> None:
    open_worked_example(api)
    auditor = api.tokens["auditor"]
    first = api.post("/v1/redemptions", redemption_body(issue(api)), api.tokens["provider"])
    after_first = _stamp_of_last_event(api)
    redeem(api, issue(api), "C-2")
    clawback = api.post(
        f"/v1/redemptions/{first.json['id']}/claw-back",
        {"reason_code": "fake-invoice"},
        api.tokens["inspector"],
    )
    assert clawback.status_code == 200

    enterprise_path = f"/v1/institutions/{ENTERPRISE}/balances"
    then = api.get(enterprise_path, auditor, fiscal_year=2026, as_of=after_first).json
    now = api.get(enterprise_path, auditor, fiscal_year=2026).json
    assert then["subsidy_received_fen"] == 900_000
    assert now["subsidy_received_fen"] == 1_800_000
    provider_path = f"/v1/institutions/{PROVIDER}/balances"
    provider_then = api.get(provider_path, auditor, fiscal_year=2026, as_of=after_first).json
    provider_now = api.get(provider_path, auditor, fiscal_year=2026).json
    assert provider_then["provider_bonus_fen"] == 50_000
    assert provider_now["provider_bonus_fen"] == 50_000  # two bonuses, one clawed back
    assert "by_source" not in provider_then

    source_then = api.get("/v1/funding-sources/province-2026", auditor, as_of=after_first).json
    source_now = api.get("/v1/funding-sources/province-2026", auditor).json
    assert (source_then["disbursed_fen"], source_then["recovered_fen"]) == (600_000, 0)
    assert (source_now["disbursed_fen"], source_now["recovered_fen"]) == (1_200_000, 600_000)


def test_balances_show_what_each_source_owes_the_provider(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api))
    body = api.get(
        f"/v1/institutions/{PROVIDER}/balances", api.tokens["provider"], fiscal_year=2026
    ).json
    lines = {(line["source_id"], line["kind"]): line for line in body["by_source"]}
    assert lines[("province-2026", "subsidy")]["outstanding_fen"] == 600_000
    assert lines[("city-2026", "subsidy")]["outstanding_fen"] == 300_000
    assert lines[("city-2026", "bonus")]["outstanding_fen"] == 50_000


def test_vouchers_are_listed_by_holder_and_status_a_page_at_a_time(api: Api) -> None:
    open_worked_example(api)
    officer = api.tokens["program_officer"]
    mine = [issue(api, 100_000) for _ in range(5)]
    theirs = issue(api, 100_000, holder=ENTERPRISE_2)
    revoked = api.post(f"/v1/vouchers/{mine[0]}/revoke", {"reason": "withdrawn"}, officer)
    assert revoked.status_code == 200

    seen: list[str] = []
    after = 0
    while True:
        page = api.get("/v1/vouchers", officer, holder_id=ENTERPRISE, limit=2, after=after).json
        seen += [v["id"] for v in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == mine

    active = api.get("/v1/vouchers", officer, holder_id=ENTERPRISE, status="active").json
    assert [v["id"] for v in active["items"]] == mine[1:]
    by_programme = api.get("/v1/vouchers", officer, program_id="innovation-2026").json
    assert theirs in [v["id"] for v in by_programme["items"]]
    window = api.get("/v1/vouchers", officer, expires_to="2026-06-30").json
    assert window["items"] == []
    assert api.get("/v1/vouchers", officer, status="lost").status_code == 422
    assert api.get("/v1/vouchers", officer, limit=501).status_code == 422
    assert api.get("/v1/vouchers", api.tokens["provider"]).status_code == 403


def test_payables_list_each_redemption_line_and_export_as_csv(api: Api) -> None:
    open_worked_example(api)
    redeem(api, issue(api))
    redeem(api, issue(api), "C-2", token="provider_2")
    treasury = api.tokens["treasury"]

    province = api.get("/v1/payables", treasury, source_id="province-2026").json
    assert [(p["provider_id"], p["amount_fen"]) for p in province["items"]] == [
        (PROVIDER, 600_000),
        (PROVIDER_2, 600_000),
    ]
    exported = api.get("/v1/payables", treasury, provider_id=PROVIDER, format="csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted((r["source_id"], r["kind"], r["amount_fen"]) for r in rows) == [
        ("city-2026", "bonus", "50000"),
        ("city-2026", "subsidy", "300000"),
        ("province-2026", "subsidy", "600000"),
    ]
    empty = api.get("/v1/payables", treasury, source_id="nowhere", format="csv")
    assert empty.text.startswith("redemption_id,kind,source_id")

    lines, after = [], 0
    while after is not None:  # a page holds whole redemptions, so none of a line is lost
        page = api.get("/v1/payables", treasury, provider_id=PROVIDER, limit=2, after=after).json
        lines += page["items"]
        after = page["next_after"]
    assert len(lines) == 3

    own = api.get("/v1/payables", api.tokens["provider"]).json
    assert {p["provider_id"] for p in own["items"]} == {PROVIDER}
    other = api.get("/v1/payables", api.tokens["provider"], provider_id=PROVIDER_2)
    assert other.status_code == 404  # as if it did not exist: a provider learns nothing


def test_health_and_metrics_report_how_far_the_views_are_behind(lagging_api: Api) -> None:
    api = open_worked_example(lagging_api)
    redeem(api, issue(api))
    behind = api.client.simulate_get("/v1/health").json["projections"]
    assert behind["position"] == 0 and behind["behind_events"] == behind["head"] > 0
    metrics = api.client.simulate_get("/metrics").text
    assert f"ledger_projection_behind_events {float(behind['head'])}" in metrics

    Projector(api.app.ledger, api.app.reader.store).catch_up()
    caught_up = api.client.simulate_get("/v1/health").json["projections"]
    assert caught_up["behind_events"] == 0 and caught_up["behind_ms"] == 0


def test_metrics_count_what_the_writer_batched(api: Api) -> None:
    """/metrics shows the writer's counts: commands per transaction is what group commit buys."""
    open_worked_example(api)
    redeem(api, issue(api))
    stats = api.app.ledger.writer.stats
    metrics = api.client.simulate_get("/metrics").text
    for name, value in (
        ("batches", stats.batches),
        ("batched_commands", stats.commands),
        ("careful_commands", stats.careful),
        ("fallbacks", stats.fallbacks),
        ("retries", stats.retries),
    ):
        assert f"ledger_writer_{name}_total {float(value)}" in metrics
    assert stats.commands >= stats.batches > 0
