"""Schemathesis against the OpenAPI document the app serves (/v1/openapi.json), in-process: for
every operation, generated requests (valid and invalid) must never get a 5xx, and every answer
must be documented there: its status code, its content type and its body's schema.

Each operation is called with the token of a role the table (api.routes) allows, so requests get
past authorisation, on a fresh in-memory ledger holding the worked example. Generated ids rarely
name anything, so each case is sent a second time with the path's id and the body's references
replaced by real ones: that reaches the 2xx answers, whose bodies are the ones worth checking.

Bounded and reproducible: a fixed seed, derandomised, few examples per operation."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.routes import BY_ROUTE, OPERATIONS, Operation
from ledger.settings import Settings
from ledger.uscc import ALPHABET, make_uscc
from tests.api_support import ADMIN_TOKEN, WORKED_SOURCES, Api, auth, redemption_body
from tests.conftest import ENTERPRISE
from tests.test_api_roles import PATH_IDS, Scene, open_scene

SEED = 20260301
MAX_EXAMPLES = 20
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            # The bearer token is ours to send (a role the table allows), never generated.
            "with-security-parameters": False,
        },
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Preferred caller of an operation among the roles it allows: a non-provider where possible, so
# that own_only operations are not refused for a generated id the provider does not own.
PREFERENCE = ("admin", "program_officer", "inspector", "auditor", "treasury", "provider", "bank")


def _load_schema() -> Any:
    """The document as the app serves it. This app only serves the document: the tests send each
    request to the app of their own fresh ledger."""
    app = create_app(Settings(database_url="memory://", admin_token=ADMIN_TOKEN))
    try:
        return schemathesis.openapi.from_wsgi("/v1/openapi.json", app, config=CONFIG)
    finally:
        app.close()


SCHEMA = _load_schema()


def operation_of(case: Any) -> Operation:
    return BY_ROUTE[(case.operation.method.upper(), case.operation.path)]


def caller_headers(op: Operation, scene: Scene) -> dict[str, str]:
    if op.public:
        return {}
    role = next(role for role in PREFERENCE if role in op.roles)
    return auth(scene.api.tokens[role])


def grounded_body(body: Any, scene: Scene) -> Any:
    """``body`` with its references to other resources replaced by ones that exist."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    real = {
        "voucher_id": scene.fresh_voucher,
        "program_id": "innovation-2026",
        "holder_id": ENTERPRISE,
        "provider_bonus_source_id": "city-2026",
        "fiscal_year": 2026,
        "valid_until": "2026-12-31",
        "service_date": "2026-04-01",
    }
    for key, value in real.items():
        if key in out:
            out[key] = value
    if isinstance(out.get("shares"), list):
        sources = ("province-2026", "city-2026")
        out["shares"] = [
            {**share, "source_id": sources[i % 2]} if isinstance(share, dict) else share
            for i, share in enumerate(out["shares"])
        ]
    uscc = out.get("id")
    if isinstance(uscc, str) and len(uscc) == 18 and all(c in ALPHABET for c in uscc):
        out["id"] = make_uscc(uscc[:17])  # the right check character
    return out


def grounded(case: Any, scene: Scene) -> Any:
    op = operation_of(case)
    path_parameters = dict(case.path_parameters or {})
    if "id" in path_parameters:
        path_parameters["id"] = PATH_IDS[op.path](scene)
    kwargs: dict[str, Any] = {
        "path_parameters": path_parameters,
        "query": case.query,
        # A generated Idempotency-Key is mostly reused with another body: leave it out here.
        "headers": {k: v for k, v in (case.headers or {}).items() if k != "Idempotency-Key"},
        "media_type": case.media_type,
    }
    if op.request is not None:
        kwargs["body"] = grounded_body(case.body, scene)
    return case.operation.Case(**kwargs)


@pytest.fixture
def scene(memory_api: Api) -> Scene:
    """One fresh ledger per operation, shared by that operation's generated examples."""
    return open_scene(memory_api)


def test_schemathesis_sees_every_operation_but_the_document_itself() -> None:
    seen = {(op.ok().method.upper(), op.ok().path) for op in SCHEMA.get_all_operations()}
    assert seen == {(op.method, op.path) for op in OPERATIONS} - {("GET", "/v1/openapi.json")}


@SCHEMA.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_every_answer_is_documented_and_none_is_a_server_error(case: Any, scene: Scene) -> None:
    op = operation_of(case)
    headers = caller_headers(op, scene)
    case.call_and_validate(app=scene.api.app, headers=headers, checks=CHECKS)
    if "{id}" in op.path or op.request is not None:
        grounded(case, scene).call_and_validate(app=scene.api.app, headers=headers, checks=CHECKS)


AS_OF_OPS = [op for op in OPERATIONS if any(q.name == "as_of" for q in op.queries)]
# Valid RFC 3339 instants and dates at the edges of what Python's datetime can hold.
EDGE_AS_OF = (
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
)


@pytest.mark.parametrize("as_of", EDGE_AS_OF)
@pytest.mark.parametrize("op", [pytest.param(op, id=op.operation_id) for op in AS_OF_OPS])
def test_an_as_of_at_the_edge_of_the_calendar_is_answered_as_documented(
    scene: Scene, op: Operation, as_of: str
) -> None:
    case = SCHEMA[op.path][op.method].Case(
        path_parameters={"id": PATH_IDS[op.path](scene)}, query={"as_of": as_of}
    )
    case.call_and_validate(app=scene.api.app, headers=caller_headers(op, scene), checks=CHECKS)


@pytest.mark.parametrize(
    ("path", "role", "body"),
    [
        pytest.param(
            "/v1/redemptions",
            "provider",
            {"contract_no": "C-1\n", "invoice_no": "INV-C-1\n"},
            id="contract_no",
        ),
        pytest.param("/v1/funding-sources", "admin", {"id": "province-2026\n"}, id="source_id"),
        pytest.param(
            "/v1/redemptions/{id}/claw-back", "inspector", {"reason_code": "x\n"}, id="code"
        ),
    ],
)
def test_a_pattern_ends_at_the_end_of_the_text_not_before_a_final_newline(
    scene: Scene, path: str, role: str, body: dict[str, Any]
) -> None:
    """JSON Schema's ``$`` is ECMA-262's; Python's would admit "C-1\\n", a contract number that the
    ledger takes for another than "C-1": a duplicate claim would slip through."""
    valid = {
        "/v1/redemptions": redemption_body(scene.redeemed_voucher),  # C-1, already claimed
        "/v1/funding-sources": dict(WORKED_SOURCES[0]),
        "/v1/redemptions/{id}/claw-back": {"reason_code": "x"},
    }[path]
    before = scene.api.log_length()
    result = scene.api.post(
        path.replace("{id}", scene.redemption), {**valid, **body}, scene.api.tokens[role]
    )
    assert result.status_code == 422, result.text
    assert result.json["type"].endswith("/validation-error")
    assert scene.api.log_length() == before
