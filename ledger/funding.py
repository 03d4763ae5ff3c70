"""Funding sources (appropriations) and programmes that draw on them (DESIGN.md §3)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger import rules
from ledger.errors import InsufficientFunds, InvalidState
from ledger.events import evolve, renamed
from ledger.ids import named_id

LEVELS = ("province", "city", "county", "guarantee_fund")


def available_fen(appropriation_fen: int, committed_fen: int, recovered_fen: int) -> int:
    """What a source can still reserve: recovered money is available again."""
    return appropriation_fen - committed_fen + recovered_fen


class FundingSource(Aggregate):
    """An appropriation for one fiscal year. What it may owe is committed when a voucher is
    issued: the face value's share (``reserved``) and, on the programme's post-subsidy source,
    the most post-subsidy the voucher can earn (``post_subsidy_reserved``); what a voucher leaves
    unused is released when it is used up, expires or is revoked. ``committed = reserved −
    released + post_subsidy_reserved − post_subsidy_released`` and ``available = appropriation −
    committed + recovered`` never goes below zero, so nothing is owed beyond what was given."""

    @staticmethod
    def create_id(source_id: str) -> UUID:
        return named_id("funding-source", source_id)

    @event("Opened")
    def __init__(
        self,
        source_id: str,
        name: str,
        level: str,
        fiscal_year: int,
        appropriation_fen: int,
        document_ref: str,
        actor: str,
    ) -> None:
        self.source_id = source_id
        self.name = name
        self.level = level
        self.fiscal_year = fiscal_year
        self.appropriation_fen = appropriation_fen
        self.document_ref = document_ref
        self.opened_by = actor
        self.reserved_fen = 0
        self.released_fen = 0
        self.post_subsidy_reserved_fen = 0
        self.post_subsidy_released_fen = 0
        self.recovered_fen = 0

    @property
    def committed_fen(self) -> int:
        return committed_fen(
            self.reserved_fen,
            self.released_fen,
            self.post_subsidy_reserved_fen,
            self.post_subsidy_released_fen,
        )

    @property
    def available_fen(self) -> int:
        return available_fen(self.appropriation_fen, self.committed_fen, self.recovered_fen)

    def check_covers(self, amount_fen: int) -> None:
        if amount_fen > self.available_fen:
            raise InsufficientFunds(
                f"funding source {self.source_id} has {self.available_fen} fen available, "
                f"{amount_fen} fen needed"
            )

    def reserve(
        self,
        amount_fen: int,
        voucher_id: UUID,
        actor: str,
        rule: str,
        post_subsidy_fen: int = 0,
    ) -> None:
        """Encumber a voucher's share of its face value and, on the post-subsidy source, the
        post-subsidy it can earn; refused when not available."""
        assert amount_fen >= 0 and post_subsidy_fen >= 0
        self.check_covers(amount_fen + post_subsidy_fen)
        self._reserved(
            amount_fen=amount_fen,
            voucher_id=voucher_id,
            actor=actor,
            rule=rule,
            post_subsidy_fen=post_subsidy_fen,
        )

    @event("Reserved")
    def _reserved(
        self, amount_fen: int, voucher_id: UUID, actor: str, rule: str, post_subsidy_fen: int = 0
    ) -> None:
        self.reserved_fen += amount_fen
        self.post_subsidy_reserved_fen += post_subsidy_fen

    def commit_compensation(self, amount_fen: int, claim_id: UUID, actor: str, rule: str) -> None:
        """Encumber a guarantee claim's compensation (its split from this pool source) when
        the claim is filed; refused when not available."""
        assert amount_fen >= 0
        self.check_covers(amount_fen)
        self._compensation_committed(
            amount_fen=amount_fen, claim_id=claim_id, actor=actor, rule=rule
        )

    @event("CompensationCommitted")
    def _compensation_committed(
        self, amount_fen: int, claim_id: UUID, actor: str, rule: str
    ) -> None:
        self.reserved_fen += amount_fen

    def release_compensation(
        self, amount_fen: int, claim_id: UUID, reason: str, actor: str
    ) -> None:
        """Give back a rejected claim's compensation (its split from this pool source)."""
        if not 0 <= amount_fen <= self.reserved_fen - self.released_fen:
            raise InvalidState(
                f"cannot release {amount_fen} fen: only "
                f"{self.reserved_fen - self.released_fen} reserved"
            )
        self._compensation_released(
            amount_fen=amount_fen, claim_id=claim_id, reason=reason, actor=actor
        )

    @event("CompensationReleased")
    def _compensation_released(
        self, amount_fen: int, claim_id: UUID, reason: str, actor: str
    ) -> None:
        self.released_fen += amount_fen

    def release(
        self,
        amount_fen: int,
        voucher_id: UUID,
        reason: str,
        actor: str,
        post_subsidy_fen: int = 0,
    ) -> None:
        """Give back what a voucher left unused (used up, expired or revoked)."""
        if not 0 <= amount_fen <= self.reserved_fen - self.released_fen:
            raise InvalidState(
                f"cannot release {amount_fen} fen: only "
                f"{self.reserved_fen - self.released_fen} reserved"
            )
        unused_post_fen = self.post_subsidy_reserved_fen - self.post_subsidy_released_fen
        if not 0 <= post_subsidy_fen <= unused_post_fen:
            raise InvalidState(
                f"cannot release {post_subsidy_fen} fen of post-subsidy: only "
                f"{unused_post_fen} reserved"
            )
        self._released(
            amount_fen=amount_fen,
            voucher_id=voucher_id,
            reason=reason,
            actor=actor,
            post_subsidy_fen=post_subsidy_fen,
        )

    @event("Released")
    def _released(
        self, amount_fen: int, voucher_id: UUID, reason: str, actor: str, post_subsidy_fen: int = 0
    ) -> None:
        self.released_fen += amount_fen
        self.post_subsidy_released_fen += post_subsidy_fen

    @event("Recovered")
    def recover(
        self,
        amount_fen: int,
        redemption_id: UUID,
        reason_code: str,
        actor: str,
        kind: str = "subsidy",
    ) -> None:
        """Money that comes back returns as recovered: clawed back from an improper redemption
        (its subsidy, or its post-subsidy on the post-subsidy source), or a guarantee fund's
        share of a bank's recovery (``kind`` guarantee; ``redemption_id`` is then the claim)."""
        self.recovered_fen += amount_fen


