"""Locust scenarios against the public HTTP contract (API_CONTRACT.md §4), nothing else:
providers redeeming, officers and treasury reading, auditors reading balances and tracing
redemptions.

    LEDGER_LOAD_SEED=seed.json locust -f load_tests/locustfile.py --host http://127.0.0.1:8080

``benchmarks.http`` writes the seed file (tokens, voucher, source and institution ids) and reads
the report written to ``LEDGER_LOAD_REPORT`` when locust quits: every non-2xx answer counted by
status and problem slug, plus a few samples (request id, body, answer) to find in the server log.

Every redemption carries a fresh contract_no and invoice_no, so any 409 is a spurious conflict,
even one whose slug is ``duplicate-claim``."""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

from locust import FastHttpUser, between, constant, events, task

from load_tests.outcomes import OUTCOMES, SAMPLES, auth, check

SEED: dict[str, Any] = {}
REDEEMED: Counter[int] = Counter()  # 201s by 5-second slice of the run
ENVIRONMENT: list[Any] = []
STARTED = [time.monotonic()]  # reset when the test starts
_provider_numbers = itertools.count()
RECENT: collections.deque[str] = collections.deque(maxlen=1000)  # redemptions to trace


def seed() -> dict[str, Any]:
    if not SEED:
        path = os.environ.get("LEDGER_LOAD_SEED")
        if not path:
            sys.exit("LEDGER_LOAD_SEED must name the seed JSON file (see benchmarks/http.py)")
        with open(path, encoding="utf-8") as f:
            SEED.update(json.load(f))
    return SEED


def read(user: Any, path: str, name: str) -> None:
    """GET ``path`` as ``user`` (with its headers); anything but 200 is a failure."""
    with user.client.get(path, headers=user.headers, name=name, catch_response=True) as response:
        check(response, 200)


class ProviderUser(FastHttpUser):
    """A service provider's system redeeming vouchers back to back with fresh claims."""

    weight = 14
    wait_time = constant(0)

    def on_start(self) -> None:
        data = seed()
        provider = data["providers"][next(_provider_numbers) % len(data["providers"])]
        self.token: str = provider["token"]
        self.vouchers: list[str] = data["vouchers"]

    @task
    def redeem(self) -> None:
        claim = uuid.uuid4().hex
        body = {
            "voucher_id": random.choice(self.vouchers),
            "contract_no": f"C-{claim}",
            "invoice_no": f"INV-{claim}",
            "service_category": "testing",
            "contract_amount_fen": random.randint(1_000, 100_000),
            "service_date": seed()["service_date"],
        }
        headers = auth(self.token, **{"Idempotency-Key": claim, "X-Request-Id": claim})
        with self.client.post(
            "/v1/redemptions",
            json=body,
            headers=headers,
            name="/v1/redemptions",
            catch_response=True,
        ) as response:
            check(response, 201, {"X-Request-Id": claim, **body})
            if response.status_code == 201:
                REDEEMED[int(time.monotonic() - STARTED[0]) // 5] += 1
                RECENT.append(response.json()["id"])


class OfficerUser(FastHttpUser):
    """A programme officer looking at vouchers and funding sources now and then."""

    weight = 1
    wait_time = between(0.2, 0.6)

    def on_start(self) -> None:
        self.headers = auth(seed()["officer_token"])

    @task(3)
    def voucher(self) -> None:
        voucher_id = random.choice(seed()["vouchers"])
        read(self, f"/v1/vouchers/{voucher_id}", "/v1/vouchers/{id}")

    @task(1)
    def funding_source(self) -> None:
        source_id = random.choice(seed()["sources"])
        read(self, f"/v1/funding-sources/{source_id}", "/v1/funding-sources/{id}")


class AuditorUser(FastHttpUser):
    """An auditor reading enterprises' and providers' balances now and then."""

    weight = 1
    wait_time = between(0.2, 0.6)

    def on_start(self) -> None:
        data = seed()
        self.headers = auth(data["auditor_token"])
        self.institutions: list[str] = data["enterprises"] + [p["id"] for p in data["providers"]]

    @task(1)
    def trace(self) -> None:
        """Source to destination for a recent redemption (read from the audit chain)."""
        if not RECENT:
            return
        path = f"/v1/audit/trace/redemptions/{random.choice(RECENT)}"
        read(self, path, "/v1/audit/trace/redemptions/{id}")

    @task(3)
    def balances(self) -> None:
        institution = random.choice(self.institutions)
        path = f"/v1/institutions/{institution}/balances?fiscal_year={seed()['fiscal_year']}"
        read(self, path, "/v1/institutions/{id}/balances")


class TreasuryUser(FastHttpUser):
    """Treasury reading what each funding source owes the providers, a page at a time."""

    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.headers = auth(seed()["treasury_token"])

    @task
    def payables(self) -> None:
        source_id = random.choice(seed()["sources"])
        read(self, f"/v1/payables?source_id={source_id}&limit=100", "/v1/payables")


@events.init.add_listener
def remember(environment: Any, **_: Any) -> None:
    ENVIRONMENT.append(environment)


@events.test_start.add_listener
def start_clock(**_: Any) -> None:
    STARTED[0] = time.monotonic()


def figures(entry: Any) -> dict[str, Any]:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "per_s": entry.total_rps,
        "p50_ms": entry.get_response_time_percentile(0.5),
        "p99_ms": entry.get_response_time_percentile(0.99),
    }


@events.quit.add_listener
def write_report(**_: Any) -> None:
    """After the runner stopped: figures per request name, non-2xx answers by slug, and 201s
    per 5 s of the run. Every 409 is spurious, since every claim is fresh."""
    conflicts = sum(n for outcome, n in OUTCOMES.items() if outcome.startswith("409 "))
    stats = ENVIRONMENT[0].stats if ENVIRONMENT else None
    report = {
        "outcomes": dict(OUTCOMES),
        "conflicts_409": conflicts,
        "samples": SAMPLES,
        "redeemed_per_5s": [REDEEMED[i] for i in range(max(REDEEMED, default=-1) + 1)],
        "stats": {f"{m} {n}": figures(e) for (n, m), e in stats.entries.items()} if stats else {},
        "total": figures(stats.total) if stats else {},
    }
    path = os.environ.get("LEDGER_LOAD_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    if conflicts:
        print(f"SPURIOUS 409s: {conflicts} (every claim was fresh)", file=sys.stderr)
