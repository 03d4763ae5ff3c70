"""One error tree for the ledger. Each error carries the slug of API_CONTRACT.md §2 and the
HTTP status that slug maps to, so the edge has exactly one place to translate them."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every business error: ``slug`` names it on the wire, ``http_status`` maps it."""

    slug = "ledger-error"
    http_status = 422
    title = "Ledger error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationError(LedgerError):
    slug = "validation-error"
    title = "Invalid input"


class NotFound(LedgerError):
    slug = "not-found"
    http_status = 404
    title = "Not found"


class AlreadyExists(LedgerError):
    slug = "already-exists"
    http_status = 409
    title = "Already exists with other attributes"


class InsufficientFunds(LedgerError):
    slug = "insufficient-funds"
    title = "Funding source cannot cover the reservation"


class VoucherExpired(LedgerError):
    slug = "voucher-expired"
    title = "Voucher expired"


class VoucherNotActive(LedgerError):
    slug = "voucher-not-active"
    title = "Voucher is not active"


class EnterpriseCapReached(LedgerError):
    slug = "enterprise-cap-reached"
    title = "Enterprise annual cap reached"


class DuplicateClaim(LedgerError):
    slug = "duplicate-claim"
    http_status = 409
    title = "Contract or invoice already claimed"


class SelfDealing(LedgerError):
    slug = "self-dealing"
    title = "Provider is the voucher holder"


class PayeeFrozen(LedgerError):
    slug = "payee-frozen"
    title = "Payee is frozen"


class IdempotencyKeyReused(LedgerError):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with another body"


class InvalidSignature(LedgerError):
    slug = "invalid-signature"
    title = "Missing or invalid signature"


class InvalidState(LedgerError):
    """A command that makes no sense in the aggregate's current state (e.g. clawing back twice)."""

    slug = "invalid-state"
    http_status = 409
    title = "Not allowed in the current state"


class Busy(LedgerError):
    """Concurrency retries ran out: the store is too contended. Nothing was stored; retry."""

    slug = "busy"
    http_status = 503
    title = "Ledger busy, retry"


class SameApprover(LedgerError):
    slug = "same-approver"
    title = "A payout is approved by another treasury principal than its creator"


class NothingToPay(LedgerError):
    slug = "nothing-to-pay"
    title = "No outstanding payable outside live payouts"


class DatabaseUnavailable(LedgerError):
    """The database cannot be reached or cannot take writes (down, read-only, full). Nothing
    was decided on the caller's behalf that a retry could not repeat; retry after a pause."""

    slug = "database-unavailable"
    http_status = 503
    title = "Database unavailable, retry"
    retry_after_s = 1


class Refused:
    """A refusal a command returns instead of raising, because it stored something with it
    (the attempt as evidence, or the answer under an idempotency key): raising would throw
    that away. The ledger raises ``error`` to its caller once the command has committed."""

    __slots__ = ("error",)

    def __init__(self, error: LedgerError) -> None:
        self.error = error
