"""Locust user classes for every user group of the ledger, against the public HTTP contract
(API_CONTRACT.md §4, §4b, §4c, §4d) and nothing else:

- ``ProviderUser``: providers' systems sending signed claims back to back (the hot few
  providers get most of them), and reading their balances, payables, payouts and redemptions;
- ``OfficerUser``: programme officers issuing and revoking vouchers, approving guarantee
  claims, looking up vouchers, funding sources and claims;
- ``TreasuryUser``: a pair of treasury clerks, one making payouts and the other approving them
  (four eyes), downloading the payment file and importing the bank's statement of it;
- ``BankUser``: a bank registering covered loans, filing claims and recording recoveries;
- ``AuditorUser`` and ``InspectorUser``: traces, as-of balances, inspections, the chain's
  verification, proofs, flows and the fiscal-year report.

    LEDGER_LOAD_SEED=seed.json LEDGER_LOAD_REPORT=out.json \\
        locust -f load_tests/scenarios.py --headless --host http://127.0.0.1:8080 ProviderUser

``benchmarks.load`` writes the seed (``load_tests.seeding``) and runs one scenario per user
group. When locust quits, the report (``load_tests.summary``: per endpoint and per time slice,
failures by status and slug) is written to ``LEDGER_LOAD_REPORT``. Any answer but the expected
one is a failure named ``"<status> <slug>"``; every claim, loan and reference is fresh, so a
409 is never expected.

Environment: ``LEDGER_LOAD_SCENARIO`` (its name in the report), ``LEDGER_LOAD_SLICE_S``
(seconds a time slice, default 2), ``LEDGER_LOAD_VOUCHERS`` (``start:stop``: the seeded
vouchers this process may redeem, so that two runs on one seed never draw one voucher down
twice), ``LEDGER_LOAD_PROVIDER_RATE`` (task runs a second for all provider users together, paced;
default back to back)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from locust import FastHttpUser, between, constant, events, task
from locust.stats import RequestStats

from load_tests.outcomes import OUTCOMES, SAMPLES, auth, check, fail
from load_tests.population import (
    SERVICE_CATEGORIES,
    ProviderPicker,
    contract_amount_fen,
    face_value_fen,
    loan_principal_fen,
    signed,
    signing_key,
)
from load_tests.seeding import PROGRAMME
from load_tests.summary import scenario_summary

INSPECTIONS = {
    "self-dealing": "",
    "contract-splitting": "?days=30&threshold_fen=500000&min_contracts=3",
    "velocity": "?bound=20",
    "shared-invoices": "",
    "shared-contacts": "",
    "actions": "",
}
STATEMENT_LINES_MAX = 80  # a statement is one request body: 16 KiB at most (API_CONTRACT §2)
KEPT_MAX = 5_000  # ids remembered for later reads, per kind


@dataclass
class Workload:
    """What the users of this process share: the seed, and what they made during the run."""

    seed: dict[str, Any]
    vouchers: deque[str]  # redeemable, in the order they are drawn
    picker: ProviderPicker
    provider_keys: dict[str, Any]
    provider_tokens: dict[str, str]
    redemptions: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=KEPT_MAX))
    payouts: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=KEPT_MAX))
    issued: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_MAX))
    filed: deque[dict[str, str]] = field(default_factory=deque)
    approved: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=KEPT_MAX))
    in_flight: set[tuple[str, str]] = field(default_factory=set)  # (payee, source) being paid
    cursors: dict[str, int] = field(default_factory=dict)  # payables page per source
    used_up: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None
    started_unix: float = field(default_factory=time.time)
    counter: int = 0

    def next_number(self) -> int:
        self.counter += 1
        return self.counter


WORKLOAD: list[Workload] = []  # one, made when locust starts (the ``init`` event)
SLICES: dict[int, RequestStats] = {}
ENVIRONMENT: list[Any] = []
USERS: dict[str, int] = {}  # by class, once every user was started
RNG = random.Random()  # amounts; gevent runs one user at a time, so one generator serves all


def slice_s() -> float:
    return float(os.environ.get("LEDGER_LOAD_SLICE_S", "2"))


def load_workload() -> Workload:
    path = os.environ.get("LEDGER_LOAD_SEED")
    if not path:
        sys.exit("LEDGER_LOAD_SEED must name the seed JSON file (see benchmarks/load.py)")
    with open(path, encoding="utf-8") as f:
        seed = json.load(f)
    start, _, stop = os.environ.get("LEDGER_LOAD_VOUCHERS", ":").partition(":")
    redeemable = seed["vouchers"][int(start or 0) : int(stop) if stop else None]
    random.shuffle(redeemable)
    providers = seed["providers"]
    keys = {p["id"]: signing_key(seed["key_secret"], p["id"]) for p in providers}
    picker = ProviderPicker(len(seed["hot_providers"]), len(providers), RNG)
    tokens = {p["id"]: p["token"] for p in providers}
    workload = Workload(seed, deque(redeemable), picker, keys, tokens)
    workload.filed.extend(seed["filed_claims"])
    workload.approved.extend(seed["approved_claims"])
    workload.redemptions.extend(
        ("", redemption_id) for redemption_id in seed["redemptions"]
    )  # provider unknown: auditors trace them, providers read only their own
    return workload


def w() -> Workload:
    return WORKLOAD[0]


def get(user: Any, path: str, name: str, token: str, expected: int = 200) -> Any:
    """GET as ``token``; the parsed JSON body when the answer was ``expected``, else None."""
    with user.client.get(path, headers=auth(token), name=name, catch_response=True) as answer:
        if check(answer, expected):
            return (
                answer.json() if answer.headers.get("content-type", "").endswith("json") else True
            )
    return None


def post(user: Any, path: str, body: dict[str, Any], name: str, token: str, expected: int) -> Any:
    """POST a JSON body with a fresh Idempotency-Key; the parsed answer if it was expected."""
    key = uuid.uuid4().hex
    headers = auth(token, **{"Idempotency-Key": key, "X-Request-Id": key})
    with user.client.post(path, json=body, headers=headers, name=name, catch_response=True) as a:
        if check(a, expected, {"X-Request-Id": key, "path": path, **body}):
            return a.json()
    return None


@dataclass
class Pace:
    """One schedule for every provider user of the process: ``rate_per_s`` task runs a second
    in all, however many users share it (locust's own pacing is per user)."""

    rate_per_s: float
    next_at: float = 0.0

    def wait_s(self) -> float:
        now = time.monotonic()
        slot = max(now, self.next_at)
        self.next_at = slot + 1.0 / self.rate_per_s
        return slot - now


def provider_wait() -> Any:
    """Back to back, or paced to ``LEDGER_LOAD_PROVIDER_RATE`` task runs a second in all."""
    rate = os.environ.get("LEDGER_LOAD_PROVIDER_RATE")
    if not rate:
        return constant(0)
    pace = Pace(float(rate))
    return lambda _user: pace.wait_s()


class ProviderUser(FastHttpUser):
    """Providers' systems: each iteration acts for one provider, a hot one four times in five,
    with the provider's own token and Ed25519 key."""

    weight = 10
    wait_time = provider_wait()

    def provider(self) -> dict[str, str]:
        return dict(w().seed["providers"][w().picker.pick()])

    @task(20)
    def redeem(self) -> None:
        if not w().vouchers:
            return  # every voucher of this process's share is used up (counted as used_up)
        provider, voucher_id, claim = self.provider(), w().vouchers.popleft(), uuid.uuid4().hex
        body = {
            "voucher_id": voucher_id,
            "contract_no": f"C-{claim}",
            "invoice_no": f"I-{claim}",
            "service_category": random.choice(SERVICE_CATEGORIES),
            "contract_amount_fen": contract_amount_fen(RNG),
            "service_date": w().seed["service_date"],
        }
        body = signed(w().provider_keys[provider["id"]], body)
        made = post(self, "/v1/redemptions", body, "/v1/redemptions", provider["token"], 201)
        if made is None or made["voucher_remaining_fen"] > 0:
            w().vouchers.append(voucher_id)  # a refused claim leaves the voucher as it was
        else:
            w().used_up += 1
        if made is not None:
            w().redemptions.append((provider["id"], made["id"]))

    @task(3)
    def balances(self) -> None:
        p = self.provider()
        path = f"/v1/institutions/{p['id']}/balances?fiscal_year={w().seed['fiscal_year']}"
        get(self, path, "/v1/institutions/{id}/balances", p["token"])

    @task(2)
    def payables(self) -> None:
        p = self.provider()
        page = get(self, f"/v1/payables?provider_id={p['id']}&limit=50", "/v1/payables", p["token"])
        for item in page["items"] if page else []:
            if item["payout_id"]:
                w().payouts.append((p["id"], item["payout_id"]))

    @task(1)
    def payout(self) -> None:
        if w().payouts:
            payee, payout_id = random.choice(w().payouts)
            token = w().provider_tokens[payee]
            get(self, f"/v1/payouts/{payout_id}", "/v1/payouts/{id}", token)

    @task(1)
    def redemption(self) -> None:
        own = [r for r in list(w().redemptions)[-200:] if r[0]]
        if own:
            provider_id, redemption_id = random.choice(own)
            token = w().provider_tokens[provider_id]
            get(self, f"/v1/redemptions/{redemption_id}", "/v1/redemptions/{id}", token)


class OfficerUser(FastHttpUser):
    """A programme officer: issues vouchers, revokes one issued in error now and then, approves
    the banks' guarantee claims after looking at them, and looks things up."""

    weight = 2
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        tokens = w().seed["officer_tokens"]
        self.token = tokens[w().next_number() % len(tokens)]

    @task(5)
    def issue(self) -> None:
        body = {
            "program_id": PROGRAMME,
            "holder_id": random.choice(w().seed["enterprises"]),
            "face_value_fen": face_value_fen(RNG),
            "valid_until": f"{w().seed['fiscal_year']}-12-31",
        }
        made = post(self, "/v1/vouchers", body, "/v1/vouchers", self.token, 201)
        if made is not None:
            w().issued.append(made["id"])

    @task(1)
    def revoke(self) -> None:
        if w().issued:
            voucher_id = w().issued.popleft()
            body = {"reason": "issued in error (load test)"}
            path = f"/v1/vouchers/{voucher_id}/revoke"
            post(self, path, body, "/v1/vouchers/{id}/revoke", self.token, 200)

    @task(2)
    def approve_claim(self) -> None:
        if not w().filed:
            return
        claim = w().filed.popleft()
        found = get(
            self, f"/v1/guarantee-claims/{claim['id']}", "/v1/guarantee-claims/{id}", self.token
        )
        if found is None or found["status"] != "filed":
            return  # decided already (by another run on this seed)
        path = f"/v1/guarantee-claims/{claim['id']}/approve"
        if post(self, path, {}, "/v1/guarantee-claims/{id}/approve", self.token, 200) is not None:
            w().approved.append(claim)

    @task(2)
    def vouchers_of_holder(self) -> None:
        holder = random.choice(w().seed["enterprises"])
        get(self, f"/v1/vouchers?holder_id={holder}&limit=20", "/v1/vouchers", self.token)

    @task(2)
    def voucher(self) -> None:
        voucher_id = random.choice(w().seed["vouchers"])
        get(self, f"/v1/vouchers/{voucher_id}", "/v1/vouchers/{id}", self.token)

    @task(1)
    def funding_source(self) -> None:
        source_id = random.choice(w().seed["sources"] + w().seed["guarantee_sources"])
        get(self, f"/v1/funding-sources/{source_id}", "/v1/funding-sources/{id}", self.token)


class BankUser(FastHttpUser):
    """A bank: registers covered loans and files a claim on each defaulted one, records what it
    recovers on its approved claims, and reads its claims and the pool."""

    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        banks = w().seed["banks"]
        self.bank = banks[w().next_number() % len(banks)]

    @task(3)
    def file_claim(self) -> None:
        today = w().seed["service_date"]
        started = dt.date.fromisoformat(today) - dt.timedelta(days=365)
        number = uuid.uuid4().hex[:20]
        principal_fen = loan_principal_fen(RNG)
        loan = {
            "id": f"LOAN-{number}",
            "pool_id": w().seed["pool"],
            "borrower_id": random.choice(w().seed["enterprises"]),
            "principal_fen": principal_fen,
            "start_date": started.isoformat(),
            "term_months": random.choice((12, 24, 36)),
            "first_loan": random.random() < 0.3,
            "credit_only": random.random() < 0.2,
            "ip_pledge": random.random() < 0.1,
        }
        token = self.bank["token"]
        if post(self, "/v1/guarantee-loans", loan, "/v1/guarantee-loans", token, 201) is None:
            return
        loss_fen = principal_fen * random.randint(10, 80) // 100
        body = {"loan_id": loan["id"], "loss_fen": loss_fen, "default_date": today}
        claim = post(self, "/v1/guarantee-claims", body, "/v1/guarantee-claims", token, 201)
        if claim is not None:
            w().filed.append({"id": claim["id"], "bank_id": self.bank["id"], "token": token})

    def own_approved(self) -> list[dict[str, str]]:
        return [c for c in w().approved if c["bank_id"] == self.bank["id"]]

    @task(2)
    def recovery(self) -> None:
        claims = self.own_approved()
        if claims:
            claim = random.choice(claims)
            body = {
                "amount_fen": random.randrange(10_000, 5_000_001),
                "recovered_on": w().seed["service_date"],
            }
            path = f"/v1/guarantee-claims/{claim['id']}/recoveries"
            post(self, path, body, "/v1/guarantee-claims/{id}/recoveries", self.bank["token"], 201)

    @task(2)
    def claim(self) -> None:
        claims = self.own_approved() or [c for c in w().filed if c["bank_id"] == self.bank["id"]]
        if claims:
            path = f"/v1/guarantee-claims/{random.choice(claims)['id']}"
            get(self, path, "/v1/guarantee-claims/{id}", self.bank["token"])

    @task(1)
    def pool(self) -> None:
        path = f"/v1/guarantee-pools/{w().seed['pool']}"
        get(self, path, "/v1/guarantee-pools/{id}", self.bank["token"])


class TreasuryUser(FastHttpUser):
    """Two treasury clerks: the maker gathers a payee's outstanding payables from one source into
    a payout, the checker (another principal) approves it; now and then they download the
    payment file and import the bank's statement for the payouts they approved."""

    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        tokens = w().seed["treasury_tokens"]
        pair = w().next_number() % max(1, len(tokens) // 2)
        self.maker, self.checker = tokens[2 * pair], tokens[2 * pair + 1]
        self.approved: dict[str, dict[str, Any]] = {}  # end_to_end_id -> payout

    def candidate(self) -> tuple[str, str] | None:
        """A (payee, source) with an outstanding payable in no payout, from the next page of
        payables of a source (the scan goes round)."""
        sources = w().seed["sources"] + w().seed["guarantee_sources"]
        source_id = random.choice(sources)
        after = w().cursors.get(source_id, 0)
        path = f"/v1/payables?source_id={source_id}&after={after}&limit=200"
        page = get(self, path, "/v1/payables", self.maker)
        if page is None:
            return None
        w().cursors[source_id] = page["next_after"] or 0
        for item in page["items"]:
            pair = (item["provider_id"], source_id)
            if item["outstanding_fen"] > 0 and not item["payout_id"] and pair not in w().in_flight:
                return pair
        return None

    @task(4)
    def pay_out(self) -> None:
        pair = self.candidate()
        if pair is None:
            return
        w().in_flight.add(pair)
        try:
            body = {"payee_id": pair[0], "source_id": pair[1]}
            made = post(self, "/v1/payouts", body, "/v1/payouts", self.maker, 201)
            if made is None:
                return
            path = f"/v1/payouts/{made['id']}/approve"
            done = post(self, path, {}, "/v1/payouts/{id}/approve", self.checker, 200)
            if done is not None:
                self.approved[done["end_to_end_id"]] = done
        finally:
            w().in_flight.discard(pair)

    @task(1)
    def settle(self) -> None:
        """The payment file, then the bank's statement paying this pair's part of it."""
        if not self.approved:
            return
        name = "/v1/payouts/payment-file?format=csv"
        headers = auth(self.maker)
        with self.client.get(name, headers=headers, name=name, catch_response=True) as answer:
            if not check(answer, 200):
                return
            rows = [r for r in csv.DictReader(io.StringIO(answer.text or "")) if r]
        ours = [r for r in rows if r["end_to_end_id"] in self.approved][:STATEMENT_LINES_MAX]
        if not ours:
            return
        self.import_statement(ours)

    def import_statement(self, rows: list[dict[str, str]]) -> None:
        statement = statement_csv(rows, w().seed["service_date"])
        headers = auth(self.maker, **{"Content-Type": "text/csv"})
        name = "/v1/statements"
        with self.client.post(
            name, data=statement, headers=headers, name=name, catch_response=True
        ) as answer:
            if not check(answer, 201):
                return
            summary = answer.json()
            if summary["matched"] != len(rows):
                fail(answer, "201 not-all-matched", {"lines": len(rows), **summary})
                return
        for row in rows:
            del self.approved[row["end_to_end_id"]]

    @task(1)
    def unmatched(self) -> None:
        get(
            self,
            "/v1/reconciliation/unmatched?limit=50",
            "/v1/reconciliation/unmatched",
            self.maker,
        )

    @task(1)
    def payouts(self) -> None:
        get(self, "/v1/payouts?status=approved&limit=50", "/v1/payouts", self.checker)


def statement_csv(rows: list[dict[str, str]], booking_date: str) -> bytes:
    """A bank statement in the project's CSV layout debiting each payment-file row, by its
    end-to-end reference, to the payee's account. Amounts go from fen to yuan text exactly."""
    out = io.StringIO()
    out.write("# account=TREASURY-ACCOUNT\n# currency=CNY\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["booking_date", "value_date", "amount", "currency", "credit_debit", "end_to_end_id",
         "counterparty_account", "counterparty_name", "reference"]
    )  # fmt: skip
    for row in rows:
        amount_fen = int(row["amount_fen"])
        writer.writerow(
            [booking_date, booking_date, f"{amount_fen // 100}.{amount_fen % 100:02d}", "CNY",
             "DBIT", row["end_to_end_id"], row["bank_account"], row["payee_name"],
             f"BK{uuid.uuid4().hex[:16]}"]
        )  # fmt: skip
    return out.getvalue().encode()


class AuditorUser(FastHttpUser):
    """An auditor: traces redemptions back to their sources, reads balances and sources as they
    were when the seeding ended, follows a source forward, proves an event, pulls the flows and
    the fiscal-year report, and verifies the chain now and then."""

    weight = 1
    wait_time = between(1.0, 4.0)

    def on_start(self) -> None:
        tokens = w().seed["auditor_tokens"]
        self.token = tokens[w().next_number() % len(tokens)]

    @task(4)
    def trace_redemption(self) -> None:
        trace_one(self, self.token)

    @task(3)
    def balances_as_of(self) -> None:
        balances_as_of(self, self.token)

    @task(2)
    def source_as_of(self) -> None:
        source_id = random.choice(w().seed["sources"])
        path = f"/v1/funding-sources/{source_id}?as_of={w().seed['as_of']}"
        get(self, path, "/v1/funding-sources/{id}?as_of", self.token)

    @task(1)
    def voucher_as_of(self) -> None:
        voucher_id = random.choice(w().seed["vouchers"])
        path = f"/v1/vouchers/{voucher_id}?as_of={w().seed['as_of']}"
        get(self, path, "/v1/vouchers/{id}?as_of", self.token)

    @task(1)
    def trace_source(self) -> None:
        source_id = random.choice(w().seed["sources"] + w().seed["guarantee_sources"])
        path = f"/v1/audit/trace/funding-sources/{source_id}"
        get(self, path, "/v1/audit/trace/funding-sources/{id}", self.token)

    @task(1)
    def proof(self) -> None:
        position = random.randint(1, int(w().seed["seeding"]["log_head"]))
        get(self, f"/v1/audit/proofs/{position}", "/v1/audit/proofs/{position}", self.token)

    @task(1)
    def flows(self) -> None:
        path = f"/v1/audit/flows?fiscal_year={w().seed['fiscal_year']}"
        get(self, path, "/v1/audit/flows", self.token)

    @task(1)
    def report(self) -> None:
        path = f"/v1/audit/report?fiscal_year={w().seed['fiscal_year']}&format=json"
        get(self, path, "/v1/audit/report?format=json", self.token)

    @task(1)
    def verify(self) -> None:
        found = get(self, "/v1/audit/verify", "/v1/audit/verify", self.token)
        if found is not None and not found["ok"]:
            print(f"AUDIT CHAIN BROKEN: {found}", file=sys.stderr)


class InspectorUser(FastHttpUser):
    """An inspector: runs the inspection queries, traces redemptions and bank lines, reads
    as-of balances and pulls the report as the HTML page."""

    weight = 1
    wait_time = between(1.0, 4.0)

    def on_start(self) -> None:
        tokens = w().seed["inspector_tokens"]
        self.token = tokens[w().next_number() % len(tokens)]

    @task(4)
    def inspection(self) -> None:
        query, params = random.choice(list(INSPECTIONS.items()))
        path = f"/v1/audit/inspections/{query}"
        get(self, path + params, path, self.token)

    @task(2)
    def trace_redemption(self) -> None:
        trace_one(self, self.token)

    @task(2)
    def balances_as_of(self) -> None:
        balances_as_of(self, self.token)

    @task(1)
    def trace_bank_line(self) -> None:
        """From a settled payout to the bank line that paid it, traced back to the sources."""
        page = get(self, "/v1/payouts?status=settled&limit=20", "/v1/payouts", self.token)
        if not page or not page["items"]:
            return
        payout_id = random.choice(page["items"])["id"]
        payout = get(self, f"/v1/payouts/{payout_id}", "/v1/payouts/{id}", self.token)
        if payout and payout["bank_lines"]:
            line = payout["bank_lines"][0]
            path = f"/v1/audit/trace/statements/{line['statement_id']}/lines/{line['line']}"
            get(self, path, "/v1/audit/trace/statements/{id}/lines/{line}", self.token)

    @task(1)
    def report_html(self) -> None:
        path = f"/v1/audit/report?fiscal_year={w().seed['fiscal_year']}&format=html"
        get(self, path, "/v1/audit/report?format=html", self.token)


def trace_one(user: Any, token: str) -> None:
    if w().redemptions:
        _, redemption_id = random.choice(w().redemptions)
        path = f"/v1/audit/trace/redemptions/{redemption_id}"
        get(user, path, "/v1/audit/trace/redemptions/{id}", token)


def balances_as_of(user: Any, token: str) -> None:
    institution = random.choice(w().seed["enterprises"] + w().seed["hot_providers"])
    year, as_of = w().seed["fiscal_year"], w().seed["as_of"]
    path = f"/v1/institutions/{institution}/balances?fiscal_year={year}&as_of={as_of}"
    get(user, path, "/v1/institutions/{id}/balances?as_of", token)


@events.init.add_listener
def prepare(environment: Any, **_: Any) -> None:
    ENVIRONMENT.append(environment)
    WORKLOAD.append(load_workload())


@events.test_start.add_listener
def start_clock(**_: Any) -> None:
    w().started, w().started_unix = time.monotonic(), time.time()


@events.spawning_complete.add_listener
def count_users(**_: Any) -> None:
    USERS.update(ENVIRONMENT[0].runner.user_classes_count)


@events.test_stop.add_listener
def stop_clock(**_: Any) -> None:
    w().stopped = time.monotonic()


@events.request.add_listener
def record_slice(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: Any,
    **_: Any,
) -> None:
    """Each request also into the statistics of its time slice (latency over time)."""
    index = int((time.monotonic() - w().started) // slice_s())
    stats = SLICES.get(index)
    if stats is None:
        stats = SLICES[index] = RequestStats(use_response_times_cache=False)
    stats.log_request(request_type, name, round(response_time), response_length)
    if exception:
        stats.log_error(request_type, name, exception)


@events.quit.add_listener
def write_report(**_: Any) -> None:
    path = os.environ.get("LEDGER_LOAD_REPORT")
    if not path or not ENVIRONMENT or not WORKLOAD:
        return
    environment, workload = ENVIRONMENT[0], w()
    duration_s = (workload.stopped or time.monotonic()) - workload.started
    users = {name: n for name, n in USERS.items() if n}
    summary = scenario_summary(
        os.environ.get("LEDGER_LOAD_SCENARIO", "scenario"),
        users,
        environment.stats,
        SLICES,
        slice_s(),
        duration_s,
    )
    summary["started_at_unix"] = workload.started_unix
    summary["outcomes"] = dict(OUTCOMES)
    summary["samples"] = SAMPLES
    summary["vouchers_used_up"] = workload.used_up
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
