"""The console script: `voucher-ledger demo` loads the worked example idempotently."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from audit.follower import ChainFollower
from ledger.settings import Settings
from ledger.uscc import make_uscc
from projections.store import open_views
from tests.conftest import log_length, open_ledger, open_worked_example


def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "voucher-ledger"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def count_events(database_url: str) -> int:
    with open_ledger(database_url) as app:
        return app.recorder.max_notification_id() or 0


def test_the_demo_loads_the_worked_example_and_a_second_run_changes_nothing(
    store_url: str,
) -> None:
    first = run_cli("demo", database_url=store_url)
    assert first.returncode == 0, first.stderr
    assert "demo data loaded" in first.stdout
    assert "subsidy 9,000.00 (province-2026 6,000.00, city-2026 3,000.00)" in first.stdout
    events = count_events(store_url)
    assert events > 100  # the worked example and a few dozen vouchers and redemptions

    second = run_cli("demo", database_url=store_url)

    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert count_events(store_url) == events


def demo_tokens(stdout: str) -> dict[str, str]:
    after = stdout.split("demo tokens, one per role", 1)[1]
    rows = [line.split() for line in after.splitlines()[1:] if line.startswith("  ")]
    return {role: token for role, token in rows}


def test_the_demo_prints_a_token_per_role_the_same_each_time_and_one_reads_at_once(
    tmp_path: Path,
) -> None:
    import falcon.testing

    from api.app import create_app
    from ledger.application import VoucherLedger, china_today

    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    first = demo_tokens(run_cli("demo", database_url=url).stdout)
    second = demo_tokens(run_cli("demo", database_url=url).stdout)

    roles = {"program_officer", "provider", "treasury", "auditor", "inspector", "bank"}
    assert set(first) == roles
    assert first == second and len(set(first.values())) == len(roles)
    settings = Settings(database_url=url)
    app = create_app(settings, VoucherLedger(settings))
    try:
        client = falcon.testing.TestClient(app)
        source = client.simulate_get(
            "/v1/funding-sources/city-2026",
            headers={"Authorization": f"Bearer {first['auditor']}"},
        )
        assert source.status_code == 200, source.text
        assert source.json["appropriation_fen"] == 50_000_000
        # The demo bank can file a claim on its covered loan in the demo pool at once.
        claim = client.simulate_post(
            "/v1/guarantee-claims",
            json={
                "loan_id": "LOAN-2026-0001",
                "loss_fen": 100_000_000,
                "default_date": china_today().isoformat(),
            },
            headers={"Authorization": f"Bearer {first['bank']}"},
        )
        assert claim.status_code == 201, claim.text
        assert claim.json["status"] == "filed" and claim.json["rule"] == "risk-compensation@2"
    finally:
        app.close()
    assert (tmp_path / "demo.sqlite.demo-secret").stat().st_mode & 0o777 == 0o600


def test_a_business_error_exits_1_with_its_slug(tmp_path: Path) -> None:
    result = run_cli(
        "expire", "--as-of", "2026-13-45", database_url=f"sqlite:///{tmp_path / 'l.sqlite'}"
    )
    assert result.returncode == 1
    assert "validation-error" in result.stderr


def test_project_brings_the_views_up_while_the_audit_chain_is_still_catching_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log written before the chain existed takes a while to chain; the views must not wait
    for it. The chain's follower is held here until the views have reached the head."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with open_ledger(url) as app:
        open_worked_example(app)
        head = log_length(app)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    chain_held = threading.Event()
    release = threading.Event()
    chain_rows = ChainFollower.rows

    def held_rows(self: ChainFollower, *args: Any) -> Any:
        chain_held.set()
        release.wait(30)
        return chain_rows(self, *args)

    monkeypatch.setattr(ChainFollower, "rows", held_rows)
    views_reached: list[bool] = []

    def watch() -> None:
        store = open_views(Settings(database_url=url))
        try:
            chain_held.wait(20)
            with open_ledger(url) as writer:  # written while the chain is still catching up
                writer.register_institution(
                    uscc=make_uscc("91350100MA0000001"), name="late", kind="provider", actor="t"
                )
                new_head = log_length(writer)
            assert new_head > head
            deadline = time.monotonic() + 20
            while store.position() < new_head and time.monotonic() < deadline:
                time.sleep(0.05)
            views_reached.append(not release.is_set() and store.position() >= new_head)
        finally:
            store.close()
            release.set()
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)  # cmd_project's handler stops it

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert main(["project"]) == 0
    finally:
        watcher.join()
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert views_reached == [True]
