"""Redemptions per second over HTTP: the real server, locust, a fresh PostgreSQL schema.

    DATABASE_URL=postgresql://... python -m benchmarks.http [--seconds 30] [--users 16]
        [--workers N] [--threads T]

Starts ``voucher-ledger serve`` on a free port of 127.0.0.1, seeds it over HTTP (two sources,
a programme, 200 enterprises, 20 providers with a principal each, vouchers far bigger than the
run can use), runs ``load_tests/locustfile.py`` headless, prints the figures, then stops the
server and drops the schema. Every redemption is a fresh claim, so any 409 is spurious."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.common import drop_database, enterprise_id, fresh_database_url, provider_id
from ledger.application import china_today

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "load_tests" / "locustfile.py"
BIG_FEN = 10**14  # appropriations and caps: nothing runs out during a run
FACE_VALUE_FEN = 10**10  # per voucher; a redemption takes at most 90,000 fen of it
SOURCES = (("bench-province", "province", 6000), ("bench-city", "city", 3000))
SEED_ATTEMPTS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, port: int, admin: str, args: argparse.Namespace, log: Path) -> Any:
    exe = shutil.which("voucher-ledger", path=str(Path(sys.executable).parent)) or "voucher-ledger"
    command = [exe, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "DATABASE_URL": url, "LEDGER_ADMIN_TOKEN": admin}
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before it was healthy")
        try:
            if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no healthy answer from {base}/v1/health in {timeout_s:.0f} s")


def stop_server(server: Any) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@contextmanager
def seeded_server(
    url: str, args: argparse.Namespace, work: Path, vouchers: int
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """``voucher-ledger serve`` on a free port of 127.0.0.1 over ``url``, healthy and seeded
    (``vouchers`` vouchers, 200 enterprises, 20 providers), stopped when the block ends: yields
    its base URL, the seed and how long its log was once seeded (what follows is the load's)."""
    port, admin = free_port(), secrets.token_urlsafe(32)
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, admin, args, work / "server.log")
    try:
        wait_healthy(base, server)
        started = time.monotonic()
        data = seed(base, admin, vouchers, enterprises=200, providers=20)
        took_s, busy = time.monotonic() - started, data["seed_busy_retries"]
        print(
            f"seeded {len(data['vouchers'])} vouchers in {took_s:.1f} s; 503 busy retried: {busy}"
        )
        for text in data["seed_busy_samples"]:
            print(f"  seeding 503: {text}")
        yield base, data, (work / "server.log").stat().st_size
    finally:
        stop_server(server)


def seed(base: str, admin: str, vouchers: int, enterprises: int, providers: int) -> dict[str, Any]:
    """Everything the locustfile needs, created over HTTP; any refusal stops the benchmark."""
    today = china_today()  # the ledger dates in China (UTC+8): its today, not this machine's
    year = today.year
    busy: list[str] = []  # 503 answers retried
    client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=16))

    def post(path: str, body: dict[str, Any], token: str = admin) -> Any:
        """POST with an Idempotency-Key; 503 busy stored nothing, so retry with the same key."""
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(SEED_ATTEMPTS):
            response = client.post(path, json=body, headers=headers)
            if response.status_code != 503 or attempt == SEED_ATTEMPTS - 1:
                break
            busy.append(response.text)
            time.sleep(0.05 * (attempt + 1))
        if response.status_code != 201:
            raise RuntimeError(f"seeding POST {path} -> {response.status_code} {response.text}")
        return response.json()

    def principal(role: str, institution_id: str | None = None) -> str:
        body = {"name": f"bench {role}", "role": role, "institution_id": institution_id}
        return str(post("/v1/principals", body)["token"])

    enterprise_ids = [enterprise_id(i) for i in range(enterprises)]
    provider_ids = [provider_id(i) for i in range(providers)]
    kinds = dict.fromkeys(enterprise_ids, "enterprise") | dict.fromkeys(provider_ids, "provider")
    source = {"fiscal_year": year, "appropriation_fen": BIG_FEN, "document_ref": "bench"}
    programme = {
        "id": "bench-http",
        "name": "bench over HTTP",
        "fiscal_year": year,
        "shares": [{"source_id": s, "share_bp": bp} for s, _, bp in SOURCES],
        "max_face_value_fen": FACE_VALUE_FEN,
        "provider_bonus_rate_bp": 500,
        "provider_bonus_source_id": SOURCES[1][0],
        "provider_annual_cap_fen": BIG_FEN,
        "enterprise_annual_cap_fen": BIG_FEN,
    }

    def register(uscc: str) -> Any:
        return post("/v1/institutions", {"id": uscc, "name": uscc, "kind": kinds[uscc]})

    with client, ThreadPoolExecutor(16) as pool:
        for sid, level, _ in SOURCES:
            post("/v1/funding-sources", {**source, "id": sid, "name": sid, "level": level})
        list(pool.map(register, kinds))
        officer, auditor = principal("program_officer"), principal("auditor")
        treasury = principal("treasury")
        tokens = list(pool.map(lambda p: principal("provider", p), provider_ids))
        post("/v1/programs", programme, officer)

        def issue(n: int) -> str:
            body = {
                "program_id": "bench-http",
                "holder_id": enterprise_ids[n % enterprises],
                "face_value_fen": FACE_VALUE_FEN,
                "valid_until": f"{year}-12-31",
            }
            return str(post("/v1/vouchers", body, officer)["id"])

        voucher_ids = list(pool.map(issue, range(vouchers)))
    return {
        "fiscal_year": year,
        "service_date": today.isoformat(),
        "sources": [s for s, _, _ in SOURCES],
        "enterprises": enterprise_ids,
        "providers": [{"id": p, "token": t} for p, t in zip(provider_ids, tokens, strict=True)],
        "officer_token": officer,
        "auditor_token": auditor,
        "treasury_token": treasury,
        "vouchers": voucher_ids,
        "seed_busy_retries": len(busy),
        "seed_busy_samples": busy[:3],
    }


