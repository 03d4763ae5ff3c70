"""Claims with deterministic ids: a second claim of the same (provider, contract number) or of the
same invoice number maps to an existing stream, so the store refuses it atomically, across
programmes (seed 003 四(一): 同一项技术转移活动仅补助一次)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState
from ledger.events import create, evolve, renamed
from ledger.ids import unique_named_id
from ledger.rules import one_contract_one_claim_key


class ContractClaim(Aggregate):
    """The redemption itself: one per (provider, contract number). Its id is the redemption id."""

    @staticmethod
    def create_id(provider_id: str, contract_no: str) -> UUID:
        return unique_named_id(
            "contract-claim", provider_id, one_contract_one_claim_key(contract_no)
        )

    @event("Claimed")
    def __init__(
        self,
        provider_id: str,
        contract_no: str,
        invoice_no: str,
        voucher_id: UUID,
        programme_id: str,
        holder_id: str,
        fiscal_year: int,
        service_category: str,
        service_date: str,
        contract_amount_fen: int,
        subsidy_fen: int,
        enterprise_pays_fen: int,
        splits: list[list[Any]],
        honoured_contract_fen: int,
        post_subsidy_fen: int,
        post_subsidy_source_id: str,
        actor: str,
        rules: list[str],
        rule_params: dict[str, Any],
        signature: str | None = None,
        signed_payload: str | None = None,
        public_key_sha256: str | None = None,
    ) -> None:
        self.provider_id = provider_id
        self.contract_no = contract_no
        self.invoice_no = invoice_no
        self.voucher_id = voucher_id
        self.programme_id = programme_id
        self.holder_id = holder_id
        self.fiscal_year = fiscal_year
        self.service_category = service_category
        self.service_date = service_date
        self.contract_amount_fen = contract_amount_fen
        self.subsidy_fen = subsidy_fen
        self.enterprise_pays_fen = enterprise_pays_fen
        self.splits = [(str(s), int(a)) for s, a in splits]
        self.honoured_contract_fen = honoured_contract_fen  # what the post-subsidy is a rate of
        self.post_subsidy_fen = post_subsidy_fen
        self.post_subsidy_source_id = post_subsidy_source_id
        self.redeemed_by = actor
        self.rules = list(rules)
        self.rule_params = rule_params  # by rule ref: the parameters the amounts were decided by
        self.signature = signature
        self.signed_payload = signed_payload  # the exact bytes signed, for a third party
        self.public_key_sha256 = public_key_sha256  # the key it was checked against
        self.clawed_back = False

    @classmethod
    def claim(cls, claim_id: UUID, **fields: Any) -> ContractClaim:
        """Create it under ``claim_id``, which the command already computed with ``create_id``
        to look for a duplicate: passing it saves working it out again on the hot path. (A
        claim under any other id would let a duplicate through; the duplicate-claim tests
        would fail.)"""
        return create(cls, cls.Claimed, claim_id, **fields)  # type: ignore[attr-defined]

    def claw_back(self, reason_code: str, actor: str) -> None:
        if self.clawed_back:
            raise InvalidState(f"redemption {self.id} was already clawed back")
        self._clawed_back(reason_code=reason_code, actor=actor)

    @event("ClawedBack")
    def _clawed_back(self, reason_code: str, actor: str) -> None:
        self.clawed_back = True
        self.clawback_reason = reason_code


class InvoiceClaim(Aggregate):
    @staticmethod
    def create_id(invoice_no: str) -> UUID:
        return unique_named_id("invoice-claim", one_contract_one_claim_key(invoice_no))

    @event("Claimed")
    def __init__(self, invoice_no: str, provider_id: str, redemption_id: UUID, actor: str) -> None:
        self.invoice_no = invoice_no
        self.provider_id = provider_id
        self.redemption_id = redemption_id

    @classmethod
    def claim(cls, claim_id: UUID, **fields: Any) -> InvoiceClaim:
        """Create it under ``claim_id`` (see ``ContractClaim.claim``)."""
        return create(cls, cls.Claimed, claim_id, **fields)  # type: ignore[attr-defined]


class RefusedRedemption(Aggregate):
    """A redemption the ledger refused as self-dealing or as a duplicate claim. It changes no
    balance; it is kept because an attempt is evidence too (seed 002: 责任可追究), so an
    inspector can find who tried to claim their own voucher or someone else's invoice."""

    @event("Recorded")
    def __init__(
        self,
        provider_id: str,
        voucher_id: UUID,
        contract_no: str,
        invoice_no: str,
        contract_amount_fen: int,
        service_date: str,
        slug: str,
        detail: str,
        actor: str,
    ) -> None:
        self.provider_id = provider_id
        self.voucher_id = voucher_id
        self.contract_no = contract_no
        self.invoice_no = invoice_no
        self.contract_amount_fen = contract_amount_fen
        self.service_date = service_date
        self.slug = slug
        self.detail = detail
        self.attempted_by = actor


def _claimed_v1_v2(state: dict[str, Any]) -> None:
    # Before the post-subsidy was covered by its source, it was a rate of the whole contract.
    renamed(
        state,
        {
            "provider_bonus_fen": "post_subsidy_fen",
            "provider_bonus_source_id": "post_subsidy_source_id",
        },
    )
    state.setdefault("honoured_contract_fen", state["contract_amount_fen"])
    state.setdefault("rule_params", {})


evolve(ContractClaim.Claimed, _claimed_v1_v2)  # type: ignore[attr-defined]
