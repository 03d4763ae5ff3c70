"""The guarantee fund's commands: open a pool, register a covered loan, file a claim (its
compensation decided at once by the pool's rule), approve it, record recoveries and the
compliant-loss exemption (ledger/guarantee.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from ledger import rules
from ledger.errors import AlreadyExists, NotFound, ValidationError
from ledger.funding import FundingSource
from ledger.guarantee import BankYear, GuaranteeClaim, GuaranteeLoan, GuaranteePool
from ledger.institution import Institution
from ledger.money import BP_WHOLE
from ledger.payout_commands import OWED
from ledger.payouts import GUARANTEE
from ledger.unit_of_work import Work
from ledger.views import StateView, state_view

RISK_COMPENSATION_RULES = (rules.RISK_COMPENSATION_V1.ref, rules.RISK_COMPENSATION_V2.ref)


def owed_by_guarantee_claim(claim: GuaranteeClaim, source_id: str, payee_id: str) -> int:
    """An approved claim's compensation from one pool source is owed to its bank."""
    if claim.bank_id != payee_id or claim.status != "approved":
        return 0
    return dict(claim.splits).get(source_id, 0)


OWED[GUARANTEE] = (GuaranteeClaim, owed_by_guarantee_claim)


@dataclass(frozen=True)
class OpenPool:
    pool_id: str
    name: str
    shares: tuple[tuple[str, int], ...]
    rule: str
    bank_annual_cap_fen: int | None
    actor: str


def open_pool(work: Work, c: OpenPool) -> StateView:
    if sum(bp for _, bp in c.shares) != BP_WHOLE:
        raise ValidationError("a pool's shares must sum to exactly 10000 bp")
    for source_id, _ in c.shares:
        source = _source(work, source_id)
        if source.level != "guarantee_fund":
            raise ValidationError(f"funding source {source_id} is not a guarantee_fund source")
    pool = GuaranteePool(
        pool_id=c.pool_id,
        name=c.name,
        shares=[[s, bp] for s, bp in c.shares],
        rule=c.rule,
        bank_annual_cap_fen=c.bank_annual_cap_fen,
        actor=c.actor,
    )
    existing = work.find(GuaranteePool, pool.id)
    if existing is None:
        return state_view(work.add(pool))
    if (existing.name, existing.shares, existing.rule, existing.bank_annual_cap_fen) != (
        pool.name,
        pool.shares,
        pool.rule,
        pool.bank_annual_cap_fen,
    ):
        raise AlreadyExists(f"guarantee pool {c.pool_id} exists with other attributes")
    return state_view(existing)


@dataclass(frozen=True)
class RegisterLoan:
    loan_id: str
    bank_id: str
    pool_id: str
    borrower_id: str
    principal_fen: int
    start_date: dt.date
    term_months: int
    first_loan: bool
    credit_only: bool
    ip_pledge: bool
    credit_share_bp: int | None
    actor: str


def register_loan(work: Work, c: RegisterLoan) -> StateView:
    _pool(work, c.pool_id)
    _institution(work, c.bank_id).check_kind("bank")
    _institution(work, c.borrower_id).check_kind("enterprise")
    if work.find(GuaranteeLoan, GuaranteeLoan.create_id(c.bank_id, c.loan_id)) is not None:
        raise AlreadyExists(f"loan {c.loan_id} of {c.bank_id} is registered: a loan is in one pool")
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    fields["start_date"] = c.start_date.isoformat()
    return state_view(work.add(GuaranteeLoan(**fields)))


@dataclass(frozen=True)
class FileClaim:
    claim_id: UUID
    bank_id: str
    loan_id: str
    loss_fen: int
    default_date: dt.date
    today: dt.date
    actor: str


def file_claim(work: Work, c: FileClaim) -> StateView:
    """Decide the compensation by the pool's rule against every cap, reserve its split on the
    pool's sources and count it on the loan and on the bank's year."""
    loan = work.get(
        GuaranteeLoan, GuaranteeLoan.create_id(c.bank_id, c.loan_id), f"loan {c.loan_id}"
    )
    if not dt.date.fromisoformat(loan.start_date) <= c.default_date <= c.today:
        raise ValidationError("default_date must lie between the loan's start and today")
    loan.check_claimable(c.loss_fen)
    pool = _pool(work, loan.pool_id)
    sources = [_source(work, s) for s, _ in pool.shares]
    year = c.default_date.year
    bank_year = work.find(BankYear, BankYear.create_id(pool.pool_id, c.bank_id, year))
    decision = rules.risk_compensation_fen(
        c.loss_fen,
        rules.LoanTerms(loan.first_loan, loan.credit_only, loan.ip_pledge, loan.credit_share_bp),
        rules.PoolTerms(
            [bp for _, bp in pool.shares],
            [s.available_fen for s in sources],
            pool.bank_annual_cap_fen,
        ),
        rules.ClaimHistory(
            loan.losses_fen, loan.compensated_fen, bank_year.compensated_fen if bank_year else 0
        ),
        rule_ref=pool.rule,
    )
    return state_view(_carry_out_claim(work, c, loan, pool, sources, bank_year, decision))


