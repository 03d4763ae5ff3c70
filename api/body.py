"""Request bodies: bounded in size, parsed as strict JSON, validated against api.schemas."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import falcon
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError as JsonError
from jsonschema.exceptions import best_match

from api.problems import HTTPProblem
from api.schemas import REQUESTS
from ledger.errors import ValidationError

MAX_BODY_BYTES = 16 * 1024
MAX_IDEMPOTENCY_KEY_LEN = 200

# JSON Schema counts 1.0 as an integer; money must be an integer in the JSON text itself.
_STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: type(value) is int
)


@cache
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as JSON Schema means it (ECMA-262): a final ``$`` matches only at the very end.
    Python's ``$`` also matches before a final newline, which would admit "C-1\\n" as a contract
    number distinct from "C-1" and so slip a duplicate claim past the ledger."""
    trailing_backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    if pattern.endswith("$") and trailing_backslashes % 2 == 0:
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[JsonError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield JsonError(f"{instance!r} does not match {pattern!r}")


StrictValidator = validators.extend(
    Draft202012Validator, validators={"pattern": _pattern}, type_checker=_STRICT_TYPES
)
_VALIDATORS = {
    name: StrictValidator(schema, format_checker=FormatChecker())
    for name, schema in REQUESTS.items()
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json(req: falcon.Request) -> Any:
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise HTTPProblem(
            413, "payload-too-large", "Body too large", f"at most {MAX_BODY_BYTES} bytes"
        )
    mime = (req.content_type or "").split(";")[0].strip().lower()
    if mime != "application/json":
        raise HTTPProblem(
            415, "unsupported-media-type", "Unsupported media type", "send application/json"
        )
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPProblem(
            413, "payload-too-large", "Body too large", f"at most {MAX_BODY_BYTES} bytes"
        )
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ValidationError("body is not valid JSON") from None


def parse_body(req: falcon.Request, schema_name: str) -> dict[str, Any]:
    """The request's JSON body, valid against ``REQUESTS[schema_name]``; else ValidationError
    naming the first offending field. Parsed once per request (the stream is read once)."""
    parsed: dict[str, Any] | None = getattr(req.context, "body", None)
    if parsed is not None:
        return parsed
    body = read_json(req)
    error = best_match(_VALIDATORS[schema_name].iter_errors(body))
    if error is not None:
        where = "body" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        )
        raise ValidationError(f"{where}: {_short(error.message)}")
    assert isinstance(body, dict)
    req.context.body = body
    return body


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def canonical_json(body: dict[str, Any]) -> bytes:
    """API_CONTRACT.md §2: sorted keys, no whitespace, UTF-8 (what a provider signs)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_digest(req: falcon.Request, body: dict[str, Any]) -> str:
    """What an idempotency key binds to: method, path and the canonical body."""
    h = hashlib.sha256(f"{req.method} {req.path}\n".encode())
    h.update(canonical_json(body))
    return h.hexdigest()


def idempotency_key(req: falcon.Request) -> str | None:
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LEN or not key.isprintable() or not key.isascii():
        raise ValidationError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
        )
    return key
