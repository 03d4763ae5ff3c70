"""Who may call the ledger: principals with one role each, created by an admin.

A principal's id derives from the SHA-256 of its first token, so that token finds its principal
with one read; a rotated-in token is bound to the principal by a ``TokenBinding`` of its own
digest. Tokens themselves are never stored (API_CONTRACT.md §3). A revoked principal, or a token
rotated out, is refused: the principal holds the digest of the one token in force."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState
from ledger.ids import named_id

ROLES = ("admin", "program_officer", "provider", "bank", "treasury", "auditor", "inspector")
# Roles that act for one institution of a kind (the provider it redeems for, the bank whose
# loans it registers); the others act for none.
BOUND_ROLES = {"provider": "provider", "bank": "bank"}


class Principal(Aggregate):
    @staticmethod
    def create_id(token_sha256: str) -> UUID:
        return named_id("principal", token_sha256)

    @event("Created")
    def __init__(
        self, token_sha256: str, name: str, role: str, institution_id: str | None, actor: str
    ) -> None:
        self.token_sha256 = token_sha256  # the token in force
        self.name = name
        self.role = role
        self.institution_id = institution_id  # the institution it acts for, if its role has one
        self.created_by = actor
        self.revoked = False

    def accepts(self, token_sha256: str) -> bool:
        return not self.revoked and self.token_sha256 == token_sha256

    def revoke(self, reason: str, actor: str) -> None:
        if self.revoked:
            raise InvalidState(f"principal {self.id} is already revoked")
        self._revoked(reason=reason, actor=actor)

    @event("Revoked")
    def _revoked(self, reason: str, actor: str) -> None:
        self.revoked = True

    def rotate(self, token_sha256: str, actor: str) -> None:
        """A new token replaces the one in force, which is refused from now on."""
        if self.revoked:
            raise InvalidState(f"principal {self.id} is revoked: it gets no new token")
        self._token_rotated(token_sha256=token_sha256, actor=actor)

    @event("TokenRotated")
    def _token_rotated(self, token_sha256: str, actor: str) -> None:
        self.token_sha256 = token_sha256


class TokenBinding(Aggregate):
    """A rotated-in token's digest, bound to its principal: the token's way in."""

    @staticmethod
    def create_id(token_sha256: str) -> UUID:
        return named_id("token-binding", token_sha256)

    @event("Bound")
    def __init__(self, token_sha256: str, principal_id: UUID, actor: str) -> None:
        self.token_sha256 = token_sha256
        self.principal_id = principal_id
