"""``create_app(settings)``: the falcon WSGI application over one ledger (API_CONTRACT.md §4)."""

from __future__ import annotations

from typing import Any

import falcon

from api import problems
from api.answers import AnswerCache, AnswerCacheMiddleware, AnsweredFromCache, answered
from api.auth import Authenticator, AuthMiddleware
from api.docs import Docs, OpenAPI
from api.observability import Metrics, ObservabilityMiddleware
from api.resources import (
    admin,
    audit,
    funding,
    guarantee,
    institutions,
    payables,
    payouts,
    statements,
    vouchers,
)
from api.routes import OPERATIONS
from audit.service import Auditor
from ledger.application import VoucherLedger
from ledger.settings import Settings
from projections.reader import ViewReader
from projections.runner import Projector
from projections.store import open_views


class LedgerApp(falcon.App):  # type: ignore[type-arg]
    """The falcon app, holding the ledger and views it serves so its owner can close them."""

    ledger: VoucherLedger
    reader: ViewReader
    auditor: Auditor
    answers: AnswerCache
    written_views: Any  # the primary's views (the reader's, without a replica)

    def close(self) -> None:
        self.auditor.close()
        if self.reader.projector is not None:
            self.reader.projector.stop()
        self.ledger.close()
        self.reader.store.close()
        if self.written_views is not self.reader.store:
            self.written_views.close()


def create_app(settings: Settings, ledger: VoucherLedger | None = None) -> LedgerApp:
    """The API over ``ledger`` (opened from ``settings`` if not given). ``app.ledger`` is the
    ledger, for whoever owns the process to close."""
    ledger = ledger or VoucherLedger(settings)
    store = open_views(settings)
    projector = None
    if settings.projector == "embedded" or settings.backend == "memory":
        projector = Projector(ledger, store).start()
    # With DATABASE_REPLICA_URL, reads go to the standby's copy of the views (the projector
    # writes them on the primary); the head they wait for is the primary's.
    replica = settings.replica()
    read_views = store if replica is None else open_views(replica)
    reader = ViewReader(ledger, read_views, projector)
    auditor = Auditor(ledger, read_views, embedded=projector is not None)
    answers = AnswerCache()
    app = LedgerApp(
        middleware=[
            ObservabilityMiddleware(),
            AuthMiddleware(Authenticator(ledger, settings.admin_token)),
            AnswerCacheMiddleware(answers),
        ]
    )
    app.answers = answers
    app.written_views = store
    app.req_options.auto_parse_form_urlencoded = False
    app.resp_options.secure_cookies_by_default = True
    problems.install(app)
    app.add_error_handler(AnsweredFromCache, answered)
    resources: dict[str, Any] = {
        "/v1/health": admin.Health(reader, auditor.chain_reader),
        "/v1/principals": admin.Principals(ledger, reader),
        "/v1/principals/{id}/revoke": admin.PrincipalRevoke(ledger),
        "/v1/principals/{id}/rotate": admin.PrincipalRotate(ledger),
        "/v1/funding-sources": funding.FundingSources(ledger),
        "/v1/funding-sources/{id}": funding.FundingSource(ledger, reader),
        "/v1/programs": funding.Programs(ledger),
        "/v1/programs/{id}": funding.Program(ledger),
        "/v1/institutions": institutions.Institutions(ledger),
        "/v1/institutions/{id}": institutions.Institution(ledger),
        "/v1/institutions/{id}/balances": institutions.Balances(ledger, reader),
        "/v1/institutions/{id}/keys": institutions.Keys(ledger),
        "/v1/institutions/{id}/payment-details": institutions.PaymentDetails(ledger),
        "/v1/institutions/{id}/freeze": institutions.Freeze(ledger),
        "/v1/institutions/{id}/unfreeze": institutions.Unfreeze(ledger),
        "/v1/vouchers": vouchers.Vouchers(ledger, reader),
        "/v1/vouchers/{id}": vouchers.Voucher(ledger),
        "/v1/vouchers/{id}/revoke": vouchers.Revoke(ledger),
        "/v1/redemptions": vouchers.Redemptions(ledger),
        "/v1/redemptions/{id}": vouchers.Redemption(ledger),
        "/v1/redemptions/{id}/claw-back": vouchers.ClawBack(ledger),
        "/v1/openapi.json": OpenAPI(),
        "/docs": Docs(),
        "/metrics": Metrics(reader),
        "/v1/audit/verify": audit.Verify(auditor, reader),
        "/v1/audit/public-key": audit.PublicKey(auditor, reader),
        "/v1/audit/proofs/{id}": audit.Proof(auditor, reader),
        "/v1/audit/trace/redemptions/{id}": audit.RedemptionTrace(auditor, reader),
        "/v1/audit/trace/funding-sources/{id}": audit.SourceTrace(auditor, reader),
        "/v1/audit/trace/statements/{id}/lines/{line}": audit.BankLineTrace(auditor, reader),
        "/v1/audit/flows": audit.Flows(auditor, reader),
        "/v1/audit/inspections/{id}": audit.Inspection(auditor, reader),
        "/v1/audit/report": audit.Report(auditor, reader),
        "/v1/payables": payables.Payables(ledger, reader),
        "/v1/payouts": payouts.Payouts(ledger, reader),
        "/v1/payouts/payment-file": payouts.PaymentFile(ledger, reader),
        "/v1/payouts/{id}": payouts.Payout(ledger),
        "/v1/payouts/{id}/approve": payouts.Approve(ledger),
        "/v1/payouts/{id}/cancel": payouts.Cancel(ledger),
        "/v1/guarantee-pools": guarantee.Pools(ledger),
        "/v1/guarantee-pools/{id}": guarantee.Pool(ledger),
        "/v1/guarantee-loans": guarantee.Loans(ledger),
        "/v1/guarantee-claims": guarantee.Claims(ledger),
        "/v1/guarantee-claims/{id}": guarantee.Claim(ledger),
        "/v1/guarantee-claims/{id}/approve": guarantee.Approve(ledger),
        "/v1/guarantee-claims/{id}/reject": guarantee.Reject(ledger),
        "/v1/guarantee-claims/{id}/recoveries": guarantee.Recoveries(ledger),
        "/v1/exemptions": guarantee.Exemptions(ledger),
        "/v1/statements": statements.Statements(ledger, reader),
        "/v1/statements/{id}": statements.Statement(ledger, reader),
        "/v1/statements/{id}/lines/{line}/confirm": statements.ConfirmLine(ledger, reader),
        "/v1/reconciliation/unmatched": statements.Unmatched(ledger, reader),
    }
    assert set(resources) == {op.path for op in OPERATIONS}, "routes and table disagree"
    for path, resource in resources.items():
        app.add_route(path, resource)
    app.ledger = ledger
    app.reader = reader
    app.auditor = auditor
    return app
