"""What every locust user class here does with an answer: anything but the status it expected is
a failure named by status and problem slug (``409 duplicate-claim``), counted, and a few kept
as samples (request id, body, answer) to find in the server log."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

OUTCOMES: Counter[str] = Counter()  # "409 duplicate-claim" -> count, failures only
SAMPLES: list[dict[str, Any]] = []
MAX_SAMPLES = 20
BODY_SAMPLE_CHARS = 1000


def slug_of(response: Any) -> str:
    """The problem slug: the last segment of ``type``, or a stand-in for a non-problem body."""
    if response.status_code == 0:
        return "connection-error"
    try:
        body = json.loads(response.text or "")
    except ValueError:
        return "not-json"
    kind = body.get("type") if isinstance(body, dict) else None
    return str(kind).rsplit("/", 1)[-1] if kind else "no-type"


def outcome_of(response: Any) -> str:
    """``"<status> <slug>"``: how a failure is named in the counts and in locust's errors."""
    return f"{response.status_code} {slug_of(response)}"


def fail(response: Any, outcome: str, request: dict[str, Any] | None = None) -> None:
    """Mark ``response`` (caught with ``catch_response=True``) failed as ``outcome``."""
    OUTCOMES[outcome] += 1
    if len(SAMPLES) < MAX_SAMPLES:
        SAMPLES.append(
            {
                "outcome": outcome,
                "url": str(response.url),
                "request": request,
                "response": (response.text or "")[:BODY_SAMPLE_CHARS],
            }
        )
    response.failure(outcome)


def check(response: Any, expected: int, request: dict[str, Any] | None = None) -> bool:
    """Mark anything but ``expected`` as a failure named by status and slug, and count it.
    True when the answer was the expected one."""
    if response.status_code == expected:
        response.success()
        return True
    fail(response, outcome_of(response), request)
    return False


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}
