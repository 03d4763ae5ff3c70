"""Bearer tokens to principals, and roles to operations (the table in api.routes)."""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import falcon

from api.problems import HTTPProblem
from api.routes import BY_ROUTE, Operation
from ledger.application import VoucherLedger, token_digest
from ledger.errors import NotFound
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
    """Finds the principal of a token. A found one is cached (bounded); an unknown token is
    asked of the store every time. Revocations and rotations may happen on any worker: at most
    every ``CHANGES_POLL_S`` the log is asked which principals changed since the last look, and
    their tokens are forgotten, so a revoked or rotated-out token is refused everywhere within
    a second."""

    CHANGES_POLL_S = 0.5

    def __init__(self, ledger: VoucherLedger, admin_token: str | None) -> None:
        self.ledger = ledger
        self._admin_digest = token_digest(admin_token) if admin_token else None
        self._cache: OrderedDict[str, PrincipalView] = OrderedDict()
        self._lock = threading.Lock()
        self._seen_position: int | None = None
        self._next_poll_s = 0.0
        self._generation = 0  # polls that found changes

    def principal(self, token: str) -> PrincipalView | None:
        digest = token_digest(token)
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return PrincipalView(BOOTSTRAP_ADMIN_ID, "bootstrap admin", "admin", None)
        self._forget_changed()
        with self._lock:
            found = self._cache.get(digest)
            generation = self._generation
        if found is not None:
            return found
        found = self.ledger.principal_for_token(token)
        # Cached only if no poll forgot anything meanwhile: the poll may have passed over a
        # revocation of this very principal between the read and now.
        if found is not None:
            with self._lock:
                if generation != self._generation:
                    return found
                self._cache[digest] = found
                while len(self._cache) > MAX_CACHED_PRINCIPALS:
                    self._cache.popitem(last=False)
        return found

    def _forget_changed(self) -> None:
        now_s = time.monotonic()
        if now_s < self._next_poll_s:
            return
        with self._lock:
            if now_s < self._next_poll_s:  # another thread polled meanwhile
                return
            if self._seen_position is None:  # nothing cached yet that could be stale
                self._seen_position = self.ledger.recorder.max_notification_id() or 0
            else:
                changed, self._seen_position = self.ledger.principal_changes(self._seen_position)
                if changed:
                    self._generation += 1
                    gone = set(changed)
                    for digest in [d for d, p in self._cache.items() if p.id in gone]:
                        del self._cache[digest]
            self._next_poll_s = now_s + self.CHANGES_POLL_S


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


def require_own(req: falcon.Request, institution_ids: tuple[str, ...] | str, what: str) -> None:
    """A provider principal may only see what concerns its own institution. What it may not
    see is ``what`` "not found", word for word as if it did not exist: it learns nothing of
    what exists."""
    principal = principal_of(req)
    op: Operation | None = req.context.operation
    if op is None or principal.role not in op.own_only:
        return
    own = (institution_ids,) if isinstance(institution_ids, str) else institution_ids
    if principal.institution_id not in own:
        raise NotFound(f"{what} not found")
