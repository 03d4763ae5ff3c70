"""End to end: the real `voucher-ledger serve` process, driven over HTTP, on SQLite and
PostgreSQL, then stopped."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.application import china_today
from tests.api_support import WORKED_PROGRAM, WORKED_SOURCES
from tests.conftest import ENTERPRISE, PROVIDER

ADMIN = "e2e-admin-token-" + "y" * 24
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    client: httpx.Client
    pid: int


@pytest.fixture
def server(served: Served) -> httpx.Client:
    return served.client


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    with serving(store_url) as served:
        yield served


@contextmanager
def serving(store_url: str, workers: int = 2) -> Iterator[Served]:
    """A real ``voucher-ledger serve --workers 2`` on ``store_url``, stopped with SIGTERM."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": store_url, "LEDGER_ADMIN_TOKEN": ADMIN}
    cli = Path(sys.executable).with_name("voucher-ledger")
    proc = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            try:
                if client.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield Served(client, proc.pid)
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, f"serve exited with {proc.returncode} on SIGTERM"


def post(client: httpx.Client, path: str, body: Any, token: str = ADMIN) -> httpx.Response:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def test_the_served_api_runs_the_worked_example_and_counts_it_in_metrics(
    server: httpx.Client,
) -> None:
    for source in WORKED_SOURCES:
        assert post(server, "/v1/funding-sources", source).status_code == 201
    for uscc, kind in ((ENTERPRISE, "enterprise"), (PROVIDER, "provider")):
        assert post(server, "/v1/institutions", {"id": uscc, "name": kind, "kind": kind}).is_success
    officer = post(server, "/v1/principals", {"name": "o", "role": "program_officer"}).json()
    provider = post(
        server, "/v1/principals", {"name": "p", "role": "provider", "institution_id": PROVIDER}
    ).json()
    assert post(server, "/v1/programs", WORKED_PROGRAM, officer["token"]).status_code == 201
    voucher = post(
        server,
        "/v1/vouchers",
        {
            "program_id": "innovation-2026",
            "holder_id": ENTERPRISE,
            "face_value_fen": 2_000_000,
            "valid_until": (china_today() + dt.timedelta(days=365)).isoformat(),
        },
        officer["token"],
    ).json()
    body = {
        "voucher_id": voucher["id"],
        "contract_no": "E2E-1",
        "invoice_no": "E2E-INV-1",
        "service_category": "testing",
        "contract_amount_fen": 1_000_000,
        "service_date": china_today().isoformat(),  # the server's clock is real
    }
    redemption = post(server, "/v1/redemptions", body, provider["token"])
    assert redemption.status_code == 201, redemption.text
    assert redemption.json()["subsidy_fen"] == 900_000
    assert int(redemption.headers["x-ledger-position"]) > 0
    duplicate = post(server, "/v1/redemptions", body, provider["token"])
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert server.get("/v1/vouchers/" + voucher["id"]).status_code == 401
    docs = server.get("/docs")
    assert docs.status_code == 200 and "/v1/redemptions" in docs.text
    assert "src=" not in docs.text and "<link" not in docs.text, "the docs page loads nothing"
    assert server.get("/v1/openapi.json").json()["openapi"] == "3.1.0"
    metrics = server.get("/metrics").text
    assert 'ledger_http_requests_total{method="POST",route="/v1/redemptions",status="201"}' in (
        metrics
    )
    assert "ledger_http_request_duration_seconds_bucket" in metrics
    # The projector process serve started brings the views up to the redemption.
    auditor = post(server, "/v1/principals", {"name": "a", "role": "auditor"}).json()
    source = server.get(
        "/v1/funding-sources/province-2026",
        params={"min_position": redemption.headers["x-ledger-position"]},
        headers={"Authorization": f"Bearer {auditor['token']}"},
    )
    assert source.status_code == 200, source.text
    assert source.json()["disbursed_fen"] == 600_000
    health = server.get("/v1/health").json()["projections"]
    assert health["head"] >= int(redemption.headers["x-ledger-position"])
    # ... and the audit chain: the worker verifies what the projector process chained.
    auditor_auth = {"Authorization": f"Bearer {auditor['token']}"}
    verdict = server.get("/v1/audit/verify", headers=auditor_auth).json()
    assert verdict["ok"] is True and verdict["events_checked"] > 0, verdict
    trace = server.get(
        f"/v1/audit/trace/redemptions/{redemption.json()['id']}", headers=auditor_auth
    ).json()
    assert trace["sources_total_fen"] == 900_000


