"""64 HTTP clients at once against the real ``voucher-ledger serve`` (issue 15): on one voucher,
on one contract number, on one provider's post-subsidy cap and on one payee's payouts. No
overspend, one claim per contract, the cap never exceeded, a payable in one payout; no 5xx,
and every refusal is the business's own (a 409 or 422 with its slug)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.application import china_today
from tests.api_support import WORKED_PROGRAM
from tests.conftest import ENTERPRISE_2, PROVIDER, PROVIDER_2
from tests.outage_support import Server, seed, served

CLIENTS = 64
ADMIN = "races-admin-token-" + "r" * 24
FACE_FEN = 2_000_000
TIMEOUT_S = 60.0


@pytest.fixture
def server(pg_schema_url: str, tmp_path: Path) -> Iterator[Server]:
    with served(pg_schema_url, tmp_path, ADMIN) as running:
        yield running


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def race(server: Server, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[Any]:
    """Every call on a client of its own, all released at once."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=TIMEOUT_S) as client:
            client.get("/v1/health")  # connected before the start
            start.wait()
            return call(client)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def outcomes(answers: list[httpx.Response]) -> Counter[str]:
    """``201``, or the status and slug of each refusal."""
    found: Counter[str] = Counter()
    for a in answers:
        assert a.status_code < 500, a.text
        if a.status_code in (200, 201):
            found[str(a.status_code)] += 1
        else:
            assert a.headers["Content-Type"].startswith("application/problem+json"), a.text
            found[f"{a.status_code} {a.json()['type'].rsplit('/', 1)[-1]}"] += 1
    return found


def redemption(voucher_id: str, contract_no: str, fen: int) -> dict[str, Any]:
    return {
        "voucher_id": voucher_id,
        "contract_no": contract_no,
        "invoice_no": f"INV-{contract_no}",
        "service_category": "testing",
        "contract_amount_fen": fen,
        "service_date": china_today().isoformat(),
    }


def redeem(token: str, body: dict[str, Any]) -> Callable[[httpx.Client], httpx.Response]:
    headers = {**auth(token), "Idempotency-Key": uuid.uuid4().hex}
    return lambda client: client.post("/v1/redemptions", json=body, headers=headers)


def post(client: httpx.Client, path: str, body: dict[str, Any], token: str = ADMIN) -> Any:
    answer = client.post(path, json=body, headers=auth(token))
    assert answer.status_code in (200, 201), (path, answer.text)
    return answer.json()


def test_64_clients_on_one_voucher_one_contract_one_cap_and_one_payee(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=TIMEOUT_S) as client:
        world = seed(client, ADMIN, 2)
        officer = post(client, "/v1/principals", {"name": "o2", "role": "program_officer"})
        treasury = post(client, "/v1/principals", {"name": "t", "role": "treasury"})["token"]
        auditor = auth(world.auditor)

        # One voucher: 64 redemptions of 50,000 fen, each taking a 45,000 fen subsidy from
        # a 2,000,000 fen voucher: 44 fit whole, the 45th takes the 20,000 left, and the
        # others find the voucher used up.
        voucher = world.vouchers[0]
        answers = race(
            server,
            [redeem(world.provider, redemption(voucher, f"V-{n}", 50_000)) for n in range(CLIENTS)],
        )
        seen = outcomes(answers)
        assert seen == {"201": 45, "422 voucher-not-active": CLIENTS - 45}, seen
        made = [a.json() for a in answers if a.status_code == 201]
        assert sum(r["subsidy_fen"] for r in made) == FACE_FEN
        assert sorted(r["subsidy_fen"] for r in made) == [20_000] + [45_000] * 44
        left = client.get(f"/v1/vouchers/{voucher}", headers=auditor).json()
        assert left["remaining_fen"] == 0

        # One contract number: 64 clients claim it with keys of their own; one wins.
        other = world.vouchers[1]
        same = redemption(other, "ONE-CONTRACT", 10_000)
        answers = race(server, [redeem(world.provider, same) for _ in range(CLIENTS)])
        seen = outcomes(answers)
        assert seen == {"201": 1, "409 duplicate-claim": CLIENTS - 1}, seen
        made += [a.json() for a in answers if a.status_code == 201]

        # One provider's post-subsidy cap: 100,000 fen in a programme of its own, asked 64
        # times 15,000 (5% of 300,000): the cap cuts the post-subsidy, never the redemption.
        post(client, "/v1/institutions", {"id": PROVIDER_2, "name": "p2", "kind": "provider"})
        post(client, "/v1/institutions", {"id": ENTERPRISE_2, "name": "e2", "kind": "enterprise"})
        second = post(
            client,
            "/v1/principals",
            {"name": "p2", "role": "provider", "institution_id": PROVIDER_2},
        )["token"]
        capped = {
            **WORKED_PROGRAM,
            "id": "capped-2026",
            "provider_annual_cap_fen": 100_000,
            "enterprise_annual_cap_fen": 100_000_000,  # 64 x 270,000 fen of subsidy
            "max_face_value_fen": 500_000,
        }
        post(client, "/v1/programs", capped, officer["token"])
        valid_until = (china_today() + dt.timedelta(days=365)).isoformat()
        vouchers = [
            post(
                client,
                "/v1/vouchers",
                {
                    "program_id": "capped-2026",
                    "holder_id": ENTERPRISE_2,
                    "face_value_fen": 500_000,
                    "valid_until": valid_until,
                },
                officer["token"],
            )["id"]
            for _ in range(CLIENTS)
        ]
        answers = race(
            server,
            [redeem(second, redemption(v, f"CAP-{n}", 300_000)) for n, v in enumerate(vouchers)],
        )
        assert outcomes(answers) == {"201": CLIENTS}
        bonuses = sorted((a.json()["provider_bonus_fen"] for a in answers), reverse=True)
        assert bonuses == [15_000] * 6 + [10_000] + [0] * (CLIENTS - 7), bonuses
        position = max(int(a.headers["X-Ledger-Position"]) for a in answers)
        year = client.get(
            f"/v1/institutions/{PROVIDER_2}/balances",
            params={"fiscal_year": "2026", "min_position": position},
            headers=auditor,
        ).json()
        assert year["provider_bonus_fen"] == 100_000
        assert year["provider_bonus_cap_remaining_fen"] == 0

        # One payee's payouts: 64 clerks gather what the province owes the first provider at
        # once; one payout takes every line, the others find nothing to pay.
        details = {"bank_account": "6217 0000 1111", "contact": None, "reason": "bank details"}
        post(client, f"/v1/institutions/{PROVIDER}/payment-details", details)
        asked = {"payee_id": PROVIDER, "source_id": "province-2026"}
        answers = race(
            server,
            [
                lambda c: c.post("/v1/payouts", json=asked, headers=auth(treasury))
                for _ in range(CLIENTS)
            ],
        )
        seen = outcomes(answers)
        assert seen == {"201": 1, "422 nothing-to-pay": CLIENTS - 1}, seen
        (payout,) = (a.json() for a in answers if a.status_code == 201)
        owed = {
            r["id"]: sum(s["amount_fen"] for s in r["splits"] if s["source_id"] == "province-2026")
            for r in made  # every redemption of the first provider
        }
        assert {line["redemption_id"] for line in payout["lines"]} == set(owed)
        assert len(payout["lines"]) == len(owed) == 46
        assert payout["amount_fen"] == sum(owed.values())
