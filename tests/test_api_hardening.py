"""What a careless or hostile client found (issue 12), over HTTP on SQLite and PostgreSQL: a
post-subsidy its source did not cover, idempotency keys that forgot after a restart or on
another worker, contract numbers that differ only in case, tokens and keys that could not be
revoked, and input that got through."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon.testing
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from api.app import create_app
from ledger.application import VoucherLedger
from ledger.settings import Settings
from ledger.uscc import make_uscc
from tests.api_support import (
    ADMIN_TOKEN,
    Api,
    issue,
    open_worked_example,
    public_pem,
    redemption_body,
    sign,
)
from tests.conftest import ENTERPRISE, PROVIDER, TODAY

SIGNING_PROVIDER = make_uscc("12371500MB2800003")
REFUSED_TOPIC = "ledger.claims:RefusedRedemption.Recorded"


@contextmanager
def api_on(url: str) -> Iterator[Api]:
    """A server process on ``url``: another worker, or the same one after a restart."""
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, checkpoint_every=8)
    app = create_app(settings, VoucherLedger(settings, clock=lambda: TODAY))
    try:
        yield Api(app, falcon.testing.TestClient(app))
    finally:
        app.close()


def events_of(api: Api, topic: str) -> int:
    return sum(
        1 for n in api.app.ledger.recorder.select_notifications(1, 10_000) if n.topic == topic
    )


def problem(result: Any, status: int, slug: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/problem+json"), result.headers
    assert result.json["type"].endswith(f"/{slug}"), result.json
    return dict(result.json)


# ---- 1. the post-subsidy is covered by its source ----------------------------------------------


def test_a_huge_contract_on_a_small_voucher_earns_post_subsidy_only_on_what_it_honoured(
    api: Api,
) -> None:
    open_worked_example(api)
    voucher_id = issue(api, face_value_fen=100)
    body = redemption_body(voucher_id, contract_amount_fen=10**15)

    result = api.post("/v1/redemptions", body, api.tokens["provider"])

    assert result.status_code == 201, result.text
    assert result.json["subsidy_fen"] == 100
    # 100 fen of subsidy at 9000 bp honours 111 fen of the contract: 5 fen of post-subsidy.
    assert (result.json["honoured_contract_fen"], result.json["provider_bonus_fen"]) == (111, 5)
    params = result.json["rule_params"]["provider-post-subsidy@1"]
    assert params == {"rate_bp": 500, "annual_cap_fen": 50_000_000}


def test_the_post_subsidy_is_committed_on_its_source_and_no_source_ever_owes_more_than_it_has(
    api: Api,
) -> None:
    open_worked_example(api)
    voucher = api.post(
        "/v1/vouchers",
        {
            "program_id": "innovation-2026",
            "holder_id": ENTERPRISE,
            "face_value_fen": 2_000_000,
            "valid_until": "2026-12-31",
        },
        api.tokens["program_officer"],
    )
    assert voucher.status_code == 201, voucher.text
    # The pinned reservations are the subsidy's; the post-subsidy's are shown apart.
    assert voucher.json["reservations"] == [
        {"source_id": "province-2026", "amount_fen": 1_333_333},
        {"source_id": "city-2026", "amount_fen": 666_667},
    ]
    assert voucher.json["provider_bonus_reservation"] == {
        "source_id": "city-2026",
        "amount_fen": 111_111,
    }
    city = api.get(
        "/v1/funding-sources/city-2026",
        api.tokens["treasury"],
        min_position=voucher.headers["X-Ledger-Position"],
    ).json
    assert (city["reserved_fen"], city["provider_bonus_reserved_fen"]) == (666_667, 111_111)
    assert city["committed_fen"] == 777_778
    assert city["available_fen"] == 50_000_000 - 777_778


def test_a_voucher_the_source_cannot_cover_with_its_post_subsidy_is_refused(api: Api) -> None:
    open_worked_example(api)
    programme = {
        "id": "all-city",
        "name": "All city",
        "fiscal_year": 2026,
        "shares": [{"source_id": "city-2026", "share_bp": 5000}],
        "max_face_value_fen": 10**12,
        "provider_bonus_rate_bp": 5000,
        "provider_bonus_source_id": "city-2026",
        "provider_annual_cap_fen": 10**12,
        "enterprise_annual_cap_fen": 10**12,
    }
    assert api.post("/v1/programs", programme, api.tokens["program_officer"]).status_code == 201
    officer = api.tokens["program_officer"]
    # 25,000,000 of face value honours 50,000,000 of contract: 25,000,000 of post-subsidy, so
    # the voucher commits the whole 50,000,000 of the city's appropriation.
    big = {"program_id": "all-city", "holder_id": ENTERPRISE, "valid_until": "2026-12-31"}
    one_fen_too_many = api.post("/v1/vouchers", {**big, "face_value_fen": 25_000_001}, officer)
    problem(one_fen_too_many, 422, "insufficient-funds")
    exactly = api.post("/v1/vouchers", {**big, "face_value_fen": 25_000_000}, officer)
    assert exactly.status_code == 201, exactly.text
    city = api.get("/v1/funding-sources/city-2026", api.tokens["treasury"]).json
    assert city["available_fen"] == 0
    problem(
        api.post("/v1/vouchers", {**big, "face_value_fen": 1}, officer), 422, "insufficient-funds"
    )
    # Used up by one redemption: what it held for post-subsidy and did not earn goes back.
    body = redemption_body(exactly.json["id"], contract_amount_fen=40_000_000)
    used_up = api.post("/v1/redemptions", body, api.tokens["provider"])
    assert used_up.status_code == 201, used_up.text
    assert used_up.json["voucher_remaining_fen"] == 5_000_000
    last = api.post(
        "/v1/redemptions",
        redemption_body(exactly.json["id"], "C-2", contract_amount_fen=10_000_000),
        api.tokens["provider"],
    )
    assert last.status_code == 201, last.text
    assert last.json["voucher_remaining_fen"] == 0
    city = api.get(
        "/v1/funding-sources/city-2026",
        api.tokens["treasury"],
        min_position=last.headers["X-Ledger-Position"],
    ).json
    owed_fen = city["disbursed_fen"] + city["provider_bonus_fen"]
    assert (city["disbursed_fen"], city["provider_bonus_fen"]) == (25_000_000, 25_000_000)
    assert owed_fen <= city["appropriation_fen"] + city["recovered_fen"]
    assert city["available_fen"] == 0 and city["provider_bonus_released_fen"] == 0


# ---- 3. an idempotency key always answers what it answered first --------------------------------


def test_a_keyed_revocation_replays_after_a_restart(store_url: str) -> None:
    with api_on(store_url) as before:
        open_worked_example(before)
        voucher_id = issue(before)
        path = f"/v1/vouchers/{voucher_id}/revoke"
        first = before.post(path, {"reason": "withdrawn"}, before.tokens["program_officer"], "k")
        assert first.status_code == 200, first.text
        again = before.post(path, {"reason": "withdrawn"}, before.tokens["program_officer"], "k")
        assert (again.status_code, again.text) == (200, first.text)
        tokens = before.tokens

    with api_on(store_url) as after:  # the server restarted: nothing of it is in memory
        length = after.log_length()
        retry = after.post(path, {"reason": "withdrawn"}, tokens["program_officer"], "k")
        assert (retry.status_code, retry.text) == (200, first.text)
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert after.log_length() == length


def test_a_keyed_redemption_that_used_the_voucher_up_replays_on_another_worker(
    store_url: str,
) -> None:
    with api_on(store_url) as one, api_on(store_url) as other:
        open_worked_example(one)
        voucher_id = issue(one, face_value_fen=900_000)
        body = redemption_body(voucher_id)
        first = one.post("/v1/redemptions", body, one.tokens["provider"], "redeem-1")
        assert first.status_code == 201 and first.json["voucher_remaining_fen"] == 0
        for api in (other, one, other):
            again = api.post("/v1/redemptions", body, one.tokens["provider"], "redeem-1")
            assert (again.status_code, again.text) == (201, first.text)
        revoke = f"/v1/vouchers/{issue(one)}/revoke"
        answers = [
            api.post(revoke, {"reason": "twice"}, one.tokens["program_officer"], "rv")
            for api in (one, other) * 6
        ]
        assert {(a.status_code, a.text) for a in answers} == {(200, answers[0].text)}


def test_a_keyed_business_refusal_is_stored_once_and_replayed(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    body = redemption_body(voucher_id)
    assert api.post("/v1/redemptions", body, api.tokens["provider"]).status_code == 201
    duplicate = redemption_body(voucher_id, invoice_no="INV-OTHER")
    refusals_before = events_of(api, REFUSED_TOPIC)

    answers = [
        api.post("/v1/redemptions", duplicate, api.tokens["provider"], "dup-1") for _ in range(3)
    ]

    for answer in answers:
        problem(answer, 409, "duplicate-claim")
        assert answer.text == answers[0].text
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    assert events_of(api, REFUSED_TOPIC) == refusals_before + 1


def test_a_validation_error_is_not_stored_under_its_key(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    tomorrow = redemption_body(voucher_id, service_date="2026-04-02")  # after "today"
    problem(
        api.post("/v1/redemptions", tomorrow, api.tokens["provider"], "fix-me"),
        422,
        "validation-error",
    )
    fixed = api.post(
        "/v1/redemptions", redemption_body(voucher_id), api.tokens["provider"], "fix-me"
    )
    assert fixed.status_code == 201, fixed.text


# ---- 4. one contract is one claim, whatever the case of its number ------------------------------


def test_a_contract_claimed_again_in_another_case_is_a_duplicate(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    first = api.post(
        "/v1/redemptions",
        redemption_body(voucher_id, "CASE-1", invoice_no="CASEINV-1", contract_amount_fen=1000),
        api.tokens["provider"],
    )
    assert first.status_code == 201, first.text
    assert (first.json["contract_no"], first.json["invoice_no"]) == ("CASE-1", "CASEINV-1")
    for contract_no, invoice_no in (
        ("case-1", "INV-A"),
        ("Case-1", "INV-B"),
        ("OTHER-1", "caseinv-1"),
        ("OTHER-2", "CaseInv-1"),
    ):
        body = redemption_body(voucher_id, contract_no, invoice_no=invoice_no)
        problem(api.post("/v1/redemptions", body, api.tokens["provider"]), 409, "duplicate-claim")
    stored = api.get(f"/v1/redemptions/{first.json['id']}", api.tokens["auditor"]).json
    assert stored["contract_no"] == "CASE-1"  # kept as sent


def test_look_alike_contract_numbers_are_still_refused_as_invalid(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)
    for look_alike in ("ＣＡＳＥ-1", "CASE-1\u200b", "CASE\u20111", "ÇASE-1"):
        body = redemption_body(voucher_id, look_alike)
        problem(api.post("/v1/redemptions", body, api.tokens["provider"]), 422, "validation-error")


# ---- 5. principals: list, revoke, rotate; provider keys: rotate ---------------------------------


def test_an_admin_lists_principals_without_their_tokens(api: Api) -> None:
    open_worked_example(api)
    page = api.get("/v1/principals").json
    roles = [p["role"] for p in page["items"]]
    assert {"program_officer", "provider", "bank", "treasury", "auditor", "inspector"} <= set(roles)
    assert all("token" not in p and p["revoked"] is False for p in page["items"])
    assert all(api.tokens[r] not in str(page) for r in ("auditor", "provider"))
    first = api.get("/v1/principals", limit=2).json
    rest = api.get("/v1/principals", after=first["next_after"], limit=500).json
    assert [p["id"] for p in first["items"] + rest["items"]] == [p["id"] for p in page["items"]]
    problem(api.get("/v1/principals", api.tokens["auditor"]), 403, "forbidden")


def auditor_id(api: Api) -> str:
    for p in api.get("/v1/principals", limit=500).json["items"]:
        if p["name"] == "auditor user":
            return str(p["id"])
    raise AssertionError("no auditor")


def test_a_revoked_token_is_refused_on_every_worker_within_a_second(store_url: str) -> None:
    with api_on(store_url) as one, api_on(store_url) as other:
        open_worked_example(one)
        token = one.tokens["auditor"]
        assert other.get("/v1/audit/public-key", token).status_code == 200  # cached there now
        victim = auditor_id(one)

        revoked = one.post(f"/v1/principals/{victim}/revoke", {"reason": "token leaked"})

        assert revoked.status_code == 200 and revoked.json["revoked"] is True
        problem(one.get("/v1/audit/public-key", token), 401, "unauthorized")
        deadline = time.monotonic() + 1.0
        while other.get("/v1/audit/public-key", token).status_code != 401:
            assert time.monotonic() < deadline, "the other worker still accepts a revoked token"
            time.sleep(0.05)
        listed = {p["id"]: p for p in one.get("/v1/principals", limit=500).json["items"]}
        assert listed[victim]["revoked"] is True
        problem(one.post(f"/v1/principals/{victim}/rotate", {}), 409, "invalid-state")
        actions = one.get("/v1/audit/inspections/actions", one.tokens["inspector"]).json["rows"]
        assert any(
            a["kind"] == "revoke-principal" and a["reason"] == "token leaked" for a in actions
        )


def test_a_rotated_token_replaces_the_old_one_on_every_worker(store_url: str) -> None:
    with api_on(store_url) as one, api_on(store_url) as other:
        open_worked_example(one)
        old = one.tokens["auditor"]
        assert other.get("/v1/audit/public-key", old).status_code == 200
        victim = auditor_id(one)

        rotated = one.post(f"/v1/principals/{victim}/rotate", {}, key="rot-1")

        assert rotated.status_code == 200, rotated.text
        new = rotated.json["token"]
        assert new and new != old and rotated.json["id"] == victim
        assert other.get("/v1/audit/public-key", new).status_code == 200
        deadline = time.monotonic() + 1.0
        while other.get("/v1/audit/public-key", old).status_code != 401:
            assert time.monotonic() < deadline, "the old token still works on the other worker"
            time.sleep(0.05)
        problem(one.get("/v1/audit/public-key", old), 401, "unauthorized")
        replay = one.post(f"/v1/principals/{victim}/rotate", {}, key="rot-1")
        assert replay.json["token"] is None  # a token is never stored, not even under a key
        assert other.get("/v1/audit/public-key", new).status_code == 200


def test_a_provider_rotates_its_key_and_every_claim_stays_verifiable_with_its_own(
    api: Api,
) -> None:
    open_worked_example(api)
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = {"id": SIGNING_PROVIDER, "name": "Signing lab", "kind": "provider"}
    assert (
        api.post("/v1/institutions", {**body, "public_key_pem": public_pem(old_key)}).status_code
        == 201
    )
    token = api.principal("provider", SIGNING_PROVIDER)
    voucher_id = issue(api)
    before = redemption_body(voucher_id, "K-1", contract_amount_fen=1000)
    signed_old = api.post("/v1/redemptions", {**before, "signature": sign(old_key, before)}, token)
    assert signed_old.status_code == 201, signed_old.text

    rotated = api.post(
        f"/v1/institutions/{SIGNING_PROVIDER}/keys",
        {"public_key_pem": public_pem(new_key), "reason": "old key leaked"},
        token,
    )

    assert rotated.status_code == 200, rotated.text
    assert rotated.json["public_key_pem"] == public_pem(new_key)
    assert [k["public_key_pem"] for k in rotated.json["public_keys"]] == [
        public_pem(old_key),
        public_pem(new_key),
    ]
    after = redemption_body(voucher_id, "K-2", contract_amount_fen=1000)
    problem(
        api.post("/v1/redemptions", {**after, "signature": sign(old_key, after)}, token),
        422,
        "invalid-signature",
    )
    signed_new = api.post("/v1/redemptions", {**after, "signature": sign(new_key, after)}, token)
    assert signed_new.status_code == 201, signed_new.text
    keys = {k["sha256"]: k["public_key_pem"] for k in rotated.json["public_keys"]}
    for answer, key in ((signed_old, old_key), (signed_new, new_key)):
        stored = api.get(f"/v1/redemptions/{answer.json['id']}", api.tokens["auditor"]).json
        pem = keys[stored["public_key_sha256"]]
        assert pem == public_pem(key)
        public = load_pem_public_key(pem.encode())
        public.verify(  # type: ignore[union-attr]
            base64.b64decode(stored["signature"]), stored["signed_payload"].encode()
        )
    other = api.post(
        f"/v1/institutions/{PROVIDER}/keys",
        {"public_key_pem": public_pem(new_key), "reason": "not mine"},
        token,
    )
    problem(other, 404, "not-found")


def test_registering_an_institution_again_with_other_attributes_is_already_exists(api: Api) -> None:
    body = {"id": PROVIDER, "name": "Lab", "kind": "provider", "bank_account": "6222 0001"}
    assert api.post("/v1/institutions", body).status_code == 201
    assert api.post("/v1/institutions", body).status_code == 201  # the same again: nothing new
    length = api.log_length()
    moved = api.post("/v1/institutions", {**body, "bank_account": "6222 9999"})
    detail = problem(moved, 409, "already-exists")["detail"]
    assert "bank_account" in detail
    assert api.log_length() == length
    changed = api.post(
        f"/v1/institutions/{PROVIDER}/payment-details",
        {"bank_account": "6222 9999", "contact": "+86 635 000 0000", "reason": "bank changed"},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json["bank_account"], changed.json["contact"]) == (
        "6222 9999",
        "+86 635 000 0000",
    )
    assert api.log_length() == length + 1


# ---- 6. bad input that got through or got a 500 ------------------------------------------------


def pem_of(key: Any) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP256K1()),
    ],
    ids=["rsa", "p-256", "secp256k1"],
)
def test_only_ed25519_public_keys_are_accepted(memory_api: Api, make_key: Any) -> None:
    body = {"id": PROVIDER, "name": "Lab", "kind": "provider", "public_key_pem": pem_of(make_key())}
    problem(memory_api.post("/v1/institutions", body), 422, "validation-error")


# Keys cryptography cannot load (it raises UnsupportedAlgorithm, which was a 500): an EC key on
# the SM2 curve (GB/T 32918, OID 1.2.156.10197.1.301) and a GOST R 34.10-2012 key.
SM2_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEAQIDBAUGBwgJCgsMDQ4PEBESExQV\n"
    "FhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QA==\n"
    "-----END PUBLIC KEY-----\n"
)
GOST_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MF4wFwYIKoUDBwEBAQEwCwYJKoUDBwECAQEBA0MABEAAAAAAAAAAAAAAAAAAAAAA\n"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "-----END PUBLIC KEY-----\n"
)


@pytest.mark.parametrize("pem", [SM2_KEY, GOST_KEY, "not a key", "-----BEGIN PUBLIC KEY-----"])
def test_a_public_key_of_an_unknown_algorithm_or_curve_is_a_validation_error(
    memory_api: Api, pem: str
) -> None:
    body = {"id": PROVIDER, "name": "Lab", "kind": "provider", "public_key_pem": pem}
    problem(memory_api.post("/v1/institutions", body), 422, "validation-error")
    assert memory_api.post("/v1/institutions", {**body, "public_key_pem": None}).status_code == 201
    rotate = {"public_key_pem": pem, "reason": "new key"}
    problem(memory_api.post(f"/v1/institutions/{PROVIDER}/keys", rotate), 422, "validation-error")


def test_an_unsigned_request_of_a_keyed_provider_stores_nothing_even_for_its_own_voucher(
    api: Api,
) -> None:
    open_worked_example(api)
    key = Ed25519PrivateKey.generate()
    body = {"id": SIGNING_PROVIDER, "name": "Signing lab", "kind": "provider"}
    assert (
        api.post("/v1/institutions", {**body, "public_key_pem": public_pem(key)}).status_code == 201
    )
    token = api.principal("provider", SIGNING_PROVIDER)
    own = issue(api, holder=SIGNING_PROVIDER)
    length = api.log_length()
    for signature in (None, "AAAA", sign(Ed25519PrivateKey.generate(), redemption_body(own))):
        request = redemption_body(own)
        if signature is not None:
            request["signature"] = signature
        problem(api.post("/v1/redemptions", request, token), 422, "invalid-signature")
    assert api.log_length() == length  # no RefusedRedemption as evidence against it
    signed = redemption_body(own)
    problem(
        api.post("/v1/redemptions", {**signed, "signature": sign(key, signed)}, token),
        422,
        "self-dealing",
    )
    assert events_of(api, REFUSED_TOPIC) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Lab \u202eevil",
        "Lab \u2066x\u2069",
        "Lab\u200b",
        "Lab\ufeff",
        "Lab \x85",
        "Lab\u2028two",
        "Lab\u2029",
        "Lab\u00ad",
        "\u200e",
    ],
)
def test_invisible_and_reordering_characters_are_refused_in_names_and_references(
    memory_api: Api, text: str
) -> None:
    length = memory_api.log_length()
    body = {"id": PROVIDER, "name": text, "kind": "provider"}
    problem(memory_api.post("/v1/institutions", body), 422, "validation-error")
    source = {
        "id": "s-1",
        "name": "Source",
        "level": "city",
        "fiscal_year": 2026,
        "appropriation_fen": 1,
        "document_ref": f"doc {text}",
    }
    problem(memory_api.post("/v1/funding-sources", source), 422, "validation-error")
    assert memory_api.log_length() == length


def test_plain_chinese_names_and_references_are_accepted(memory_api: Api) -> None:
    body = {"id": PROVIDER, "name": "聊城检验检测中心（第二分所）", "kind": "provider"}
    assert memory_api.post("/v1/institutions", body).status_code == 201


def test_service_dates_are_refused_in_the_future_and_before_issue_expiry_first(api: Api) -> None:
    open_worked_example(api)
    voucher_id = issue(api)  # issued "today", 2026-04-01, valid until 2026-12-31
    token = api.tokens["provider"]
    length = api.log_length()
    for service_date in ("2026-04-02", "2026-03-31"):
        body = redemption_body(voucher_id, service_date=service_date)
        problem(api.post("/v1/redemptions", body, token), 422, "validation-error")
    expired = redemption_body(voucher_id, service_date="2027-01-01")
    problem(api.post("/v1/redemptions", expired, token), 422, "voucher-expired")
    assert api.log_length() == length


def test_a_provider_learns_nothing_from_404_or_403(api: Api) -> None:
    open_worked_example(api)
    redeemed = issue(api)
    assert (
        api.post("/v1/redemptions", redemption_body(redeemed), api.tokens["provider"]).status_code
        == 201
    )
    theirs = api.get(f"/v1/vouchers/{redeemed}", api.tokens["provider_2"])
    nobodys = api.get("/v1/vouchers/00000000-0000-4000-8000-000000000000", api.tokens["provider_2"])
    problem(theirs, 404, "not-found")
    problem(nobodys, 404, "not-found")
