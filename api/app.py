"""``create_app(settings)``: the falcon WSGI application over one ledger (API_CONTRACT.md §4)."""

from __future__ import annotations

from typing import Any

import falcon

from api import problems
from api.auth import Authenticator, AuthMiddleware
from api.docs import Docs, OpenAPI
from api.observability import Metrics, ObservabilityMiddleware
from api.resources import admin, funding, institutions, vouchers
from api.routes import OPERATIONS
from ledger.application import VoucherLedger
from ledger.settings import Settings


class LedgerApp(falcon.App):  # type: ignore[type-arg]
    """The falcon app, holding the ledger it serves so its owner can close it."""

    ledger: VoucherLedger


def create_app(settings: Settings, ledger: VoucherLedger | None = None) -> LedgerApp:
    """The API over ``ledger`` (opened from ``settings`` if not given). ``app.ledger`` is the
    ledger, for whoever owns the process to close."""
    ledger = ledger or VoucherLedger(settings)
    app = LedgerApp(
        middleware=[
            ObservabilityMiddleware(),
            AuthMiddleware(Authenticator(ledger, settings.admin_token)),
        ]
    )
    app.req_options.auto_parse_form_urlencoded = False
    app.resp_options.secure_cookies_by_default = True
    problems.install(app)
    resources: dict[str, Any] = {
        "/v1/health": admin.Health(),
        "/v1/principals": admin.Principals(ledger),
        "/v1/funding-sources": funding.FundingSources(ledger),
        "/v1/funding-sources/{id}": funding.FundingSource(ledger),
        "/v1/programs": funding.Programs(ledger),
        "/v1/programs/{id}": funding.Program(ledger),
        "/v1/institutions": institutions.Institutions(ledger),
        "/v1/institutions/{id}": institutions.Institution(ledger),
        "/v1/institutions/{id}/balances": institutions.Balances(ledger),
        "/v1/institutions/{id}/freeze": institutions.Freeze(ledger),
        "/v1/institutions/{id}/unfreeze": institutions.Unfreeze(ledger),
        "/v1/vouchers": vouchers.Vouchers(ledger),
        "/v1/vouchers/{id}": vouchers.Voucher(ledger),
        "/v1/vouchers/{id}/revoke": vouchers.Revoke(ledger),
        "/v1/redemptions": vouchers.Redemptions(ledger),
        "/v1/redemptions/{id}": vouchers.Redemption(ledger),
        "/v1/redemptions/{id}/claw-back": vouchers.ClawBack(ledger),
        "/v1/openapi.json": OpenAPI(),
        "/docs": Docs(),
        "/metrics": Metrics(),
    }
    assert set(resources) == {op.path for op in OPERATIONS}, "routes and table disagree"
    for path, resource in resources.items():
        app.add_route(path, resource)
    app.ledger = ledger
    return app
