"""Every operation of the API in one table: method, path, roles, request and response schemas.
The app routes from it, the auth middleware authorises from it, the OpenAPI document is generated
from it and the role-matrix test is generated from it (API_CONTRACT.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.schemas import PAYOUT_STATUSES
from ledger.principals import ROLES
from ledger.validate import MAX_FISCAL_YEAR, MIN_FISCAL_YEAR

PUBLIC: frozenset[str] = frozenset()  # no token needed
OFFICER, TREASURY, AUDITOR, INSPECTOR = "program_officer", "treasury", "auditor", "inspector"
ADMIN, PROVIDER, BANK = "admin", "provider", "bank"
READERS = frozenset({OFFICER, TREASURY, AUDITOR, INSPECTOR})


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    required: bool = False
    schema: dict[str, object] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    roles: frozenset[str]  # PUBLIC: anyone, no token
    status: int = 200
    request: str | None = None  # name in api.schemas.REQUESTS
    response: str | None = None  # name in api.schemas.RESPONSES
    queries: tuple[Query, ...] = ()
    # Roles the table admits but the resource narrows to the caller's own institution.
    own_only: frozenset[str] = frozenset()
    content_type: str = "application/json"
    csv: bool = False  # ?format=csv answers text/csv with a header row
    other_content_types: tuple[str, ...] = ()  # other answers ?format= can ask for
    upload: tuple[str, ...] = ()  # the body is a file of one of these types, not JSON

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(q.name for q in self.queries)

    @property
    def public(self) -> bool:
        return not self.roles


AS_OF = Query(
    "as_of",
    "an RFC 3339 instant, or a date YYYY-MM-DD meaning the end of that day (UTC): the answer as "
    "it was then",
    schema={"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]},
)
FISCAL_YEAR = Query(
    "fiscal_year",
    "the fiscal year",
    True,
    {"type": "integer", "minimum": MIN_FISCAL_YEAR, "maximum": MAX_FISCAL_YEAR},
)

MIN_POSITION = Query(
    "min_position",
    "read-your-writes: wait (at most 2 s) until the read models include this log position, as "
    "returned in X-Ledger-Position by a write; 503 projection-behind if they do not. Without "
    "it, reads wait for the log's head at the time of asking, on a best-effort basis",
    schema={"type": "integer", "minimum": 0},
)
AFTER = Query(
    "after",
    "cursor: the position of the last item of the previous page (next_after)",
    schema={"type": "integer", "minimum": 0},
)
LIMIT = Query(
    "limit",
    "page size, 1-500 (default 100)",
    schema={"type": "integer", "minimum": 1, "maximum": 500},
)
COUNT_QUERY: dict[str, object] = {"type": "integer", "minimum": 0}
REPORT_FORMATS = ("json", "csv", "xlsx", "html")
FORMAT = Query("format", "json (default) or csv", schema={"enum": ["json", "csv"]})
PAGE = (AFTER, LIMIT, MIN_POSITION)


def _key_query(name: str, description: str) -> Query:
    return Query(
        name,
        description,
        schema={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"},
    )


FISCAL_YEAR_FILTER = Query(
    "fiscal_year",
    "the fiscal year",
    schema={"type": "integer", "minimum": MIN_FISCAL_YEAR, "maximum": MAX_FISCAL_YEAR},
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/v1/health", "health", "Liveness", PUBLIC, response="Health"),
    Operation(
        "POST",
        "/v1/principals",
        "createPrincipal",
        "Create a principal; its token is shown once",
        frozenset({ADMIN}),
        201,
        "NewPrincipal",
        "Principal",
    ),
    Operation(
        "GET",
        "/v1/principals",
        "listPrincipals",
        "Principals in the order they were created; never a token",
        frozenset({ADMIN}),
        response="PrincipalPage",
        queries=PAGE,
    ),
    Operation(
        "POST",
        "/v1/principals/{id}/revoke",
        "revokePrincipal",
        "Revoke a principal: its token is refused on every worker within a second",
        frozenset({ADMIN}),
        200,
        "Reason",
        "Principal",
    ),
    Operation(
        "POST",
        "/v1/principals/{id}/rotate",
        "rotatePrincipal",
        "Give a principal a new token (shown once); the old one is refused within a second",
        frozenset({ADMIN}),
        200,
        "Empty",
        "Principal",
    ),
    Operation(
        "POST",
        "/v1/funding-sources",
        "openFundingSource",
        "Open a funding source (an appropriation)",
        frozenset({ADMIN, OFFICER}),
        201,
        "NewFundingSource",
        "FundingSource",
    ),
    Operation(
        "GET",
        "/v1/funding-sources/{id}",
        "getFundingSource",
        "A funding source's status",
        READERS,
        response="FundingSource",
        queries=(AS_OF, MIN_POSITION),
    ),
    Operation(
        "POST",
        "/v1/programs",
        "createProgram",
        "Create a voucher programme",
        frozenset({OFFICER}),
        201,
        "NewProgram",
        "Program",
    ),
    Operation("GET", "/v1/programs/{id}", "getProgram", "A programme", READERS, response="Program"),
    Operation(
        "POST",
        "/v1/institutions",
        "registerInstitution",
        "Register an enterprise, service provider or bank",
        frozenset({ADMIN, OFFICER}),
        201,
        "NewInstitution",
        "Institution",
    ),
    Operation(
        "GET",
        "/v1/institutions/{id}",
        "getInstitution",
        "An institution",
        READERS | {PROVIDER},
        response="Institution",
        own_only=frozenset({PROVIDER}),
    ),
    Operation(
        "GET",
        "/v1/institutions/{id}/balances",
        "getBalances",
        "An institution's subsidy and cap balances in a fiscal year",
        READERS | {PROVIDER},
        response="Balances",
        queries=(FISCAL_YEAR, AS_OF, MIN_POSITION),
        own_only=frozenset({PROVIDER}),
    ),
    Operation(
        "POST",
        "/v1/institutions/{id}/keys",
        "registerPublicKey",
        "Register a provider's new Ed25519 signing key; claims are checked against the key in "
        "force when they commit",
        frozenset({ADMIN, OFFICER, PROVIDER}),
        200,
        "NewPublicKey",
        "Institution",
        own_only=frozenset({PROVIDER}),
    ),
    Operation(
        "POST",
        "/v1/institutions/{id}/payment-details",
        "changePaymentDetails",
        "Change an institution's bank account or contact (treasury pays the account in force "
        "when a payout is approved)",
        frozenset({ADMIN, OFFICER}),
        200,
        "PaymentDetails",
        "Institution",
    ),
    Operation(
        "POST",
        "/v1/institutions/{id}/freeze",
        "freezeInstitution",
        "Freeze an institution: it can no longer be paid",
        frozenset({INSPECTOR}),
        200,
        "Reason",
        "Institution",
    ),
    Operation(
        "POST",
        "/v1/institutions/{id}/unfreeze",
        "unfreezeInstitution",
        "Lift a freeze",
        frozenset({INSPECTOR}),
        200,
        "Reason",
        "Institution",
    ),
    Operation(
        "POST",
        "/v1/vouchers",
        "issueVoucher",
        "Issue a voucher, reserving its face value across the programme's sources",
        frozenset({OFFICER}),
        201,
        "NewVoucher",
        "Voucher",
    ),
    Operation(
        "GET",
        "/v1/vouchers",
        "listVouchers",
        "Vouchers in issue order, by holder or programme, status and expiry window",
        READERS,
        response="VoucherPage",
        queries=(
            Query("holder_id", "the holding institution (USCC)"),
            _key_query("program_id", "the programme"),
            Query(
                "status",
                "as an observer sees it today",
                schema={"enum": ["active", "used_up", "expired", "revoked"]},
            ),
            Query(
                "expires_from",
                "valid_until on or after this date",
                schema={"type": "string", "format": "date"},
            ),
            Query(
                "expires_to",
                "valid_until on or before this date",
                schema={"type": "string", "format": "date"},
            ),
            *PAGE,
        ),
    ),
    Operation(
        "GET",
        "/v1/payables",
        "listPayables",
        "What each funding source owes each provider, redemption by redemption",
        READERS | {PROVIDER},
        response="PayablePage",
        queries=(
            _key_query("source_id", "the funding source"),
            Query("provider_id", "the provider (USCC); a provider sees only its own"),
            FISCAL_YEAR_FILTER,
            *PAGE,
            FORMAT,
        ),
        own_only=frozenset({PROVIDER}),
        csv=True,
    ),
    Operation(
        "GET",
        "/v1/vouchers/{id}",
        "getVoucher",
        "A voucher",
        READERS | {PROVIDER},
        response="Voucher",
        queries=(AS_OF,),
        own_only=frozenset({PROVIDER}),
    ),
    Operation(
        "POST",
        "/v1/vouchers/{id}/revoke",
        "revokeVoucher",
        "Revoke a voucher, releasing its unused reservation",
        frozenset({OFFICER, INSPECTOR}),
        200,
        "Reason",
        "Voucher",
    ),
    Operation(
        "POST",
        "/v1/redemptions",
        "redeem",
        "Redeem a voucher against a signed service contract and invoice",
        frozenset({PROVIDER}),
        201,
        "NewRedemption",
        "Redemption",
    ),
    Operation(
        "GET",
        "/v1/redemptions/{id}",
        "getRedemption",
        "A redemption",
        READERS | {PROVIDER},
        response="Redemption",
        own_only=frozenset({PROVIDER}),
    ),
    Operation(
        "POST",
        "/v1/redemptions/{id}/claw-back",
        "clawBack",
        "Claw back an improper redemption (compensating events)",
        frozenset({OFFICER, INSPECTOR}),
        200,
        "Clawback",
        "Redemption",
    ),
    Operation(
        "POST",
        "/v1/payouts",
        "createPayout",
        "Gather every outstanding payable of a payee from one source, in no live payout, into a "
        "payout",
        frozenset({TREASURY}),
        201,
        "NewPayout",
        "Payout",
    ),
    Operation(
        "GET",
        "/v1/payouts",
        "listPayouts",
        "Payouts in the order they were made, by status and payee",
        frozenset({TREASURY, AUDITOR, INSPECTOR}),
        response="PayoutPage",
        queries=(
            Query("status", "the payout's status", schema={"enum": list(PAYOUT_STATUSES)}),
            Query("payee_id", "the payee (USCC)"),
            *PAGE,
            FORMAT,
        ),
        csv=True,
    ),
    Operation(
        "GET",
        "/v1/payouts/payment-file",
        "paymentFile",
        "Approved payouts not yet settled, as a payment file for the bank: CSV or ISO 20022 "
        "pain.001.001.09 (credit transfer initiation)",
        frozenset({TREASURY}),
        queries=(
            Query("format", "csv (default) or pain.001", schema={"enum": ["csv", "pain.001"]}),
        ),
        content_type="text/csv",
        other_content_types=("application/xml",),
    ),
    Operation(
        "POST",
        "/v1/statements",
        "importStatement",
        "Import a bank statement (ISO 20022 camt.053, or CSV in the project's or a bank's "
        "layout): its lines settle, suggest or return payouts; the same file again changes "
        "nothing",
        frozenset({TREASURY}),
        201,
        response="StatementSummary",
        upload=("application/xml", "text/csv"),
    ),
    Operation(
        "GET",
        "/v1/statements/{id}",
        "getStatement",
        "The reconciliation report of a statement: its summary and every line with its status",
        frozenset({TREASURY, AUDITOR}),
        response="StatementReport",
        queries=(AFTER, LIMIT, MIN_POSITION, FORMAT),
        csv=True,
    ),
    Operation(
        "POST",
        "/v1/statements/{id}/lines/{line}/confirm",
        "confirmBankLine",
        "Confirm a suggested match, or match an unmatched line by hand, to the payouts it paid",
        frozenset({TREASURY}),
        200,
        "ConfirmLine",
        "ConfirmedLine",
    ),
    Operation(
        "GET",
        "/v1/reconciliation/unmatched",
        "unmatched",
        "Bank lines matched to nothing and approved payouts no line has settled, oldest first",
        frozenset({TREASURY, AUDITOR}),
        response="Unmatched",
        queries=(LIMIT, MIN_POSITION),
    ),
    Operation(
        "GET",
        "/v1/payouts/{id}",
        "getPayout",
        "A payout, its lines and the bank lines that settled or returned it",
        frozenset({TREASURY, AUDITOR, INSPECTOR, PROVIDER, BANK}),
        response="Payout",
        own_only=frozenset({PROVIDER, BANK}),
    ),
    Operation(
        "POST",
        "/v1/payouts/{id}/approve",
        "approvePayout",
        "Approve a payout (another treasury principal than its creator): fixes its end-to-end "
        "reference and the payee's bank account",
        frozenset({TREASURY}),
        200,
        "Empty",
        "Payout",
    ),
    Operation(
        "POST",
        "/v1/payouts/{id}/cancel",
        "cancelPayout",
        "Cancel a payout before it is settled: its lines are payable again",
        frozenset({TREASURY}),
        200,
        "Reason",
        "Payout",
    ),
    Operation(
        "POST",
        "/v1/guarantee-pools",
        "openGuaranteePool",
        "Open a risk-compensation pool over guarantee_fund sources with their shares and rule",
        frozenset({OFFICER}),
        201,
        "NewGuaranteePool",
        "GuaranteePool",
    ),
    Operation(
        "GET",
        "/v1/guarantee-pools/{id}",
        "getGuaranteePool",
        "A risk-compensation pool",
        READERS | {BANK},
        response="GuaranteePool",
    ),
    Operation(
        "POST",
        "/v1/guarantee-loans",
        "registerGuaranteeLoan",
        "Register a loan the bank made as covered by a pool (a loan is in one pool)",
        frozenset({BANK}),
        201,
        "NewGuaranteeLoan",
        "GuaranteeLoan",
    ),
    Operation(
        "POST",
        "/v1/guarantee-claims",
        "fileGuaranteeClaim",
        "File a claim on a covered loan's loss: its compensation is decided now by the pool's rule",
        frozenset({BANK}),
        201,
        "NewGuaranteeClaim",
        "GuaranteeClaim",
    ),
    Operation(
        "GET",
        "/v1/guarantee-claims/{id}",
        "getGuaranteeClaim",
        "A guarantee claim, its decision, recoveries and exemption",
        READERS | {BANK},
        response="GuaranteeClaim",
        own_only=frozenset({BANK}),
    ),
    Operation(
        "POST",
        "/v1/guarantee-claims/{id}/approve",
        "approveGuaranteeClaim",
        "Approve a claim: its compensation becomes payable to the bank",
        frozenset({OFFICER}),
        200,
        "Empty",
        "GuaranteeClaim",
    ),
    Operation(
        "POST",
        "/v1/guarantee-claims/{id}/reject",
        "rejectGuaranteeClaim",
        "Reject a filed claim: its compensation goes back to the pool and counts against no cap",
        frozenset({OFFICER}),
        200,
        "Reason",
        "GuaranteeClaim",
    ),
    Operation(
        "POST",
        "/v1/guarantee-claims/{id}/recoveries",
        "recordRecovery",
        "Record what the bank recovered on an approved claim; the fund's share goes back to it",
        frozenset({BANK}),
        201,
        "NewRecovery",
        "Recovery",
    ),
    Operation(
        "POST",
        "/v1/exemptions",
        "recordExemption",
        "Record an approved claim's net loss as a compliant loss exempt from accountability "
        "(容错纠错)",
        frozenset({INSPECTOR}),
        201,
        "NewExemption",
        "GuaranteeClaim",
    ),
    Operation(
        "GET",
        "/v1/audit/verify",
        "verifyChain",
        "Recompute the hash chain from the stored events and check the signed checkpoints",
        frozenset({AUDITOR}),
        response="Verdict",
    ),
    Operation(
        "GET",
        "/v1/audit/public-key",
        "auditPublicKey",
        "The Ed25519 public key that signs the audit checkpoints",
        frozenset(ROLES),
        response="PublicKey",
    ),
    Operation(
        "GET",
        "/v1/audit/proofs/{id}",
        "proveInclusion",
        "A Merkle proof that the event at a log position is under a signed checkpoint",
        frozenset({AUDITOR, INSPECTOR}),
        response="Proof",
    ),
    Operation(
        "GET",
        "/v1/audit/trace/redemptions/{id}",
        "traceRedemption",
        "Backward trace: redemption -> voucher -> programme -> funding sources, with positions "
        "and hashes",
        frozenset({AUDITOR, INSPECTOR}),
        response="RedemptionTrace",
        queries=(AS_OF,),
    ),
    Operation(
        "GET",
        "/v1/audit/trace/statements/{id}/lines/{line}",
        "traceBankLine",
        "Backward trace from a bank line: the payouts it settled or returned and what they paid, "
        "down to the funding sources of every voucher (or guarantee claim)",
        frozenset({AUDITOR, INSPECTOR}),
        response="BankLineTrace",
    ),
    Operation(
        "GET",
        "/v1/audit/trace/funding-sources/{id}",
        "traceFundingSource",
        "Forward trace: every redemption a funding source paid for, with totals",
        frozenset({AUDITOR, INSPECTOR}),
        response="SourceTrace",
        queries=(AS_OF,),
    ),
    Operation(
        "GET",
        "/v1/audit/flows",
        "flows",
        "Subsidy by source -> programme -> provider -> enterprise for a fiscal year",
        frozenset({AUDITOR, INSPECTOR}),
        response="Flows",
        queries=(FISCAL_YEAR, FORMAT),
        csv=True,
    ),
    Operation(
        "GET",
        "/v1/audit/inspections/{id}",
        "inspect",
        "An inspection query: self-dealing, contract-splitting, velocity, shared-invoices, "
        "shared-contacts or actions",
        frozenset({AUDITOR, INSPECTOR}),
        response="Findings",
        queries=(
            Query("days", "contract-splitting: window in days", schema=COUNT_QUERY),
            Query("threshold_fen", "contract-splitting: each under this", schema=COUNT_QUERY),
            Query("min_contracts", "contract-splitting: at least this many", schema=COUNT_QUERY),
            Query("bound", "velocity: more than this many a day", schema=COUNT_QUERY),
            FORMAT,
        ),
        csv=True,
    ),
    Operation(
        "GET",
        "/v1/audit/report",
        "auditReport",
        "The fiscal-year audit report as JSON, CSV, XLSX or a self-contained HTML page",
        frozenset({AUDITOR, INSPECTOR}),
        queries=(
            FISCAL_YEAR,
            Query(
                "format", "json (default), csv, xlsx or html", schema={"enum": list(REPORT_FORMATS)}
            ),
        ),
        other_content_types=(
            "text/csv",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "text/html",
        ),
    ),
    Operation(
        "GET",
        "/v1/openapi.json",
        "openapi",
        "This document",
        PUBLIC,
        content_type="application/json",
    ),
    Operation(
        "GET", "/docs", "docs", "The API documentation page", PUBLIC, content_type="text/html"
    ),
    Operation(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        PUBLIC,
        content_type="text/plain",
    ),
)

assert all(role in ROLES for op in OPERATIONS for role in op.roles)
BY_ROUTE: dict[tuple[str, str], Operation] = {(op.method, op.path): op for op in OPERATIONS}
assert len(BY_ROUTE) == len(OPERATIONS)
