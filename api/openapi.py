"""The OpenAPI 3.1 document, generated from api.routes and api.schemas (the same schemas that
validate requests)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from api.body import MAX_IDEMPOTENCY_KEY_LEN
from api.routes import OPERATIONS, Operation
from api.schemas import REQUESTS, RESPONSES

Doc = dict[str, Any]
_PROBLEM_STATUSES = {
    "404": "Unknown id",
    "409": "Business conflict (duplicate claim, invalid state, exists with other attributes)",
    "413": "Body too large",
    "415": "Body is not application/json",
    "422": "Invalid input or refused by a policy rule (see the problem's type)",
    "503": "Ledger busy (nothing was stored), or the views did not reach min_position: retry",
}


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> Doc:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _operation(op: Operation) -> Doc:
    params: list[Doc] = []
    for name in re.findall(r"{(\w+)}", op.path):
        schema: Doc = {"type": "integer", "minimum": 1} if name == "line" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": q.schema,
        }
        for q in op.queries
    ]
    if op.method == "POST":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key with the same body returns the first response again",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY_LEN,
                    "pattern": "^[ -~]+$",  # printable ASCII (api.body.idempotency_key)
                },
            }
        )
    if op.response is not None:
        content: Doc = {"application/json": {"schema": _ref(op.response)}}
    elif op.content_type == "application/json":
        content = {"application/json": {"schema": {"type": "object"}}}
    else:
        content = {op.content_type: {"schema": {"type": "string"}}}
    for other in (("text/csv",) if op.csv else ()) + op.other_content_types:
        content[other] = {"schema": {"type": "string"}}
    responses: Doc = {str(op.status): {"description": "Success", "content": content}}
    if not op.public:
        responses["401"] = _problem("Missing or unknown bearer token")
        responses["403"] = _problem("This role may not do this")
        responses.update({code: _problem(text) for code, text in _PROBLEM_STATUSES.items()})
    doc: Doc = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
        "security": [] if op.public else [{"bearer": []}],
        "x-roles": sorted(op.roles),
    }
    if op.request is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.request)}},
        }
    if op.upload:
        doc["requestBody"] = {
            "required": True,
            "content": {t: {"schema": {"type": "string"}} for t in op.upload},
        }
    return doc


@cache
def openapi_document() -> Doc:
    paths: Doc = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "voucher-ledger",
            "version": "1",
            "description": (
                "Event-sourced ledger for innovation vouchers (创新券) and public fund "
                "disbursement. Money is integer fen, rates basis points; errors are "
                "application/problem+json with a slug."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {**REQUESTS, **RESPONSES},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
