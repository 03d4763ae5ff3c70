"""Redeeming a voucher, and clawing a redemption back: the ledger's hot path.

``redeem`` is two steps (STYLE.md: checks, then verbs): ``decide`` gathers every check and every
amount into a ``RedemptionDecision`` without changing anything, then ``carry_out`` applies it as
a short run of business verbs. A refusal that says something about the provider (self-dealing,
a claim made twice) is returned with the attempt stored as evidence, in the same command."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from ledger import rules, signatures
from ledger.caps import EnterpriseYear, ProviderYear, room_fen
from ledger.claims import ContractClaim, InvoiceClaim, RefusedRedemption
from ledger.errors import DuplicateClaim, EnterpriseCapReached, Refused, SelfDealing
from ledger.funding import FundingSource, Programme
from ledger.institution import Institution
from ledger.unit_of_work import Work
from ledger.views import RedemptionView
from ledger.voucher import Voucher

COFUNDING = rules.VOUCHER_COFUNDING.ref
POST_SUBSIDY = rules.PROVIDER_POST_SUBSIDY.ref
ENTERPRISE_CAP = rules.ENTERPRISE_ANNUAL_CAP.ref
# The rules a redemption is decided by, as its event records them.
REDEMPTION_RULES = [COFUNDING, POST_SUBSIDY, ENTERPRISE_CAP, rules.ONE_CONTRACT_ONE_CLAIM.ref]
# Refusals that say something about the provider rather than the input: the attempt is stored
# as a RefusedRedemption (and nothing else changes).
RECORDED_REFUSALS = (SelfDealing, DuplicateClaim)


@dataclass(frozen=True)
class Redeem:
    voucher_id: UUID
    provider_id: str
    contract_no: str
    invoice_no: str
    service_category: str
    contract_amount_fen: int
    service_date: dt.date
    signature: str | None
    actor: str
    signed_payload: bytes | None = None  # what the signature signs: the canonical request
    today: dt.date | None = None  # service dates after it are refused


@dataclass(frozen=True)
class Amounts:
    """What a redemption pays, and the counters and sources that record it."""

    e_year: EnterpriseYear | None
    p_year: ProviderYear | None
    subsidy: rules.SubsidyDecision
    splits: list[tuple[str, int]]
    honoured_contract_fen: int
    post_subsidy_fen: int
    # The post-subsidy source, when this redemption uses the voucher up and so releases what
    # the voucher reserved for post-subsidy and did not use.
    releasing_source: FundingSource | None


@dataclass(frozen=True)
class RedemptionDecision:
    """Everything a redemption checked and every amount it will record."""

    voucher: Voucher
    programme: Programme
    claim_id: UUID
    invoice_id: UUID
    public_key_sha256: str | None  # the provider's key in force, if it signs
    amounts: Amounts


def redeem(work: Work, c: Redeem) -> RedemptionView | Refused:
    try:
        decision = decide(work, c)
    except RECORDED_REFUSALS as refusal:
        record_refusal(work, c, refusal.slug, refusal.detail)
        return Refused(refusal)
    return carry_out(work, c, decision)


def decide(work: Work, c: Redeem) -> RedemptionDecision:
    """Every check, in the order a refusal is reported: the signature before anything else
    (an unsigned or forged request is evidence of nothing), who may redeem, the voucher's
    dates, duplicates, the caps last."""
    voucher = work.get(Voucher, c.voucher_id, f"voucher {c.voucher_id}")
    provider = _check_provider(work, c, voucher)
    voucher.check_redeemable(c.service_date, c.today)
    claim_id = ContractClaim.create_id(c.provider_id, c.contract_no)
    invoice_id = InvoiceClaim.create_id(c.invoice_no)
    if work.claim_exists(ContractClaim, claim_id):
        raise DuplicateClaim(f"contract {c.contract_no} of {c.provider_id} was already claimed")
    if work.claim_exists(InvoiceClaim, invoice_id):
        raise DuplicateClaim(f"invoice {c.invoice_no} was already claimed")
    programme = work.get(Programme, Programme.create_id(voucher.programme_id), "programme")
    amounts = _decide_amounts(work, c, voucher, programme)
    return RedemptionDecision(
        voucher, programme, claim_id, invoice_id, provider.key_sha256, amounts
    )


def _check_provider(work: Work, c: Redeem, voucher: Voucher) -> Institution:
    provider = work.get(
        Institution, Institution.create_id(c.provider_id), f"provider {c.provider_id}"
    )
    if provider.public_key_pem is not None:
        signatures.verify(provider.public_key_pem, c.signature, c.signed_payload)
    if c.provider_id == voucher.holder_id:
        raise SelfDealing(f"provider {c.provider_id} holds voucher {voucher.id}")
    provider.check_kind("provider")
    provider.check_payable()
    return provider


def _decide_amounts(work: Work, c: Redeem, voucher: Voucher, programme: Programme) -> Amounts:
    """The subsidy within the enterprise's cap, the honoured contract, and the post-subsidy
    within the provider's cap and what the voucher holds for it, by the programme's rules."""
    fy, params = voucher.fiscal_year, programme.rule_params
    e_year = work.find(EnterpriseYear, EnterpriseYear.create_id(voucher.holder_id, fy))
    e_room_fen = rules.enterprise_annual_cap_remaining_fen(
        e_year.subsidy_received_fen if e_year else 0, params[ENTERPRISE_CAP]
    )
    if e_room_fen <= 0:
        raise EnterpriseCapReached(f"enterprise {voucher.holder_id} has no cap left in {fy}")
    sources = [s for s, _ in voucher.reservations]
    subsidy = rules.voucher_cofunding(
        c.contract_amount_fen,
        [voucher.remaining_by_source[s] for s in sources],
        e_room_fen,
        params[COFUNDING],
    )
    honoured_fen = rules.honoured_contract_fen(
        c.contract_amount_fen, subsidy.subsidy_fen, sum(params[COFUNDING]["shares_bp"])
    )
    p_year = work.find(ProviderYear, ProviderYear.create_id(c.provider_id, fy))
    post_params = params[POST_SUBSIDY]
    post_subsidy_fen = min(
        rules.provider_post_subsidy_fen(honoured_fen, post_params),
        room_fen(p_year, post_params["annual_cap_fen"]),
        voucher.post_subsidy_remaining_fen,
    )
    return Amounts(
        e_year=e_year,
        p_year=p_year,
        subsidy=subsidy,
        splits=list(zip(sources, subsidy.splits, strict=True)),
        honoured_contract_fen=honoured_fen,
        post_subsidy_fen=post_subsidy_fen,
        releasing_source=_releasing_source(work, voucher, subsidy, post_subsidy_fen),
    )


def _releasing_source(
    work: Work, voucher: Voucher, subsidy: rules.SubsidyDecision, post_subsidy_fen: int
) -> FundingSource | None:
    uses_up = subsidy.subsidy_fen == voucher.remaining_fen
    if not uses_up or voucher.post_subsidy_remaining_fen == post_subsidy_fen:
        return None
    assert voucher.post_subsidy_source_id is not None
    source_id = voucher.post_subsidy_source_id
    return work.get(
        FundingSource, FundingSource.create_id(source_id), f"funding source {source_id}"
    )


def carry_out(work: Work, c: Redeem, d: RedemptionDecision) -> RedemptionView:
    """The decision, as business verbs; every check has passed."""
    voucher, programme, fy, m = d.voucher, d.programme, d.voucher.fiscal_year, d.amounts
    claim = work.add(_claim(c, d))
    released_fen = voucher.redeem(
        claim.id,
        c.provider_id,
        c.contract_amount_fen,
        m.splits,
        c.service_date,
        c.actor,
        COFUNDING,
        post_subsidy_fen=m.post_subsidy_fen,
    )
    if released_fen:
        assert m.releasing_source is not None
        m.releasing_source.release(0, voucher.id, "used up", c.actor, post_subsidy_fen=released_fen)
    work.add(
        InvoiceClaim.claim(
            d.invoice_id,
            invoice_no=c.invoice_no,
            provider_id=c.provider_id,
            redemption_id=claim.id,
            actor=c.actor,
        )
    )
    e_year = m.e_year or work.add(
        EnterpriseYear(holder_id=voucher.holder_id, fiscal_year=fy, actor=c.actor)
    )
    e_year.receive(
        subsidy_fen=m.subsidy.subsidy_fen,
        cap_fen=programme.enterprise_annual_cap_fen,
        redemption_id=claim.id,
        rule=ENTERPRISE_CAP,
        actor=c.actor,
    )
    p_year = m.p_year or work.add(
        ProviderYear(provider_id=c.provider_id, fiscal_year=fy, actor=c.actor)
    )
    p_year.accrue(
        contract_amount_fen=c.contract_amount_fen,
        subsidy_fen=m.subsidy.subsidy_fen,
        post_subsidy_fen=m.post_subsidy_fen,
        post_subsidy_cap_fen=programme.post_subsidy_annual_cap_fen,
        redemption_id=claim.id,
        rule=POST_SUBSIDY,
        actor=c.actor,
    )
    return RedemptionView.of(claim, voucher.remaining_fen)


def _claim(c: Redeem, d: RedemptionDecision) -> ContractClaim:
    """The redemption itself, with the amounts, the rules and parameters that decided them,
    and what the provider signed."""
    voucher, m = d.voucher, d.amounts
    return ContractClaim.claim(
        d.claim_id,
        provider_id=c.provider_id,
        contract_no=c.contract_no,
        invoice_no=c.invoice_no,
        voucher_id=voucher.id,
        programme_id=voucher.programme_id,
        holder_id=voucher.holder_id,
        fiscal_year=voucher.fiscal_year,
        service_category=c.service_category,
        service_date=c.service_date.isoformat(),
        contract_amount_fen=c.contract_amount_fen,
        subsidy_fen=m.subsidy.subsidy_fen,
        enterprise_pays_fen=m.subsidy.enterprise_pays_fen,
        splits=[[s, a] for s, a in m.splits],
        honoured_contract_fen=m.honoured_contract_fen,
        post_subsidy_fen=m.post_subsidy_fen,
        post_subsidy_source_id=d.programme.post_subsidy_source_id,
        actor=c.actor,
        rules=REDEMPTION_RULES,
        rule_params=d.programme.rule_params,
        signature=c.signature,
        signed_payload=c.signed_payload.decode() if c.signature and c.signed_payload else None,
        public_key_sha256=d.public_key_sha256 if c.signature else None,
    )


def record_refusal(work: Work, c: Redeem, slug: str, detail: str) -> None:
    """Keep the attempt behind a refused redemption (``RECORDED_REFUSALS``)."""
    work.add(
        RefusedRedemption(
            provider_id=c.provider_id,
            voucher_id=c.voucher_id,
            contract_no=c.contract_no,
            invoice_no=c.invoice_no,
            contract_amount_fen=c.contract_amount_fen,
            service_date=c.service_date.isoformat(),
            slug=slug,
            detail=detail,
            actor=c.actor,
        )
    )


@dataclass(frozen=True)
class ClawBack:
    redemption_id: UUID
    reason_code: str
    actor: str


def claw_back(work: Work, c: ClawBack) -> RedemptionView:
    """Compensate an improper redemption: its sources recover its subsidy and its
    post-subsidy, the caps' counters record the reversal, and the history keeps both."""
    claim = work.get(ContractClaim, c.redemption_id, f"redemption {c.redemption_id}")
    recoveries = [(s, a, "subsidy") for s, a in claim.splits]
    recoveries.append((claim.post_subsidy_source_id, claim.post_subsidy_fen, "post_subsidy"))
    sources = {
        s: work.get(FundingSource, FundingSource.create_id(s), f"funding source {s}")
        for s, amount_fen, _ in recoveries
        if amount_fen
    }
    e_year = work.get(
        EnterpriseYear,
        EnterpriseYear.create_id(claim.holder_id, claim.fiscal_year),
        "enterprise year",
    )
    p_year = work.get(
        ProviderYear, ProviderYear.create_id(claim.provider_id, claim.fiscal_year), "provider year"
    )
    voucher = work.latest(Voucher, claim.voucher_id, "voucher")
    claim.claw_back(c.reason_code, c.actor)
    for source_id, amount_fen, kind in recoveries:
        if amount_fen:
            sources[source_id].recover(
                amount_fen=amount_fen,
                redemption_id=claim.id,
                reason_code=c.reason_code,
                actor=c.actor,
                kind=kind,
            )
    e_year.claw_back(
        amount_fen=claim.subsidy_fen,
        redemption_id=claim.id,
        reason_code=c.reason_code,
        actor=c.actor,
    )
    p_year.claw_back(
        amount_fen=claim.post_subsidy_fen,
        redemption_id=claim.id,
        reason_code=c.reason_code,
        actor=c.actor,
    )
    return RedemptionView.of(claim, voucher.remaining_fen)
