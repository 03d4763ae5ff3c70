"""The console script: `voucher-ledger demo` loads the worked example idempotently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import open_ledger


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


def test_a_business_error_exits_1_with_its_slug(tmp_path: Path) -> None:
    result = run_cli(
        "expire", "--as-of", "2026-13-45", database_url=f"sqlite:///{tmp_path / 'l.sqlite'}"
    )
    assert result.returncode == 1
    assert "validation-error" in result.stderr
