"""Driving the HTTP API in tests: a falcon TestClient over a real ledger, with helpers that
speak only the public contract (API_CONTRACT.md §4)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import falcon.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.app import LedgerApp
from tests.conftest import BANK, ENTERPRISE, ENTERPRISE_2, PROVIDER, PROVIDER_2

ADMIN_TOKEN = "test-admin-token-" + "x" * 24
ROLES = ("admin", "program_officer", "provider", "bank", "treasury", "auditor", "inspector")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: Ed25519PrivateKey, body: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(canonical(body))).decode()


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class Api:
    app: LedgerApp
    client: falcon.testing.TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def post(
        self, path: str, body: Any, token: str | None = None, key: str | None = None
    ) -> falcon.testing.Result:
        headers = auth(token or ADMIN_TOKEN)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.simulate_post(path, json=body, headers=headers)

    def get(self, path: str, token: str | None = None, **params: Any) -> falcon.testing.Result:
        return self.client.simulate_get(path, headers=auth(token or ADMIN_TOKEN), params=params)

    def principal(self, role: str, institution_id: str | None = None) -> str:
        body: dict[str, Any] = {"name": f"{role} user", "role": role}
        if institution_id is not None:
            body["institution_id"] = institution_id
        result = self.post("/v1/principals", body)
        assert result.status_code == 201, result.text
        return str(result.json["token"])

    def log_length(self) -> int:
        return self.app.ledger.recorder.max_notification_id() or 0


WORKED_SOURCES = (
    {
        "id": "province-2026",
        "name": "Province",
        "level": "province",
        "fiscal_year": 2026,
        "appropriation_fen": 100_000_000,
        "document_ref": "鲁科字〔2026〕1号",
    },
    {
        "id": "city-2026",
        "name": "City",
        "level": "city",
        "fiscal_year": 2026,
        "appropriation_fen": 50_000_000,
        "document_ref": "聊政字〔2020〕15号",
    },
)
WORKED_PROGRAM = {
    "id": "innovation-2026",
    "name": "Innovation vouchers 2026",
    "fiscal_year": 2026,
    "shares": [
        {"source_id": "province-2026", "share_bp": 6000},
        {"source_id": "city-2026", "share_bp": 3000},
    ],
    "max_face_value_fen": 5_000_000,
    "provider_bonus_rate_bp": 500,
    "provider_bonus_source_id": "city-2026",
    "provider_annual_cap_fen": 50_000_000,
    "enterprise_annual_cap_fen": 10_000_000,
}


def open_worked_example(api: Api) -> Api:
    """Sources, programme, institutions and one principal per role, all over HTTP."""
    for source in WORKED_SOURCES:
        assert api.post("/v1/funding-sources", source).status_code == 201
    for uscc, kind in (
        (ENTERPRISE, "enterprise"),
        (ENTERPRISE_2, "enterprise"),
        (PROVIDER, "provider"),
        (PROVIDER_2, "provider"),
        (BANK, "bank"),
    ):
        body = {"id": uscc, "name": f"{kind} {uscc[-4:]}", "kind": kind}
        assert api.post("/v1/institutions", body).status_code == 201
    api.tokens = {role: api.principal(role) for role in ROLES if role not in ("provider", "bank")}
    api.tokens["provider"] = api.principal("provider", PROVIDER)
    api.tokens["bank"] = api.principal("bank", BANK)
    api.tokens["provider_2"] = api.principal("provider", PROVIDER_2)
    result = api.post("/v1/programs", WORKED_PROGRAM, api.tokens["program_officer"])
    assert result.status_code == 201, result.text
    return api


def issue(api: Api, face_value_fen: int = 2_000_000, holder: str = ENTERPRISE) -> str:
    body = {
        "program_id": "innovation-2026",
        "holder_id": holder,
        "face_value_fen": face_value_fen,
        "valid_until": "2026-12-31",
    }
    result = api.post("/v1/vouchers", body, api.tokens["program_officer"])
    assert result.status_code == 201, result.text
    return str(result.json["id"])


def redemption_body(voucher_id: str, contract_no: str = "C-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "voucher_id": voucher_id,
        "contract_no": contract_no,
        "invoice_no": f"INV-{contract_no}",
        "service_category": "testing",
        "contract_amount_fen": 1_000_000,
        "service_date": "2026-04-01",
    }
    body.update(overrides)
    return body
