"""Bearer tokens to principals, and roles to operations (the table in api.routes)."""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

import falcon

from api.problems import HTTPProblem
from api.routes import BY_ROUTE, Operation
from ledger.application import VoucherLedger, token_digest
from ledger.ids import named_id
from ledger.views import PrincipalView

MAX_CACHED_PRINCIPALS = 10_000
MAX_TOKEN_LEN = 200
BOOTSTRAP_ADMIN_ID: UUID = named_id("principal", "bootstrap-admin")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="voucher-ledger"'}


def unauthorized(detail: str) -> HTTPProblem:
    return HTTPProblem(401, "unauthorized", "Unauthorized", detail, _CHALLENGE)


def forbidden(detail: str) -> HTTPProblem:
    return HTTPProblem(403, "forbidden", "Forbidden", detail)


class Authenticator:
    """Finds the principal of a token. Principals are never changed once created, so a found one
    is cached (bounded); an unknown token is asked of the store every time."""

    def __init__(self, ledger: VoucherLedger, admin_token: str | None) -> None:
        self.ledger = ledger
        self._admin_digest = token_digest(admin_token) if admin_token else None
        self._cache: OrderedDict[str, PrincipalView] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, token: str) -> PrincipalView | None:
        digest = token_digest(token)
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return PrincipalView(BOOTSTRAP_ADMIN_ID, "bootstrap admin", "admin", None)
        with self._lock:
            found = self._cache.get(digest)
        if found is not None:
            return found
        found = self.ledger.principal_for_token(token)
        if found is not None:
            with self._lock:
                self._cache[digest] = found
                while len(self._cache) > MAX_CACHED_PRINCIPALS:
                    self._cache.popitem(last=False)
        return found


class AuthMiddleware:
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        op = BY_ROUTE.get((req.method, req.uri_template or ""))
        req.context.operation = op
        req.context.principal = None
        if op is None or op.public:
            return  # falcon answers 405 for a method the route lacks
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("send Authorization: Bearer <token>")
        if len(token) > MAX_TOKEN_LEN:
            raise unauthorized("unknown token")
        principal = self.authenticator.principal(token)
        if principal is None:
            raise unauthorized("unknown token")
        if principal.role not in op.roles:
            raise forbidden(f"role {principal.role} may not call {op.operation_id}")
        req.context.principal = principal


def principal_of(req: falcon.Request) -> PrincipalView:
    principal: PrincipalView | None = req.context.principal
    assert principal is not None, "only public operations run without a principal"
    return principal


def actor_of(req: falcon.Request) -> str:
    """The acting principal, as recorded on every event."""
    return str(principal_of(req).id)


def require_own(req: falcon.Request, institution_ids: tuple[str, ...] | str) -> None:
    """A provider principal may only see what concerns its own institution."""
    principal = principal_of(req)
    op: Operation | None = req.context.operation
    if op is None or principal.role not in op.own_only:
        return
    own = (institution_ids,) if isinstance(institution_ids, str) else institution_ids
    if principal.institution_id not in own:
        raise forbidden("a provider may only see what concerns its own institution")
