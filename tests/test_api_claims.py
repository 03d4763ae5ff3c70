"""Signed claims and idempotency keys over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from ledger.application import VoucherLedger
from ledger.claims import ContractClaim
from ledger.idempotency import IdempotencyRecord
from ledger.settings import Settings
from ledger.uscc import make_uscc
from tests.api_support import (
    ADMIN_TOKEN,
    Api,
    auth,
    issue,
    open_worked_example,
    public_pem,
    redemption_body,
    sign,
)
from tests.conftest import PROVIDER, TODAY

SIGNING_PROVIDER = make_uscc("12371500MB2800003")


@pytest.fixture
def signed(api: Api) -> Iterator[tuple[Api, Ed25519PrivateKey, str]]:
    """The worked example plus a provider that registered an Ed25519 key, and a voucher."""
    open_worked_example(api)
    key = Ed25519PrivateKey.generate()
    body = {"id": SIGNING_PROVIDER, "name": "Signing lab", "kind": "provider"}
    assert (
        api.post("/v1/institutions", {**body, "public_key_pem": public_pem(key)}).status_code == 201
    )
    api.tokens["signer"] = api.principal("provider", SIGNING_PROVIDER)
    yield api, key, issue(api)


def test_a_signed_claim_is_accepted_and_its_signature_is_stored(
    signed: tuple[Api, Ed25519PrivateKey, str],
) -> None:
    api, key, voucher_id = signed
    body = redemption_body(voucher_id)
    signature = sign(key, body)
    result = api.post("/v1/redemptions", {**body, "signature": signature}, api.tokens["signer"])
    assert result.status_code == 201, result.text
    claim = api.app.ledger.repository.get(ContractClaim.create_id(SIGNING_PROVIDER, "C-1"))
    assert claim.signature == signature
    assert claim.signed_payload.encode() == (
        b'{"contract_amount_fen":1000000,"contract_no":"C-1","invoice_no":"INV-C-1",'
        b'"service_category":"testing","service_date":"2026-04-01","voucher_id":"'
        + voucher_id.encode()
        + b'"}'
    )


@pytest.mark.parametrize("case", ["missing", "tampered body", "wrong key", "not base64"])
def test_a_claim_without_a_valid_signature_is_refused_and_stores_nothing(
    signed: tuple[Api, Ed25519PrivateKey, str], case: str
) -> None:
    api, key, voucher_id = signed
    body: dict[str, Any] = redemption_body(voucher_id)
    if case == "tampered body":
        body["signature"] = sign(key, body)
        body["contract_amount_fen"] = 2_000_000
    elif case == "wrong key":
        body["signature"] = sign(Ed25519PrivateKey.generate(), body)
    elif case == "not base64":
        body["signature"] = "not base64!"
    before = api.log_length()
    result = api.post("/v1/redemptions", body, api.tokens["signer"])
    assert result.status_code == 422, result.text
    assert result.json["type"].endswith("/invalid-signature")
    assert api.log_length() == before


def test_a_replayed_key_returns_the_first_response_and_changes_nothing(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    body = redemption_body(voucher_id)
    first = api.post("/v1/redemptions", body, api.tokens["provider"], key="redeem-1")
    assert first.status_code == 201
    after_first = api.log_length()
    again = api.post("/v1/redemptions", body, api.tokens["provider"], key="redeem-1")
    assert (again.status_code, again.text) == (first.status_code, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.log_length() == after_first


def test_the_writer_keeps_a_keys_record_as_its_id_and_replays_it_from_the_store(
    api: Api,
) -> None:
    """An idempotency record holds the answer it replays: the writer keeps only its id
    (ledger/unit_of_work.py), and a retry loads the record from the store, without a
    fallback to one command per transaction; a reused key is still refused."""
    open_worked_example(api)
    voucher_id = issue(api)
    body = redemption_body(voucher_id)
    first = api.post("/v1/redemptions", body, api.tokens["provider"], key="kept-as-id")
    assert first.status_code == 201
    writer = api.app.ledger.writer
    principal = api.app.ledger.principal_for_token(api.tokens["provider"])
    assert principal is not None
    record = IdempotencyRecord.create_id(str(principal.id), "kept-as-id")
    assert writer.cache.get(record) is None
    assert writer.cache.exists(IdempotencyRecord, record)
    fallbacks, after_first = writer.stats.fallbacks, api.log_length()

    again = api.post("/v1/redemptions", body, api.tokens["provider"], key="kept-as-id")

    assert (again.status_code, again.text) == (first.status_code, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert writer.stats.fallbacks == fallbacks
    assert api.log_length() == after_first
    other = redemption_body(voucher_id, "C-2")
    reused = api.post("/v1/redemptions", other, api.tokens["provider"], key="kept-as-id")
    assert reused.json["type"].endswith("/idempotency-key-reused")
    assert writer.stats.fallbacks == fallbacks


def test_a_key_reused_with_another_body_is_refused(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    first = api.post(
        "/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"], key="k"
    )
    assert first.status_code == 201
    before = api.log_length()
    other = redemption_body(voucher_id, "C-2")
    result = api.post("/v1/redemptions", other, api.tokens["provider"], key="k")
    assert result.status_code == 422
    assert result.json["type"].endswith("/idempotency-key-reused")
    assert api.log_length() == before


def test_concurrent_requests_with_one_key_create_one_redemption_across_processes(
    api: Api, store_url: str
) -> None:
    """Two ledgers on one store stand for two server workers; eight requests race."""
    open_worked_example(api)
    voucher_id = issue(api)
    second_ledger = VoucherLedger(Settings(database_url=store_url), clock=lambda: TODAY)
    second_app = create_app(
        Settings(database_url=store_url, admin_token=ADMIN_TOKEN), second_ledger
    )
    second = falcon.testing.TestClient(second_app)
    clients = [api.client, second]
    body = redemption_body(voucher_id)
    headers = {**auth(api.tokens["provider"]), "Idempotency-Key": "same-key"}
    results: list[falcon.testing.Result] = []
    start = threading.Barrier(8)

    def post(n: int) -> None:
        start.wait()
        results.append(clients[n % 2].simulate_post("/v1/redemptions", json=body, headers=headers))

    try:
        threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second_app.close()
    assert {r.status_code for r in results} == {201}
    assert len({r.text for r in results}) == 1
    balances = api.get(
        f"/v1/institutions/{PROVIDER}/balances", api.tokens["auditor"], fiscal_year=2026
    ).json
    assert balances["redeemed_contract_fen"] == 1_000_000
