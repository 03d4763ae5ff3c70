"""Seeding a fresh server over HTTP for the load scenarios (API_CONTRACT.md §4, §4b, §4c), with
the time each phase took: the API has no bulk path, so 100,000 vouchers are 100,000 POSTs.

What it makes: voucher sources (province, city) and guarantee-fund sources, one programme and
one risk-compensation pool; enterprises, providers (each with an Ed25519 key and a bank account)
and banks; a principal per provider and per bank and a few officers, treasury clerks, auditors
and inspectors; the vouchers; then some signed redemptions, and covered loans with a claim each
(half of them approved), so that treasury, banks and auditors have something to work on from the
first second. Any refusal stops the seeding: a seed that half worked would skew every figure."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from load_tests.population import (
    SERVICE_CATEGORIES,
    ProviderPicker,
    Sizes,
    bank_account,
    bank_uscc,
    contract_amount_fen,
    enterprise_uscc,
    face_value_fen,
    fresh_reference,
    loan_principal_fen,
    provider_uscc,
    public_pem,
    signed,
    signing_key,
    today_cst,
)

PROGRAMME = "load-innovation-voucher"
POOL = "load-tech-credit-pool"
VOUCHER_SOURCES = (("load-province", "province", 6000), ("load-city", "city", 3000))
GUARANTEE_SOURCES = (("load-province-gf", 1250), ("load-city-gf", 8750))
APPROPRIATION_FEN = 10**12  # 10 billion yuan a source: no scenario runs a source dry
# The provider's post-subsidy cap as seed 003 sets it (500,000 yuan a year: a hot provider
# reaches it, after which its claims earn no post-subsidy, as the rule says). An enterprise
# holds 12.5 vouchers on average here (25,000,000 fen of face value); its cap is well above
# that, so that a long run does not turn into enterprise-cap-reached refusals (10,000,000 fen
# did, after about 13 claims an enterprise).
PROVIDER_CAP_FEN, ENTERPRISE_CAP_FEN = 50_000_000, 50_000_000
MAX_FACE_VALUE_FEN = 5_000_000
STAFF = {"program_officer": 4, "treasury": 4, "auditor": 2, "inspector": 2}
THREADS = 24  # concurrent seeding requests; the server has 16 command threads a worker
ATTEMPTS = 8  # a 503 stored nothing: the same keyed request is sent again
TIMEOUT_S = 60.0


class SeedingFailed(RuntimeError):
    pass


class Seeder:
    """POSTs to one server; each keyed, retried on 503, anything but the expected status fatal.

    Plain ``http.client`` on a keep-alive connection per thread: httpx cost about 1.5 ms of
    this process's CPU a request, which made the seeding client, not the server, the limit."""

    def __init__(self, base: str, admin: str) -> None:
        self.admin = admin
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.local = threading.local()
        self.retried: Counter[str] = Counter()  # "503 database-unavailable" -> count
        self.phases: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        """One exchange on this thread's connection, opened again once if the server closed it."""
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
                self.local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(
        self, path: str, body: dict[str, Any], token: str | None = None, keyed: bool = True
    ) -> Any:
        """``keyed=False`` for the bulk of the vouchers: a stored Idempotency-Key made issuing
        a third slower (247 against 363 a second), and a 503, the only answer sent again,
        stored nothing."""
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        headers["Content-Type"] = "application/json"
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        data = json.dumps(body, ensure_ascii=False).encode()
        for attempt in range(ATTEMPTS):
            status, answer = self.request("POST", path, data, headers)
            if status != 503 or attempt == ATTEMPTS - 1:
                break
            self.retried[f"503 {json.loads(answer).get('type', '').rsplit('/', 1)[-1]}"] += 1
            time.sleep(min(2.0, 0.05 * 2**attempt))
        if status not in (200, 201):
            raise SeedingFailed(f"POST {path} -> {status} {answer[:500]!r}")
        return json.loads(answer)

    def get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        status, answer = self.request("GET", path, None, headers)
        if status != 200:
            raise SeedingFailed(f"GET {path} -> {status} {answer[:500]!r}")
        return json.loads(answer)

    def phase(self, name: str, work: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``work`` over ``items`` on ``THREADS`` threads, timed as one phase."""
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(work, items))
        took_s = time.monotonic() - started
        self.phases.append({"phase": name, "requests": len(results), "seconds": round(took_s, 2)})
        rate = len(results) / took_s if took_s else 0.0
        print(f"  seeded {name}: {len(results)} in {took_s:.1f} s ({rate:.0f}/s)", flush=True)
        return results

    def principal(self, role: str, institution_id: str | None = None) -> str:
        body = {"name": f"load {role}", "role": role, "institution_id": institution_id}
        return str(self.post("/v1/principals", body)["token"])


def _funding(s: Seeder, year: int) -> None:
    common = {"fiscal_year": year, "appropriation_fen": APPROPRIATION_FEN, "document_ref": "load"}
    for source_id, level, _ in VOUCHER_SOURCES:
        s.post(
            "/v1/funding-sources", {**common, "id": source_id, "name": source_id, "level": level}
        )
    for source_id, _ in GUARANTEE_SOURCES:
        body = {**common, "id": source_id, "name": source_id, "level": "guarantee_fund"}
        s.post("/v1/funding-sources", body)


def _programme_and_pool(s: Seeder, officer: str, year: int) -> None:
    programme = {
        "id": PROGRAMME,
        "name": "innovation vouchers (load)",
        "fiscal_year": year,
        "shares": [{"source_id": sid, "share_bp": bp} for sid, _, bp in VOUCHER_SOURCES],
        "max_face_value_fen": MAX_FACE_VALUE_FEN,
        "provider_bonus_rate_bp": 500,
        "provider_bonus_source_id": VOUCHER_SOURCES[1][0],
        "provider_annual_cap_fen": PROVIDER_CAP_FEN,
        "enterprise_annual_cap_fen": ENTERPRISE_CAP_FEN,
    }
    s.post("/v1/programs", programme, officer)
    pool = {
        "id": POOL,
        "name": "technology credit pool (load)",
        "shares": [{"source_id": sid, "share_bp": bp} for sid, bp in GUARANTEE_SOURCES],
        "rule": "risk-compensation@1",
        "bank_annual_cap_fen": None,
    }
    s.post("/v1/guarantee-pools", pool, officer)


def _institution_body(uscc: str, kind: str, key_secret: str) -> dict[str, Any]:
    body: dict[str, Any] = {"id": uscc, "name": f"{kind} {uscc}", "kind": kind}
    if kind != "enterprise":
        body["bank_account"] = bank_account(uscc)
    if kind == "provider":
        body["public_key_pem"] = public_pem(signing_key(key_secret, uscc))
    return body


def _institutions(s: Seeder, sizes: Sizes, key_secret: str) -> dict[str, list[str]]:
    ids = {
        "enterprise": [enterprise_uscc(n) for n in range(sizes.enterprises)],
        "provider": [provider_uscc(n) for n in range(sizes.providers)],
        "bank": [bank_uscc(n) for n in range(sizes.banks)],
    }
    bodies = [_institution_body(u, kind, key_secret) for kind, us in ids.items() for u in us]
    s.phase("institutions", lambda body: s.post("/v1/institutions", body), bodies)
    return ids


def _vouchers(
    s: Seeder, officers: list[str], holders: list[str], count: int, year: int, rng: random.Random
) -> list[str]:
    bodies = [
        {
            "program_id": PROGRAMME,
            "holder_id": holders[n % len(holders)],
            "face_value_fen": face_value_fen(rng),
            "valid_until": f"{year}-12-31",
        }
        for n in range(count)
    ]

    def issue(n: int) -> str:
        answer = s.post("/v1/vouchers", bodies[n], officers[n % len(officers)], keyed=False)
        return str(answer["id"])

    return s.phase("vouchers", issue, range(count))


def _redemptions(s: Seeder, data: dict[str, Any], count: int, rng: random.Random) -> list[str]:
    """Signed claims by the hot-skewed picker, one voucher each (the first ``count``)."""
    providers = data["providers"]
    picker = ProviderPicker(len(data["hot_providers"]), len(providers), rng)
    plan = [(providers[picker.pick()], contract_amount_fen(rng)) for _ in range(count)]

    def redeem(n: int) -> str:
        provider, amount_fen = plan[n]
        claim = fresh_reference("SEED", n, random.Random(n))
        body = {
            "voucher_id": data["vouchers"][n],
            "contract_no": f"C-{claim}",
            "invoice_no": f"I-{claim}",
            "service_category": SERVICE_CATEGORIES[n % len(SERVICE_CATEGORIES)],
            "contract_amount_fen": amount_fen,
            "service_date": data["service_date"],
        }
        key = signing_key(data["key_secret"], provider["id"])
        return str(s.post("/v1/redemptions", signed(key, body), provider["token"])["id"])

    return s.phase("redemptions", redeem, range(count))


def _guarantee_claims(
    s: Seeder, data: dict[str, Any], per_bank: int, rng: random.Random
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A covered loan per (bank, n) with one claim filed on it; every other claim approved.
    Returns the claims left filed and the approved ones, each with its bank's id."""
    today = dt.date.fromisoformat(data["service_date"])
    plan = [
        (bank, n, loan_principal_fen(rng), rng.choice(data["enterprises"]))
        for bank in data["banks"]
        for n in range(per_bank)
    ]

    def file(item: tuple[dict[str, str], int, int, str]) -> dict[str, str]:
        bank, n, principal_fen, borrower = item
        loan_id = fresh_reference("LOAN", n, random.Random(f"{bank['id']}{n}"))
        loan = {
            "id": loan_id,
            "pool_id": POOL,
            "borrower_id": borrower,
            "principal_fen": principal_fen,
            "start_date": (today - dt.timedelta(days=400)).isoformat(),
            "term_months": 24,
            "first_loan": n % 3 == 0,
            "credit_only": n % 4 == 0,
            "ip_pledge": False,
        }
        s.post("/v1/guarantee-loans", loan, bank["token"])
        claim = {"loan_id": loan_id, "loss_fen": principal_fen // 2, "default_date": str(today)}
        filed = s.post("/v1/guarantee-claims", claim, bank["token"])
        return {"id": filed["id"], "bank_id": bank["id"], "token": bank["token"]}

    claims = s.phase("guarantee loans and claims", file, plan)
    approved, filed = claims[::2], claims[1::2]
    officer = data["officer_tokens"][0]
    s.phase(
        "claim approvals",
        lambda c: s.post(f"/v1/guarantee-claims/{c['id']}/approve", {}, officer),
        approved,
    )
    return filed, approved


def wait_for_views(s: Seeder, timeout_s: float = 300.0) -> dict[str, Any]:
    """Until ``/v1/health`` reports the views and the audit chain at the log's head."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = s.get("/v1/health")
        behind = [health.get(k, {}).get("behind_events", 0) for k in ("projections", "audit_chain")]
        if not any(behind) or time.monotonic() > deadline:
            return dict(health)
        time.sleep(0.5)


def seed(base: str, admin: str, sizes: Sizes, rng: random.Random) -> dict[str, Any]:
    """Everything the scenarios need, created over HTTP; returns the seed (tokens, ids, the
    key secret, what each phase took)."""
    s, today, started = Seeder(base, admin), today_cst(), time.monotonic()
    key_secret = secrets.token_hex(16)
    year = today.year
    if True:
        _funding(s, year)
        staff = {role: [s.principal(role) for _ in range(n)] for role, n in STAFF.items()}
        _programme_and_pool(s, staff["program_officer"][0], year)
        ids = _institutions(s, sizes, key_secret)
        providers = s.phase(
            "provider principals",
            lambda u: {"id": u, "token": s.principal("provider", u)},
            ids["provider"],
        )
        banks = s.phase(
            "bank principals", lambda u: {"id": u, "token": s.principal("bank", u)}, ids["bank"]
        )
        data: dict[str, Any] = {
            "fiscal_year": year,
            "service_date": today.isoformat(),
            "key_secret": key_secret,  # the providers' keys derive from it: keep the file private
            "programme": PROGRAMME,
            "pool": POOL,
            "sources": [sid for sid, _, _ in VOUCHER_SOURCES],
            "guarantee_sources": [sid for sid, _ in GUARANTEE_SOURCES],
            "enterprises": ids["enterprise"],
            "providers": providers,
            "hot_providers": [p["id"] for p in providers[: sizes.hot_providers]],
            "banks": banks,
            "officer_tokens": staff["program_officer"],
            "treasury_tokens": staff["treasury"],
            "auditor_tokens": staff["auditor"],
            "inspector_tokens": staff["inspector"],
        }
        data["vouchers"] = _vouchers(
            s, staff["program_officer"], ids["enterprise"], sizes.vouchers, year, rng
        )
        data["redemptions"] = _redemptions(s, data, min(sizes.redemptions, sizes.vouchers), rng)
        data["filed_claims"], data["approved_claims"] = _guarantee_claims(
            s, data, sizes.loans_per_bank, rng
        )
        views_started = time.monotonic()
        health = wait_for_views(s)
        s.phases.append(
            {"phase": "views caught up", "seconds": round(time.monotonic() - views_started, 2)}
        )
    data["as_of"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # no "+" to escape
    data["seeding"] = {
        "seconds": round(time.monotonic() - started, 1),
        "phases": s.phases,
        "retried": dict(s.retried),
        "log_head": health.get("projections", {}).get("head"),
    }
    return data