def committed_fen(
    reserved_fen: int,
    released_fen: int,
    post_subsidy_reserved_fen: int,
    post_subsidy_released_fen: int,
) -> int:
    """What a source has encumbered: subsidy and post-subsidy reserved, less what came back."""
    return reserved_fen - released_fen + post_subsidy_reserved_fen - post_subsidy_released_fen


class Programme(Aggregate):
    """A voucher programme: which sources pay which share, and the caps that apply."""

    @staticmethod
    def create_id(programme_id: str) -> UUID:
        return named_id("programme", programme_id)

    @event("Created")
    def __init__(
        self,
        programme_id: str,
        name: str,
        fiscal_year: int,
        shares: list[list[Any]],
        max_face_value_fen: int,
        post_subsidy_rate_bp: int,
        post_subsidy_source_id: str,
        post_subsidy_annual_cap_fen: int,
        enterprise_annual_cap_fen: int,
        actor: str,
        rule_params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.programme_id = programme_id
        self.name = name
        self.fiscal_year = fiscal_year
        self.shares = [(str(s), int(bp)) for s, bp in shares]  # [(source_id, share_bp)], ordered
        self.max_face_value_fen = max_face_value_fen
        self.post_subsidy_rate_bp = post_subsidy_rate_bp
        self.post_subsidy_source_id = post_subsidy_source_id  # pays the providers' post-subsidy
        self.post_subsidy_annual_cap_fen = post_subsidy_annual_cap_fen
        self.enterprise_annual_cap_fen = enterprise_annual_cap_fen
        self.created_by = actor
        # The parameters of each rule this programme applies, its own settings overriding the
        # rules' defaults; every decision records the set it used.
        self.rule_params = rule_params or programme_rule_params(
            [bp for _, bp in self.shares],
            post_subsidy_rate_bp,
            post_subsidy_annual_cap_fen,
            enterprise_annual_cap_fen,
        )

    @property
    def shares_bp_total(self) -> int:
        return sum(bp for _, bp in self.shares)


def programme_rule_params(
    shares_bp: list[int],
    post_subsidy_rate_bp: int,
    post_subsidy_annual_cap_fen: int,
    enterprise_annual_cap_fen: int,
) -> dict[str, dict[str, Any]]:
    """The parameters of every rule a programme applies, by rule ref: the rule's own, with the
    programme's settings in place of their defaults."""
    return {
        rules.VOUCHER_COFUNDING.ref: rules.VOUCHER_COFUNDING.with_overrides(
            {"shares_bp": shares_bp}
        ),
        rules.PROVIDER_POST_SUBSIDY.ref: rules.PROVIDER_POST_SUBSIDY.with_overrides(
            {"rate_bp": post_subsidy_rate_bp, "annual_cap_fen": post_subsidy_annual_cap_fen}
        ),
        rules.ENTERPRISE_ANNUAL_CAP.ref: rules.ENTERPRISE_ANNUAL_CAP.with_overrides(
            {"annual_cap_fen": enterprise_annual_cap_fen}
        ),
        rules.ONE_CONTRACT_ONE_CLAIM.ref: dict(rules.ONE_CONTRACT_ONE_CLAIM.params),
    }


def _source_v1_v2(state: dict[str, Any]) -> None:
    # Snapshots from before the post-subsidy was reserved at issuance.
    state.setdefault("post_subsidy_reserved_fen", 0)
    state.setdefault("post_subsidy_released_fen", 0)


def _programme_created_v1_v2(state: dict[str, Any]) -> None:
    renamed(
        state,
        {
            "provider_bonus_rate_bp": "post_subsidy_rate_bp",
            "provider_bonus_source_id": "post_subsidy_source_id",
            "provider_annual_cap_fen": "post_subsidy_annual_cap_fen",
        },
    )


evolve(FundingSource, _source_v1_v2)
evolve(Programme.Created, _programme_created_v1_v2)  # type: ignore[attr-defined]
