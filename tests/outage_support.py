"""For the outage tests (tests/test_outage.py): a PostgreSQL cluster of the test's own, that it
may stop and start again; a real ``voucher-ledger serve`` over it; and clients that keep
redeeming and probing while they record every answer. The cluster is never the shared one of
``make test``: stopping that would fail everyone else's tests."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ledger.application import china_today
from tests.api_support import WORKED_PROGRAM, WORKED_SOURCES
from tests.conftest import ENTERPRISE, PROVIDER

PG_SH = Path(__file__).resolve().parent.parent / "scripts" / "pg.sh"
PG_TIMEOUT_S = 120  # the first start may install the server with apt-get
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 5.0
PAUSE_S = 0.1
CONTRACT_FEN = 1_000  # small: the caps and the vouchers last the whole test


# ---- the cluster -------------------------------------------------------------------------
@dataclass
class Cluster:
    """A throwaway cluster in ``folder`` (scripts/pg.sh), and its URL."""

    folder: Path
    url: str

    def kill(self) -> None:
        """Stop it in immediate mode: no shutdown checkpoint, connections cut, as in a crash."""
        pg_sh("kill", self.folder)

    def restart(self) -> None:
        """Start it again on the same port; returns once it accepts connections."""
        pg_sh("restart", self.folder)

    def claims_in_log(self) -> int:
        """Redemptions in the event log: each claims its contract once (ContractClaim)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM voucherledger_events WHERE topic LIKE %s",
                ("%:ContractClaim.Claimed",),
            ).fetchone()
        assert row is not None
        return int(row[0])


