"""Who may call the ledger: principals with one role each, created by an admin.

A principal's id derives from the SHA-256 of its token, so a request's token finds its principal
with one read and the token itself is never stored (API_CONTRACT.md §3)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.ids import named_id

ROLES = ("admin", "program_officer", "provider", "treasury", "auditor", "inspector")


class Principal(Aggregate):
    @staticmethod
    def create_id(token_sha256: str) -> UUID:
        return named_id("principal", token_sha256)

    @event("Created")
    def __init__(
        self, token_sha256: str, name: str, role: str, institution_id: str | None, actor: str
    ) -> None:
        self.token_sha256 = token_sha256
        self.name = name
        self.role = role
        self.institution_id = institution_id  # the provider it acts for; None for other roles
        self.created_by = actor
