"""The guarantee fund (风险补偿资金池, seed 001 三(四)2–3): pools over ``guarantee_fund`` sources,
covered loans that banks register, claims on their losses, recoveries shared back, and the
compliant-loss exemption (容错纠错, seed 001 二(四)3).

A claim's compensation is decided when it is filed, by the pool's rule (ledger/rules.py
``risk-compensation@1`` or ``@2``), and counts against every cap from then on: the loan holds
what its claims lost and got, a ``BankYear`` what the pool decided for the bank in a fiscal
year, and the pool's sources reserve their split at once, so no source owes more than it has."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidState
from ledger.ids import named_id

FILED, APPROVED = "filed", "approved"  # a claim is "paid" when every payable line of it is
REJECTED = "rejected"  # by a programme officer, before approval: it counts against no cap


class GuaranteePool(Aggregate):
    @staticmethod
    def create_id(pool_id: str) -> UUID:
        return named_id("guarantee-pool", pool_id)

    @event("Opened")
    def __init__(
        self,
        pool_id: str,
        name: str,
        shares: list[list[Any]],
        rule: str,
        bank_annual_cap_fen: int | None,
        actor: str,
    ) -> None:
        self.pool_id = pool_id
        self.name = name
        self.shares = [(str(s), int(bp)) for s, bp in shares]  # [(source id, bp)], Σ = 10000
        self.rule = rule  # the ref of the risk-compensation rule it pays by
        self.bank_annual_cap_fen = bank_annual_cap_fen
        self.opened_by = actor


class GuaranteeLoan(Aggregate):
    """A loan a bank registered as covered by a pool (a loan is in one pool), and what its
    claims lost and were compensated so far: the per-loan caps count them."""

    @staticmethod
    def create_id(bank_id: str, loan_id: str) -> UUID:
        return named_id("guarantee-loan", bank_id, loan_id)

    @event("Registered")
    def __init__(
        self,
        loan_id: str,
        bank_id: str,
        pool_id: str,
        borrower_id: str,
        principal_fen: int,
        start_date: str,
        term_months: int,
        first_loan: bool,
        credit_only: bool,
        ip_pledge: bool,
        credit_share_bp: int | None,
        actor: str,
    ) -> None:
        self.loan_id = loan_id
        self.bank_id = bank_id
        self.pool_id = pool_id
        self.borrower_id = borrower_id
        self.principal_fen = principal_fen
        self.start_date = start_date
        self.term_months = term_months
        self.first_loan = first_loan
        self.credit_only = credit_only
        self.ip_pledge = ip_pledge
        self.credit_share_bp = credit_share_bp
        self.losses_fen = 0
        self.compensated_fen = 0
        self.claim_ids: list[UUID] = []

    def check_claimable(self, loss_fen: int) -> None:
        if self.losses_fen + loss_fen > self.principal_fen:
            raise InvalidState(
                f"loan {self.loan_id}: losses of {self.losses_fen + loss_fen} fen would exceed its "
                f"principal of {self.principal_fen}"
            )

    @event("ClaimFiled")
    def count_claim(self, claim_id: UUID, loss_fen: int, compensation_fen: int) -> None:
        self.losses_fen += loss_fen
        self.compensated_fen += compensation_fen
        self.claim_ids.append(claim_id)

    @event("ClaimRejected")
    def uncount_claim(self, claim_id: UUID, loss_fen: int, compensation_fen: int) -> None:
        """A rejected claim's loss and compensation no longer count on the loan."""
        self.losses_fen -= loss_fen
        self.compensated_fen -= compensation_fen
        self.claim_ids.remove(claim_id)


class BankYear(Aggregate):
    """What a pool decided to compensate one bank in one fiscal year: its annual cap counts it."""

    @staticmethod
    def create_id(pool_id: str, bank_id: str, fiscal_year: int) -> UUID:
        return named_id("guarantee-bank-year", pool_id, bank_id, fiscal_year)

    @event("Opened")
    def __init__(self, pool_id: str, bank_id: str, fiscal_year: int) -> None:
        self.pool_id = pool_id
        self.bank_id = bank_id
        self.fiscal_year = fiscal_year
        self.compensated_fen = 0

    @event("Compensated")
    def count(self, claim_id: UUID, compensation_fen: int) -> None:
        self.compensated_fen += compensation_fen

    @event("CompensationWithdrawn")
    def uncount(self, claim_id: UUID, compensation_fen: int) -> None:
        """A rejected claim's compensation no longer counts against the bank's annual cap."""
        self.compensated_fen -= compensation_fen