def run_locust(base: str, seed_path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Locust headless as a child process; the report its locustfile writes is read back."""
    report_path = work / "report.json"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(args.users), "-r", str(args.users), "--run-time", f"{args.seconds}s",
        "--host", base, "--only-summary", "--stop-timeout", "10",
    ]  # fmt: skip
    env = {**os.environ, "LEDGER_LOAD_SEED": str(seed_path), "LEDGER_LOAD_REPORT": str(report_path)}
    with (work / "locust.log").open("wb") as out:
        subprocess.run(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=args.seconds + 120
        )
    if not report_path.exists():
        sys.stderr.write((work / "locust.log").read_text(errors="replace")[-4000:])
        raise RuntimeError("locust wrote no report")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def server_problems(log: Path, skip: int) -> tuple[int, int, list[str]]:
    """5xx answers in the request log, lines holding several JSON objects (interleaved writes),
    and any text that is not a request log object."""
    decoder, errors, joined, odd = json.JSONDecoder(), 0, 0, []
    for line in log.read_bytes()[skip:].decode(errors="replace").splitlines():
        rest, found = line.strip(), 0
        while rest.startswith("{"):
            try:
                entry, end = decoder.raw_decode(rest)
            except ValueError:
                break
            errors += entry.get("event") == "request" and int(entry.get("status", 0)) >= 500
            rest, found = rest[end:].lstrip(), found + 1
        joined += found > 1
        if rest and not rest.startswith(("admin token", "serving http")):
            odd.append(rest)
    return errors, joined, odd


def print_figures(report: dict[str, Any], server_5xx: int, args: argparse.Namespace) -> None:
    redeem, total = report["stats"]["POST /v1/redemptions"], report["total"]
    ok_per_s = redeem["per_s"] * (redeem["requests"] - redeem["failures"]) / redeem["requests"]
    rows = [
        ("redemptions/s (201s)", f"{ok_per_s:.1f}"),
        ("POST /v1/redemptions p50 ms", redeem["p50_ms"]),
        ("POST /v1/redemptions p99 ms", redeem["p99_ms"]),
        ("redemptions sent", redeem["requests"]),
        ("failures (all requests)", total["failures"]),
        ("409 responses", report["conflicts_409"]),
        ("409s not real duplicates", report["conflicts_409"]),
        ("server 5xx during load", server_5xx),
        ("requests/s (all)", f"{total['per_s']:.1f}"),
    ]
    shape = f"workers {args.workers or 'default'}, threads {args.threads or 'default'}"
    print(f"\nHTTP benchmark: {args.users} users, {args.seconds} s, {shape}, PostgreSQL")
    for label, value in rows:
        print(f"  {label:<30} {value:>10}")
    per_s = " ".join(str(n // 5) for n in report["redeemed_per_5s"][: args.seconds // 5])
    print(f"  redemptions/s by 5 s slice: {per_s}")
    for outcome, n in sorted(report["outcomes"].items()):
        print(f"  failure {outcome}: {n}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="passed to serve")
    parser.add_argument("--threads", type=int, default=None, help="passed to serve")
    parser.add_argument("--vouchers", type=int, default=400)
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not urlsplit(base_url).scheme.startswith("postgres"):
        print("benchmarks.http needs DATABASE_URL=postgresql://...", file=sys.stderr)
        return 2
    url = fresh_database_url(base_url)
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-http-"))
    try:
        with seeded_server(url, args, work, args.vouchers) as (base, data, seeding_log_bytes):
            seed_path = work / "seed.json"
            seed_path.write_text(json.dumps(data))  # tokens: the folder is private (mkdtemp)
            report = run_locust(base, seed_path, work, args)
    finally:
        drop_database(url)
    server_5xx, joined, odd = server_problems(work / "server.log", seeding_log_bytes)
    print_figures(report, server_5xx, args)
    if joined:
        print(f"  server log: {joined} lines hold several JSON objects (interleaved writes)")
    for sample in report["samples"][:5]:
        print(f"  sample: {json.dumps(sample, ensure_ascii=False)}")
    for line in odd[:20]:
        print(f"  server log: {line}")
    clean = not (report["outcomes"] or server_5xx)
    if clean:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"problems seen: server and locust logs, seed and report kept in {work}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
