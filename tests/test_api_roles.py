"""The role matrix (API_CONTRACT.md §2, §3, §4): every operation of ``api.routes.OPERATIONS``
against every role, no token and an unknown token, generated from that one table, on the
in-memory store. A refused request must store nothing; an allowed one must get past
authorisation and, with the sensible request built here, succeed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.routes import OPERATIONS, Operation
from ledger.principals import ROLES
from ledger.uscc import make_uscc
from tests.api_support import Api, auth, issue, open_worked_example, public_pem, redemption_body
from tests.conftest import BANK, ENTERPRISE, ENTERPRISE_2, PROVIDER, PROVIDER_2
from tests.test_api_reconciliation import camt053, upload

NO_TOKEN, UNKNOWN_TOKEN = "no token", "unknown token"
CALLERS = (*ROLES, NO_TOKEN, UNKNOWN_TOKEN)
NEW_ENTERPRISE = make_uscc("91371500MA3C00003")
PUBLIC_OPS = [op for op in OPERATIONS if op.public]
GUARDED_OPS = [op for op in OPERATIONS if not op.public]


@dataclass
class Scene:
    """The worked example plus one of everything a path can name, over HTTP."""

    api: Api
    redeemed_voucher: str  # redeemed by PROVIDER
    fresh_voucher: str  # active, never redeemed
    redemption: str  # by PROVIDER, of redeemed_voucher
    frozen: str = PROVIDER_2  # frozen by the inspector
    principals: list[str] = field(default_factory=list)  # ones an admin may revoke or rotate
    payout: str = ""  # of the province's subsidy to PROVIDER, by another treasury principal
    bank_payout: str = ""  # of a guarantee claim's compensation to BANK
    claim_approved: str = ""  # a guarantee claim of BANK's, approved
    claim_filed: str = ""  # another, filed only
    statement: str = ""  # its line 1 is unmatched: it paid the bank's payout, not naming it


def open_scene(api: Api) -> Scene:
    open_worked_example(api)
    redeemed = issue(api)
    result = api.post("/v1/redemptions", redemption_body(redeemed), api.tokens["provider"])
    assert result.status_code == 201, result.text
    fresh = issue(api, holder=ENTERPRISE_2)
    frozen = api.post(
        f"/v1/institutions/{PROVIDER_2}/freeze", {"reason": "audit"}, api.tokens["inspector"]
    )
    assert frozen.status_code == 200, frozen.text
    scene = Scene(api, redeemed, fresh, str(result.json["id"]))
    for n in range(2):  # for an admin to revoke or rotate
        made = api.post("/v1/principals", {"name": f"temporary {n}", "role": "auditor"})
        assert made.status_code == 201, made.text
        scene.principals.append(str(made.json["id"]))
    details = {"bank_account": "6217 0000 1111", "contact": None, "reason": "bank details"}
    assert api.post(f"/v1/institutions/{PROVIDER}/payment-details", details).status_code == 200
    other_clerk = api.principal("treasury")
    payout = api.post(
        "/v1/payouts", {"payee_id": PROVIDER, "source_id": "province-2026"}, other_clerk
    )
    assert payout.status_code == 201, payout.text
    scene.payout = str(payout.json["id"])
    open_guarantee_scene(api, scene, other_clerk)
    return scene


GUARANTEE_SOURCES = ("province-gf", "city-gf")


def open_guarantee_scene(api: Api, scene: Scene, clerk: str) -> None:
    """A pool, a loan of BANK's with an approved claim paid out of the city's source, and a
    second claim only filed."""
    for source_id in GUARANTEE_SOURCES:
        source = {
            "id": source_id,
            "name": source_id,
            "level": "guarantee_fund",
            "fiscal_year": 2026,
            "appropriation_fen": 10**9,
            "document_ref": "pool",
        }
        assert api.post("/v1/funding-sources", source).status_code == 201
    pool = {
        "id": "scene-pool",
        "name": "scene pool",
        "shares": [
            {"source_id": s, "share_bp": bp}
            for s, bp in zip(GUARANTEE_SOURCES, (1250, 8750), strict=True)
        ],
    }
    assert api.post("/v1/guarantee-pools", pool, api.tokens["program_officer"]).status_code == 201
    loan = {**BODIES["NewGuaranteeLoan"](scene), "id": "L-1"}
    assert api.post("/v1/guarantee-loans", loan, api.tokens["bank"]).status_code == 201
    claims = []
    for _ in range(2):
        claim = {"loan_id": "L-1", "loss_fen": 1_000_000, "default_date": "2026-03-01"}
        filed = api.post("/v1/guarantee-claims", claim, api.tokens["bank"])
        assert filed.status_code == 201, filed.text
        claims.append(str(filed.json["id"]))
    scene.claim_approved, scene.claim_filed = claims
    path = f"/v1/guarantee-claims/{scene.claim_approved}/approve"
    assert api.post(path, {}, api.tokens["program_officer"]).status_code == 200
    details = {"bank_account": "6222 0200", "contact": None, "reason": "bank details"}
    assert api.post(f"/v1/institutions/{BANK}/payment-details", details).status_code == 200
    payout = api.post("/v1/payouts", {"payee_id": BANK, "source_id": "city-gf"}, clerk)
    assert payout.status_code == 201, payout.text
    scene.bank_payout = str(payout.json["id"])
    approved = api.post(f"/v1/payouts/{scene.bank_payout}/approve", {}, api.tokens["treasury"])
    assert approved.status_code == 200, approved.text
    # A statement whose only line paid the bank's payout without naming it, into an account
    # the ledger does not know: unmatched, for treasury to match by hand.
    line = {"amount_fen": payout.json["amount_fen"], "account": "UNKNOWN-ACCOUNT"}
    imported = upload(api, camt053([line], "SCENE"))
    assert imported.status_code == 201 and imported.json["unmatched"] == 1, imported.text
    scene.statement = str(imported.json["id"])


# The id each path names: ids the "provider" principal may see, so that its own_only operations
# succeed too.
PATH_IDS: dict[str, Any] = {
    "/v1/funding-sources/{id}": lambda s: "province-2026",
    "/v1/programs/{id}": lambda s: "innovation-2026",
    "/v1/institutions/{id}": lambda s: PROVIDER,
    "/v1/institutions/{id}/balances": lambda s: PROVIDER,
    "/v1/institutions/{id}/freeze": lambda s: ENTERPRISE_2,
    "/v1/institutions/{id}/unfreeze": lambda s: s.frozen,
    "/v1/vouchers/{id}": lambda s: s.redeemed_voucher,
    "/v1/vouchers/{id}/revoke": lambda s: s.fresh_voucher,
    "/v1/redemptions/{id}": lambda s: s.redemption,
    "/v1/redemptions/{id}/claw-back": lambda s: s.redemption,
    "/v1/audit/proofs/{id}": lambda s: "1",
    "/v1/audit/trace/redemptions/{id}": lambda s: s.redemption,
    "/v1/audit/trace/funding-sources/{id}": lambda s: "province-2026",
    "/v1/audit/inspections/{id}": lambda s: "velocity",
    "/v1/principals/{id}/revoke": lambda s: s.principals[0],
    "/v1/principals/{id}/rotate": lambda s: s.principals[0],
    "/v1/institutions/{id}/keys": lambda s: PROVIDER,
    "/v1/institutions/{id}/payment-details": lambda s: ENTERPRISE_2,
    "/v1/payouts/{id}": lambda s: s.payout,
    "/v1/payouts/{id}/approve": lambda s: s.payout,
    "/v1/payouts/{id}/cancel": lambda s: s.payout,
    "/v1/guarantee-pools/{id}": lambda s: "scene-pool",
    "/v1/guarantee-claims/{id}": lambda s: s.claim_approved,
    "/v1/guarantee-claims/{id}/approve": lambda s: s.claim_filed,
    "/v1/guarantee-claims/{id}/reject": lambda s: s.claim_filed,
    "/v1/guarantee-claims/{id}/recoveries": lambda s: s.claim_approved,
    "/v1/statements/{id}": lambda s: s.statement,
    "/v1/statements/{id}/lines/{line}/confirm": lambda s: s.statement,
    "/v1/audit/trace/statements/{id}/lines/{line}": lambda s: s.statement,
}
# Where a role may only see its own, the id of one of its own.
PATH_IDS_BY_ROLE: dict[tuple[str, str], Any] = {
    ("/v1/payouts/{id}", "bank"): lambda s: s.bank_payout,
}

# A valid body for each request schema (api.schemas.REQUESTS), one that the ledger accepts.
BODIES: dict[str, Any] = {
    "NewPrincipal": lambda s: {"name": "another auditor", "role": "auditor"},
    "NewFundingSource": lambda s: {
        "id": "county-2026",
        "name": "County",
        "level": "county",
        "fiscal_year": 2026,
        "appropriation_fen": 10_000_000,
        "document_ref": "县科字〔2026〕3号",
    },
    "NewProgram": lambda s: {
        "id": "second-2026",
        "name": "Second programme",
        "fiscal_year": 2026,
        "shares": [{"source_id": "province-2026", "share_bp": 5000}],
        "max_face_value_fen": 1_000_000,
        "provider_bonus_rate_bp": 0,
        "provider_bonus_source_id": "province-2026",
        "provider_annual_cap_fen": 10_000_000,
        "enterprise_annual_cap_fen": 1_000_000,
    },
    "NewInstitution": lambda s: {"id": NEW_ENTERPRISE, "name": "New firm", "kind": "enterprise"},
    "NewVoucher": lambda s: {
        "program_id": "innovation-2026",
        "holder_id": ENTERPRISE_2,
        "face_value_fen": 1_000_000,
        "valid_until": "2026-12-31",
    },
    "NewRedemption": lambda s: redemption_body(s.fresh_voucher, "C-2"),
    "Reason": lambda s: {"reason": "role matrix"},
    "Clawback": lambda s: {"reason_code": "duplicate-invoice"},
    "Empty": lambda s: {},
    "ConfirmLine": lambda s: {"payout_ids": [s.bank_payout]},
    # The city's part of the scene's redemption: the province's is in the scene's payout.
    "NewPayout": lambda s: {"payee_id": PROVIDER, "source_id": "city-2026"},
    "NewGuaranteePool": lambda s: {
        "id": "another-pool",
        "name": "another pool",
        "shares": [{"source_id": "city-gf", "share_bp": 10_000}],
        "rule": "risk-compensation@2",
        "bank_annual_cap_fen": 100_000_000,
    },
    "NewGuaranteeLoan": lambda s: {
        "id": "L-2",
        "pool_id": "scene-pool",
        "borrower_id": ENTERPRISE,
        "principal_fen": 50_000_000,
        "start_date": "2025-06-01",
        "term_months": 24,
        "first_loan": True,
        "credit_only": False,
        "ip_pledge": False,
        "credit_share_bp": 3000,
    },
    "NewGuaranteeClaim": lambda s: {
        "loan_id": "L-1",
        "loss_fen": 1_000,
        "default_date": "2026-03-01",
    },
    "NewRecovery": lambda s: {"amount_fen": 1_000, "recovered_on": "2026-03-15"},
    "NewExemption": lambda s: {
        "claim_id": s.claim_approved,
        "decision_ref": "纪容〔2026〕1号",
        "decided_on": "2026-03-20",
        "reason": "compliant",
    },
    # A fresh key each time: registering the key in force again is refused (invalid-state).
    "NewPublicKey": lambda s: {
        "public_key_pem": public_pem(Ed25519PrivateKey.generate()),
        "reason": "role matrix",
    },
    "PaymentDetails": lambda s: {
        "bank_account": f"6222 0000 {len(s.principals)} {uuid.uuid4().hex[:6]}",
        "contact": None,
        "reason": "role matrix",
    },
}


# A value for each required query parameter.
QUERIES: dict[str, str] = {"fiscal_year": "2026"}


def path_of(op: Operation, scene: Scene, caller: str = "") -> str:
    if "{id}" not in op.path:
        return op.path
    ids = PATH_IDS_BY_ROLE.get((op.path, caller), PATH_IDS[op.path])
    return op.path.replace("{id}", ids(scene)).replace("{line}", "1")


def send(scene: Scene, op: Operation, caller: str) -> Any:
    """``op`` with a sensible request, as ``caller`` (a role, NO_TOKEN or UNKNOWN_TOKEN)."""
    if caller == NO_TOKEN:
        headers: dict[str, str] = {}
    elif caller == UNKNOWN_TOKEN:
        headers = auth("not-a-token-anyone-was-given-" + "y" * 20)
    else:
        headers = auth(scene.api.tokens[caller])
    params = {q.name: QUERIES[q.name] for q in op.queries if q.required}
    path = path_of(op, scene, caller)
    if op.upload:  # a file, not JSON: a statement no one imported before
        data = camt053([{"amount_fen": 1, "account": "X"}], f"ROLE-{uuid.uuid4().hex}")
        headers["Content-Type"] = "application/xml"
        return scene.api.client.simulate_request(op.method, path, headers=headers, body=data)
    body = BODIES[op.request](scene) if op.request is not None else None
    return scene.api.client.simulate_request(
        op.method, path, headers=headers, params=params, json=body
    )


def label(op: Operation, caller: str | None = None) -> str:
    return op.operation_id if caller is None else f"{op.operation_id}-{caller.replace(' ', '_')}"


def assert_problem(result: Any, status: int, slug: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/problem+json")
    assert result.json["type"].endswith(f"/{slug}")
    assert result.json["status"] == status


@pytest.fixture
def scene(memory_api: Api) -> Scene:
    return open_scene(memory_api)


def test_every_operation_in_the_table_has_a_request_to_send() -> None:
    assert {op.path for op in OPERATIONS if "{line}" in op.path} <= set(PATH_IDS)
    paths_with_ids = {op.path for op in OPERATIONS if "{id}" in op.path}
    assert paths_with_ids <= set(PATH_IDS)
    assert {op.request for op in OPERATIONS if op.request is not None} <= set(BODIES)
    assert {q.name for op in OPERATIONS for q in op.queries if q.required} <= set(QUERIES)
    assert GUARDED_OPS and PUBLIC_OPS
    assert set(ROLES) >= {role for op in OPERATIONS for role in op.roles}


@pytest.mark.parametrize(
    ("op", "caller"),
    [pytest.param(op, caller, id=label(op, caller)) for op in PUBLIC_OPS for caller in CALLERS],
)
def test_a_public_operation_answers_anyone_without_401_or_403(
    scene: Scene, op: Operation, caller: str
) -> None:
    result = send(scene, op, caller)
    assert result.status_code not in (401, 403), result.text
    assert result.status_code == op.status, result.text
    assert result.headers["Content-Type"].startswith(op.content_type)


@pytest.mark.parametrize("op", [pytest.param(op, id=label(op)) for op in GUARDED_OPS])
def test_a_guarded_operation_without_a_token_is_refused_with_401_and_changes_nothing(
    scene: Scene, op: Operation
) -> None:
    before = scene.api.log_length()
    result = send(scene, op, NO_TOKEN)
    assert_problem(result, 401, "unauthorized")
    assert result.headers["WWW-Authenticate"].startswith("Bearer")
    assert scene.api.log_length() == before


@pytest.mark.parametrize("op", [pytest.param(op, id=label(op)) for op in GUARDED_OPS])
def test_a_guarded_operation_with_an_unknown_token_is_refused_with_401_and_changes_nothing(
    scene: Scene, op: Operation
) -> None:
    before = scene.api.log_length()
    result = send(scene, op, UNKNOWN_TOKEN)
    assert_problem(result, 401, "unauthorized")
    assert scene.api.log_length() == before


@pytest.mark.parametrize(
    ("op", "role"),
    [
        pytest.param(op, role, id=label(op, role))
        for op in GUARDED_OPS
        for role in ROLES
        if role not in op.roles
    ],
)
def test_a_role_outside_the_table_is_refused_with_403_and_changes_nothing(
    scene: Scene, op: Operation, role: str
) -> None:
    before = scene.api.log_length()
    result = send(scene, op, role)
    assert_problem(result, 403, "forbidden")
    assert scene.api.log_length() == before


@pytest.mark.parametrize(
    ("op", "role"),
    [
        pytest.param(op, role, id=label(op, role))
        for op in GUARDED_OPS
        for role in ROLES
        if role in op.roles
    ],
)
def test_a_role_in_the_table_gets_past_authorisation_and_succeeds(
    scene: Scene, op: Operation, role: str
) -> None:
    before = scene.api.log_length()
    result = send(scene, op, role)
    assert result.status_code not in (401, 403), result.text
    assert result.status_code == op.status, result.text
    if op.method == "POST":
        assert scene.api.log_length() > before
        assert int(result.headers["X-Ledger-Position"]) == scene.api.log_length()
    else:
        assert scene.api.log_length() == before


def test_a_provider_cannot_read_another_providers_balances_or_institution(scene: Scene) -> None:
    """Another provider's is "not found", like what does not exist: a provider learns nothing
    of what exists."""
    api = scene.api
    for token, other in (
        (api.tokens["provider"], PROVIDER_2),
        (api.tokens["provider_2"], PROVIDER),
    ):
        balances = api.get(f"/v1/institutions/{other}/balances", token, fiscal_year=2026)
        assert_problem(balances, 404, "not-found")
        assert_problem(api.get(f"/v1/institutions/{other}", token), 404, "not-found")
        unknown = api.get(f"/v1/institutions/{NEW_ENTERPRISE}", token)
        assert_problem(unknown, 404, "not-found")
        # Word for word what an institution that does not exist gets.
        assert unknown.json["detail"] == f"institution {NEW_ENTERPRISE} not found"
        assert api.get(f"/v1/institutions/{other}", token).json["detail"] == (
            f"institution {other} not found"
        )
    own = api.get(f"/v1/institutions/{PROVIDER}/balances", api.tokens["provider"], fiscal_year=2026)
    assert own.status_code == 200, own.text
    assert own.json["redeemed_contract_fen"] == 1_000_000


def test_a_provider_cannot_read_an_enterprises_balances(scene: Scene) -> None:
    result = scene.api.get(
        f"/v1/institutions/{ENTERPRISE}/balances", scene.api.tokens["provider"], fiscal_year=2026
    )
    assert_problem(result, 404, "not-found")


def test_a_provider_reads_a_voucher_only_after_redeeming_it(scene: Scene) -> None:
    api = scene.api
    voucher = issue(api)
    path = f"/v1/vouchers/{voucher}"
    assert_problem(api.get(path, api.tokens["provider"]), 404, "not-found")
    redeemed = api.post("/v1/redemptions", redemption_body(voucher, "C-9"), api.tokens["provider"])
    assert redeemed.status_code == 201, redeemed.text
    after = api.get(path, api.tokens["provider"])
    assert after.status_code == 200, after.text
    assert after.json["id"] == voucher
    # Redeeming it did not open it to every provider.
    assert_problem(api.get(path, api.tokens["provider_2"]), 404, "not-found")


def test_a_provider_cannot_read_another_providers_redemption(scene: Scene) -> None:
    api = scene.api
    path = f"/v1/redemptions/{scene.redemption}"
    assert api.get(path, api.tokens["provider"]).status_code == 200
    assert_problem(api.get(path, api.tokens["provider_2"]), 404, "not-found")