class GuaranteeClaim(Aggregate):
    """A bank's claim on a covered loan's loss. Filed by the bank with its compensation decided;
    approved by a programme officer, which makes the compensation payable to the bank."""

    @event("Filed")
    def __init__(
        self,
        loan_id: str,
        bank_id: str,
        pool_id: str,
        borrower_id: str,
        loss_fen: int,
        default_date: str,
        fiscal_year: int,
        decision: dict[str, Any],
        splits: list[list[Any]],
        actor: str,
    ) -> None:
        self.loan_id = loan_id
        self.bank_id = bank_id
        self.pool_id = pool_id
        self.borrower_id = borrower_id
        self.loss_fen = loss_fen
        self.default_date = default_date
        self.fiscal_year = fiscal_year  # of the default: the bank's annual cap counts in it
        self.decision = decision  # the rule, every parameter, the tier and each cut
        self.rule = str(decision["rule"])
        self.compensation_fen = int(decision["compensation_fen"])
        self.not_compensated_fen = int(decision["not_compensated_fen"])
        self.splits = [(str(s), int(a)) for s, a in splits]  # [(source id, fen)]
        self.filed_by = actor
        self.status = FILED
        self.approved_by: str | None = None
        self.recovered_fen = 0  # what the bank recovered from the borrower, in all
        self.returned_fen = 0  # the fund's share of it, returned
        self.returned_by_source = {s: 0 for s, _ in self.splits}
        self.exemption: dict[str, Any] | None = None

    def approve(self, actor: str) -> None:
        if self.status != FILED:
            raise InvalidState(f"guarantee claim {self.id} is {self.status}, not filed")
        self._approved(actor=actor, splits=[[s, a] for s, a in self.splits])

    @event("Approved")
    def _approved(self, actor: str, splits: list[list[Any]]) -> None:
        self.status = APPROVED
        self.approved_by = actor

    def reject(self, reason: str, actor: str) -> None:
        if self.status != FILED:
            raise InvalidState(f"guarantee claim {self.id} is {self.status}, not filed")
        self._rejected(reason=reason, actor=actor)

    @event("Rejected")
    def _rejected(self, reason: str, actor: str) -> None:
        self.status = REJECTED
        self.rejected_by = actor
        self.rejection_reason = reason

    def check_approved(self) -> None:
        if self.status != APPROVED:
            raise InvalidState(f"guarantee claim {self.id} is {self.status}, not approved")

    def recover(
        self,
        amount_fen: int,
        recovered_on: str,
        returned_fen: int,
        splits: list[tuple[str, int]],
        rule: str,
        actor: str,
    ) -> None:
        self.check_approved()
        assert returned_fen == sum(a for _, a in splits) >= 0
        self._recovered(
            amount_fen=amount_fen,
            recovered_on=recovered_on,
            returned_to_fund_fen=returned_fen,
            splits=[[s, a] for s, a in splits],
            rule=rule,
            actor=actor,
        )

    @event("Recovered")
    def _recovered(
        self,
        amount_fen: int,
        recovered_on: str,
        returned_to_fund_fen: int,
        splits: list[list[Any]],
        rule: str,
        actor: str,
    ) -> None:
        self.recovered_fen += amount_fen
        self.returned_fen += returned_to_fund_fen
        for source_id, part_fen in splits:
            self.returned_by_source[source_id] += part_fen

    def exempt(
        self, decision_ref: str, decided_on: str, reason: str, net_loss_fen: int, actor: str
    ) -> None:
        """容错纠错: the net loss is recorded as a compliant loss exempt from accountability."""
        self.check_approved()
        if self.exemption is not None:
            raise InvalidState(f"guarantee claim {self.id} is already exempt")
        self._exempted(
            decision_ref=decision_ref,
            decided_on=decided_on,
            reason=reason,
            net_loss_fen=net_loss_fen,
            actor=actor,
        )

    @event("Exempted")
    def _exempted(
        self, decision_ref: str, decided_on: str, reason: str, net_loss_fen: int, actor: str
    ) -> None:
        self.exemption = {
            "decision_ref": decision_ref,
            "decided_on": decided_on,
            "reason": reason,
            "net_loss_fen": net_loss_fen,
            "exempted_by": actor,
        }