def pg_sh(command: str, *args: str | Path) -> str:
    """``scripts/pg.sh command args...``; its output, or the test fails (never skips)."""
    done = subprocess.run(
        ["bash", str(PG_SH), command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PG_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        # A test that needs PostgreSQL fails without it: it is never skipped.
        pytest.fail(f"scripts/pg.sh {command} failed: {done.stderr[-2000:]}", pytrace=False)
    return done.stdout


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A fresh cluster, stopped and removed however the block ends. Its folder is not under
    pytest's tmp_path, whose parents only root may enter: as root the server runs as
    `postgres` (scripts/pg.sh)."""
    folder = cluster_folder("outage")
    try:
        url = pg_sh("start", folder).strip().splitlines()[-1]
        yield Cluster(folder, url)
    finally:
        remove_cluster(folder)


def cluster_folder(what: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"voucher-ledger-{what}-"))
    folder.chmod(0o755)
    return folder


def remove_cluster(folder: Path) -> None:
    """Stop the cluster in ``folder`` (if it runs) and remove it."""
    subprocess.run(
        ["bash", str(PG_SH), "stop", str(folder)],
        capture_output=True,
        timeout=PG_TIMEOUT_S,
        check=False,
    )
    shutil.rmtree(folder, ignore_errors=True)


# ---- the server --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]


@contextmanager
def served(database_url: str, folder: Path, admin_token: str) -> Iterator[Server]:
    """``voucher-ledger serve`` on a free port (its default workers: one per two cores, and
    the projector process), its output in a file (a pipe nobody reads would fill up and
    stall the server), stopped with SIGTERM however the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LEDGER_ADMIN_TOKEN": admin_token,
        "LEDGER_SIGNING_KEY_FILE": str(folder / "signing-key.pem"),
    }
    cli = Path(sys.executable).with_name("voucher-ledger")
    log_path = folder / "serve.log"
    command = [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        while True:
            assert server.process.poll() is None, server.log_tail()
            try:
                if client.get("/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start: " + server.log_tail()
            time.sleep(0.1)


# ---- the data ----------------------------------------------------------------------------
@dataclass
class World:
    admin: str
    provider: str
    auditor: str
    vouchers: list[str]


def seed(client: httpx.Client, admin: str, vouchers: int) -> World:
    """Sources, institutions, principals, the programme and ``vouchers`` vouchers, over HTTP."""

    def post(path: str, body: dict[str, Any], token: str = admin) -> dict[str, Any]:
        response = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, (path, response.text)
        result: dict[str, Any] = response.json()
        return result

    for source in WORKED_SOURCES:
        post("/v1/funding-sources", source)
    for uscc, kind in ((ENTERPRISE, "enterprise"), (PROVIDER, "provider")):
        post("/v1/institutions", {"id": uscc, "name": kind, "kind": kind})
    officer = post("/v1/principals", {"name": "o", "role": "program_officer"})["token"]
    provider = post(
        "/v1/principals", {"name": "p", "role": "provider", "institution_id": PROVIDER}
    )["token"]
    auditor = post("/v1/principals", {"name": "a", "role": "auditor"})["token"]
    post("/v1/programs", WORKED_PROGRAM, officer)
    voucher = {
        "program_id": WORKED_PROGRAM["id"],
        "holder_id": ENTERPRISE,
        "face_value_fen": 2_000_000,
        "valid_until": (china_today() + dt.timedelta(days=365)).isoformat(),
    }
    ids = [post("/v1/vouchers", voucher, officer)["id"] for _ in range(vouchers)]
    return World(admin, provider, auditor, ids)


def redemption_body(voucher_id: str, key: str) -> dict[str, Any]:
    return {
        "voucher_id": voucher_id,
        "contract_no": f"OUT-{key}",
        "invoice_no": f"OUT-INV-{key}",
        "service_category": "testing",
        "contract_amount_fen": CONTRACT_FEN,
        "service_date": china_today().isoformat(),
    }


# ---- the clients -------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One answer (or none: ``status`` None for a connection error or a timeout)."""

    at_s: float
    what: str
    status: int | None
    retry_after: str | None


@dataclass
class Attempt:
    """A redemption sent with its Idempotency-Key, and what came back first."""

    key: str
    body: dict[str, Any]
    status: int | None
    redemption_id: str | None = None


@dataclass
class Record:
    """Every answer seen, and every redemption tried, from all threads."""

    seen: list[Seen] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def send(
        self, client: httpx.Client, what: str, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Response | None, Seen]:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError:  # refused, reset or timed out: the outcome is unknown
            seen = Seen(time.monotonic(), what, None, None)
            response = None
        else:
            retry_after = response.headers.get("Retry-After")
            seen = Seen(time.monotonic(), what, response.status_code, retry_after)
        self.seen.append(seen)
        return response, seen

    def redeem(self, client: httpx.Client, world: World, voucher_id: str) -> Seen:
        key = uuid.uuid4().hex
        body = redemption_body(voucher_id, key)
        headers = {"Authorization": f"Bearer {world.provider}", "Idempotency-Key": key}
        response, seen = self.send(
            client, "write", "POST", "/v1/redemptions", json=body, headers=headers
        )
        attempt = Attempt(key, body, seen.status)
        if response is not None and response.status_code == 201:
            attempt.redemption_id = response.json()["id"]
        self.attempts.append(attempt)
        return seen

    def timeline(self, start_s: float) -> str:
        """What each kind of request got, in runs: ``status x count from..to`` seconds."""
        lines = []
        for what in sorted({s.what for s in self.seen}):
            runs: list[list[Any]] = []
            for s in (s for s in self.seen if s.what == what):
                if runs and runs[-1][0] == s.status:
                    runs[-1][1] += 1
                    runs[-1][3] = s.at_s - start_s
                else:
                    runs.append([s.status, 1, s.at_s - start_s, s.at_s - start_s])
            lines.append(
                f"{what}: " + ", ".join(f"{r[0]}x{r[1]} {r[2]:.1f}..{r[3]:.1f}" for r in runs)
            )
        return "\n".join(lines)


def keep_redeeming(
    server: Server, world: World, voucher_id: str, record: Record, stop: threading.Event
) -> None:
    """Redeem on ``voucher_id``, each time with a new key, until ``stop``; after a refusal,
    wait as told (``Retry-After``, at most a second), as a client should."""
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:
        while not stop.is_set():
            seen = record.redeem(client, world, voucher_id)
            if seen.status != 201:
                stop.wait(min(1.0, float(seen.retry_after or PAUSE_S)))


Probe = Callable[[httpx.Client, Record], int | None]


def probes(world: World) -> dict[str, Probe]:
    """One request of each kind: a write, a view read, the audit verify, the health check."""
    auditor = {"Authorization": f"Bearer {world.auditor}"}

    def get(what: str, path: str, headers: dict[str, str]) -> Probe:
        def probe(client: httpx.Client, record: Record) -> int | None:
            return record.send(client, what, "GET", path, headers=headers)[1].status

        return probe

    def write(client: httpx.Client, record: Record) -> int | None:
        return record.redeem(client, world, world.vouchers[0]).status

    return {
        "write": write,
        "view": get("view", "/v1/funding-sources/province-2026", auditor),
        "verify": get("verify", "/v1/audit/verify", auditor),
        "health": get("health", "/v1/health", {}),
    }


def probe_until_healed(
    server: Server,
    probe: Probe,
    record: Record,
    back: dict[str, float],
    healed: list[float],
    heal_s: float,
) -> None:
    """Call ``probe`` through the outage until it succeeds after PostgreSQL is back
    (``back["at"]``), or ``heal_s`` and one request more have passed since; ``healed`` gets
    the seconds it took."""
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:
        while True:
            status = probe(client, record)
            now = time.monotonic()
            if "at" in back:
                if status in (200, 201):
                    healed.append(now - back["at"])
                    return
                if now - back["at"] > heal_s + REQUEST_TIMEOUT_S:
                    return
            time.sleep(PAUSE_S)