def projector_pids(serve_pid: int, part: str = "views") -> list[int]:
    """The `voucher-ledger project --only <part>` processes that the server started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        only = argv[argv.index(b"--only") + 1] if b"--only" in argv[:-1] else None
        if (
            ppid == serve_pid
            and b"api.cli" in argv
            and b"project" in argv
            and only == part.encode()
        ):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("part", "lag_key"), [("views", "projections"), ("audit-chain", "audit_chain")]
)
def test_a_follower_that_dies_is_started_again_and_catches_up(
    served: Served, part: str, lag_key: str
) -> None:
    client = served.client
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (first := projector_pids(served.pid, part)):
        assert time.monotonic() < deadline, f"no {part} process"
        time.sleep(0.1)
    assert len(first) == 1
    os.kill(first[0], signal.SIGKILL)
    # Written while it is down; the new one must bring the views (or the chain) up to it.
    written = post(client, "/v1/institutions", {"id": PROVIDER, "name": "p", "kind": "provider"})
    assert written.status_code == 201
    position = int(written.headers["x-ledger-position"])

    deadline = time.monotonic() + 20
    while True:
        again = projector_pids(served.pid, part)
        health = client.get("/v1/health").json()[lag_key]
        if again and again != first and health["position"] >= position:
            break
        assert time.monotonic() < deadline, f"{part} not back: {again}, {health}"
        time.sleep(0.2)
    assert len(again) == 1


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_workers_and_the_projector_and_exits_0(
    tmp_path: Path, workers: int
) -> None:
    with serving(f"sqlite:///{tmp_path / 'ledger.sqlite'}", workers) as served:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (projector_pids(served.pid) and projector_pids(served.pid, "audit-chain")):
            assert time.monotonic() < deadline, "no projector processes"
            time.sleep(0.1)
        below = descendants(served.pid)
        assert len(below) >= workers if workers > 1 else below
    # serving() sent SIGTERM and saw exit code 0; nothing it started may be left running.
    deadline = time.monotonic() + 10
    while left := [pid for pid in below if alive(pid)]:
        assert time.monotonic() < deadline, f"left running after SIGTERM: {left}"
        time.sleep(0.1)


def seed_a_voucher(client: httpx.Client) -> tuple[str, str]:
    """The worked example's sources, programme and institutions; an officer and a voucher."""
    for source in WORKED_SOURCES:
        assert post(client, "/v1/funding-sources", source).status_code == 201
    for uscc, kind in ((ENTERPRISE, "enterprise"), (PROVIDER, "provider")):
        assert post(client, "/v1/institutions", {"id": uscc, "name": kind, "kind": kind}).is_success
    officer = post(client, "/v1/principals", {"name": "o", "role": "program_officer"}).json()
    assert post(client, "/v1/programs", WORKED_PROGRAM, officer["token"]).status_code == 201
    body = {
        "program_id": "innovation-2026",
        "holder_id": ENTERPRISE,
        "face_value_fen": 2_000_000,
        "valid_until": (china_today() + dt.timedelta(days=365)).isoformat(),
    }
    voucher = post(client, "/v1/vouchers", body, officer["token"])
    assert voucher.status_code == 201, voucher.text
    return officer["token"], voucher.json()["id"]


def keyed_revoke(port_url: str, token: str, voucher_id: str) -> httpx.Response:
    """A keyed revocation on a connection of its own, so that retries reach either worker."""
    with httpx.Client(base_url=port_url, timeout=10) as fresh:
        return fresh.post(
            f"/v1/vouchers/{voucher_id}/revoke",
            json={"reason": "withdrawn"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "revoke-1"},
        )


def test_a_key_answers_its_first_response_on_every_worker_and_after_a_restart(
    store_url: str,
) -> None:
    with serving(store_url) as first:
        token, voucher_id = seed_a_voucher(first.client)
        url = str(first.client.base_url)
        answers = [keyed_revoke(url, token, voucher_id) for _ in range(12)]
        assert {(a.status_code, a.text) for a in answers} == {(200, answers[0].text)}
    with serving(store_url) as again:  # every process of the server is new
        retry = keyed_revoke(str(again.client.base_url), token, voucher_id)
        assert (retry.status_code, retry.text) == (200, answers[0].text)
        assert retry.headers["Idempotent-Replayed"] == "true"


def test_the_followers_end_when_the_server_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the server (one worker: the process that serves): its views' projector and
    its chain follower get SIGTERM from the kernel (api/parent.py) and end."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'l.sqlite'}"}
    cli = Path(sys.executable).with_name("voucher-ledger")
    proc = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**env, "LEDGER_ADMIN_TOKEN": ADMIN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    followers: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(followers) < 2:
            followers = projector_pids(proc.pid) + projector_pids(proc.pid, "audit-chain")
            assert time.monotonic() < deadline, "no followers"
            time.sleep(0.1)
        time.sleep(1.0)  # past their start: the request to the kernel is made by then
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while left := [pid for pid in followers if alive(pid)]:
            assert time.monotonic() < deadline, f"followers left running: {left}"
            time.sleep(0.1)
    finally:
        for pid in followers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
