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


# Once the text is strict UTF-8, a lone surrogate can only come from a \u escape. A pair (an
# emoji sent as "\ud83d\ude00") matches too: it is then checked, and let through.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json(req: falcon.Request) -> Any:
    """The body parsed as JSON: at most MAX_BODY_BYTES (413), ``application/json`` (415),
    strict UTF-8 whose text holds no lone surrogate (422)."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _too_large()
    mime = (req.content_type or "").split(";")[0].strip().lower()
    if mime != "application/json":
        raise HTTPProblem(
            415, "unsupported-media-type", "Unsupported media type", "send application/json"
        )
    raw = _read_raw(req, length)
    try:
        # Strict UTF-8 (RFC 8259 §8.1): json.loads(bytes) would decode with "surrogatepass"
        # and let the bytes ED A0 80 through as a lone surrogate.
        text = raw.decode("utf-8-sig")
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ValidationError("body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(body)
    return body


def _too_large(max_bytes: int = MAX_BODY_BYTES) -> HTTPProblem:
    return HTTPProblem(413, "payload-too-large", "Body too large", f"at most {max_bytes} bytes")


def read_file(req: falcon.Request, max_bytes: int) -> bytes:
    """A body that is a file (a bank statement), not JSON: at most ``max_bytes`` (413),
    chunked or not."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise _too_large(max_bytes)
    return _read_raw(req, length, max_bytes)


def _read_raw(req: falcon.Request, length: int | None, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """At most ``max_bytes`` of the body (413 beyond), with or without Content-Length.

    Falcon's ``bounded_stream`` reads nothing when there is no Content-Length, so a chunked
    body is read from ``req.stream``, where the server has already taken the chunks apart. A
    body with neither has no length (RFC 9112 §6.3) and is empty: its stream is not read,
    since reading it would wait for the client to close the connection."""
    if length is None and "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        stream = req.stream
    else:
        stream = req.bounded_stream
    try:
        raw: bytes = stream.read(max_bytes + 1)
    except TimeoutError:  # the server's: the body stalled (api.front.BODY_TIMEOUT_S)
        raise HTTPProblem(
            408, "request-timeout", "Request too slow", "the body stopped coming before its end"
        ) from None
    except Exception:  # the server's framing errors (a bad chunk size, a truncated chunk)
        raise HTTPProblem(
            400, "bad-request", "Malformed body", "the body's chunked framing is invalid"
        ) from None
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    return raw


def _refuse_lone_surrogates(body: Any) -> None:
    """ValidationError naming a key or text that holds a lone surrogate (JSON "\\ud800"):
    valid JSON, but not Unicode, so it can be neither stored, nor hashed, nor signed as UTF-8.
    A loop, not recursion: the body may nest as deep as the parser allowed."""
    pending: list[tuple[Any, tuple[Any, ...]]] = [(body, ())]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str) and not _is_unicode(value):
            raise ValidationError(f"{_path(where)}: text must be Unicode (a lone surrogate is not)")
        items = value.items() if isinstance(value, dict) else ()
        for key, item in enumerate(value) if isinstance(value, list) else items:
            if isinstance(key, str) and not _is_unicode(key):
                raise ValidationError(f"{_path(where)}: a key holds a lone surrogate")
            pending.append((item, (where, key)))  # a linked path: no string per item


def _path(where: tuple[Any, ...]) -> str:
    """``body.shares[0].source_id`` for the linked path ((((), "shares"), 0), "source_id")."""
    parts = []
    while where:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return _short("body" + "".join(reversed(parts)))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