def _carry_out_claim(
    work: Work,
    c: FileClaim,
    loan: GuaranteeLoan,
    pool: GuaranteePool,
    sources: list[FundingSource],
    bank_year: BankYear | None,
    decision: rules.CompensationDecision,
) -> GuaranteeClaim:
    claim = work.add(
        GuaranteeClaim._create(  # type: ignore[attr-defined]
            GuaranteeClaim.Filed,  # type: ignore[attr-defined]
            id=c.claim_id,
            loan_id=c.loan_id,
            bank_id=c.bank_id,
            pool_id=pool.pool_id,
            borrower_id=loan.borrower_id,
            loss_fen=c.loss_fen,
            default_date=c.default_date.isoformat(),
            fiscal_year=c.default_date.year,
            decision=dataclasses.asdict(decision),
            splits=[[s.source_id, a] for s, a in zip(sources, decision.splits, strict=True)],
            actor=c.actor,
        )
    )
    for source, amount_fen in zip(sources, decision.splits, strict=True):
        if amount_fen:
            source.commit_compensation(amount_fen, claim.id, c.actor, decision.rule)
    loan.count_claim(claim.id, c.loss_fen, decision.compensation_fen)
    bank_year = bank_year or work.add(
        BankYear(pool_id=pool.pool_id, bank_id=c.bank_id, fiscal_year=c.default_date.year)
    )
    bank_year.count(claim.id, decision.compensation_fen)
    return claim


@dataclass(frozen=True)
class ApproveClaim:
    claim_id: UUID
    actor: str


def approve_claim(work: Work, c: ApproveClaim) -> StateView:
    claim = work.get(GuaranteeClaim, c.claim_id, f"guarantee claim {c.claim_id}")
    claim.approve(c.actor)
    return state_view(claim)


@dataclass(frozen=True)
class RejectClaim:
    claim_id: UUID
    reason: str
    actor: str


def reject_claim(work: Work, c: RejectClaim) -> StateView:
    """A filed claim refused before approval: its compensation goes back to the pool's
    sources, and it no longer counts on the loan or against the bank's annual cap."""
    claim = work.get(GuaranteeClaim, c.claim_id, f"guarantee claim {c.claim_id}")
    claim.reject(c.reason, c.actor)
    for source_id, amount_fen in claim.splits:
        if amount_fen:
            _source(work, source_id).release_compensation(amount_fen, claim.id, c.reason, c.actor)
    loan_id = GuaranteeLoan.create_id(claim.bank_id, claim.loan_id)
    loan = work.get(GuaranteeLoan, loan_id, f"loan {claim.loan_id}")
    loan.uncount_claim(claim.id, claim.loss_fen, claim.compensation_fen)
    bank_year = work.get(
        BankYear,
        BankYear.create_id(claim.pool_id, claim.bank_id, claim.fiscal_year),
        "the bank's year",
    )
    bank_year.uncount(claim.id, claim.compensation_fen)
    return state_view(claim)


@dataclass(frozen=True)
class RecordRecovery:
    claim_id: UUID
    bank_id: str
    amount_fen: int
    recovered_on: dt.date
    today: dt.date
    actor: str


def record_recovery(work: Work, c: RecordRecovery) -> StateView:
    """The fund's share of all recoveries so far, less what earlier ones returned, goes back to
    the pool's sources by their shares (exact over the running totals), as recovered."""
    claim = _claim_of_bank(work, c.claim_id, c.bank_id)
    claim.check_approved()
    if not dt.date.fromisoformat(claim.default_date) <= c.recovered_on <= c.today:
        raise ValidationError("recovered_on must lie between the default and today")
    returned_fen = rules.recovery_returned_fen(
        claim.recovered_fen + c.amount_fen,
        claim.compensation_fen,
        claim.loss_fen,
        claim.returned_fen,
    )
    source_ids = [s for s, _ in claim.splits]
    pool = _pool(work, claim.pool_id)
    parts = rules.recovery_returned_splits(
        claim.returned_fen + returned_fen,
        [dict(pool.shares)[s] for s in source_ids],
        [claim.returned_by_source[s] for s in source_ids],
    )
    splits = list(zip(source_ids, parts, strict=True))
    sources = {s: _source(work, s) for s, a in splits if a}
    claim.recover(
        c.amount_fen,
        c.recovered_on.isoformat(),
        returned_fen,
        splits,
        rules.RECOVERY_RETURNED.ref,
        c.actor,
    )
    for source_id, part_fen in splits:
        if part_fen:
            sources[source_id].recover(
                part_fen, claim.id, "guarantee-recovery", c.actor, "guarantee"
            )
    return {
        "claim_id": str(claim.id),
        "amount_fen": c.amount_fen,
        "returned_to_fund_fen": returned_fen,
        "splits": splits,
    }


@dataclass(frozen=True)
class Exempt:
    claim_id: UUID
    decision_ref: str
    decided_on: dt.date
    reason: str
    today: dt.date
    actor: str


def exempt_claim(work: Work, c: Exempt) -> StateView:
    claim = work.get(GuaranteeClaim, c.claim_id, f"guarantee claim {c.claim_id}")
    if c.decided_on > c.today:
        raise ValidationError("decided_on is in the future")
    net_fen = rules.compliant_loss_exemption_fen(claim.compensation_fen, claim.returned_fen)
    claim.exempt(c.decision_ref, c.decided_on.isoformat(), c.reason, net_fen, c.actor)
    return state_view(claim)


def _claim_of_bank(work: Work, claim_id: UUID, bank_id: str) -> GuaranteeClaim:
    claim = work.get(GuaranteeClaim, claim_id, f"guarantee claim {claim_id}")
    if claim.bank_id != bank_id:  # another bank's claim is, to this one, not there
        raise NotFound(f"guarantee claim {claim_id} not found")
    return claim


def _pool(work: Work, pool_id: str) -> GuaranteePool:
    return work.get(GuaranteePool, GuaranteePool.create_id(pool_id), f"guarantee pool {pool_id}")


def _source(work: Work, source_id: str) -> FundingSource:
    return work.get(
        FundingSource, FundingSource.create_id(source_id), f"funding source {source_id}"
    )


def _institution(work: Work, uscc: str) -> Institution:
    return work.get(Institution, Institution.create_id(uscc), f"institution {uscc}")
