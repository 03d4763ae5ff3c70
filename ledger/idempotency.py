"""Idempotency keys: the first response to a keyed command, stored with the command's own events.

The record's id derives from (principal, key), so two requests racing with one key cannot both
record: the store refuses the second insert and the retry finds the first record and replays it.
That holds on every worker and after any restart: a writer that has not seen the record in its
cache runs the command, and storing its record collides with the stored one, so the writer runs
it again carefully, finds the record and replays it. Business refusals are stored and replayed
like successes (as payment APIs do): a keyed duplicate claim retried three times is one refusal.
Validation errors and unavailability are not stored: the same key may be tried again. Records
are never deleted, so a key is kept far longer than the 24 hours clients may rely on."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import (
    Busy,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    LedgerError,
    Refused,
    ValidationError,
)
from ledger.ids import named_id
from ledger.unit_of_work import Work

MAX_KEY_LEN = 200
# Refusals whose answer is not kept under the key: the request may be corrected or retried.
NOT_STORED = (ValidationError, IdempotencyKeyReused, Busy, DatabaseUnavailable)


class IdempotencyRecord(Aggregate):
    @staticmethod
    def create_id(scope: str, key: str) -> UUID:
        return named_id("idempotency", scope, key)

    @event("Recorded")
    def __init__(
        self, scope: str, key: str, request_sha256: str, status: int, body: str, actor: str
    ) -> None:
        self.scope = scope
        self.key = key
        self.request_sha256 = request_sha256
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Idempotency:
    """A command's idempotency key. ``render`` turns the command's result into the response to
    store (status, body), a ``Refused`` as well: the edge decides the wire format, the ledger
    stores it opaquely."""

    scope: str
    key: str
    request_sha256: str
    render: Callable[[Any], tuple[int, str]]


@dataclass(frozen=True)
class Replay:
    """The response first given under this key."""

    status: int
    body: str


def run_idempotent(
    work: Work, fn: Callable[[Work, Any], Any], command: Any, idem: Idempotency
) -> Any:
    """Run ``fn(work, command)`` once per key: a repeat returns the first response (Replay)."""
    record_id = IdempotencyRecord.create_id(idem.scope, idem.key)
    record = work.find(IdempotencyRecord, record_id, ask_store=work.careful)
    if record is not None:
        if not hmac.compare_digest(record.request_sha256, idem.request_sha256):
            raise IdempotencyKeyReused(
                f"idempotency key {idem.key!r} was used with another request"
            )
        return Replay(record.status, record.body)
    try:
        value = fn(work, command)
    except LedgerError as exc:
        if isinstance(exc, NOT_STORED) or work.command_events():
            raise
        value = Refused(exc)
    status, body = idem.render(value)
    work.add(
        IdempotencyRecord(
            scope=idem.scope,
            key=idem.key,
            request_sha256=idem.request_sha256,
            status=status,
            body=body,
            actor=getattr(command, "actor", idem.scope),
        )
    )
    return value
