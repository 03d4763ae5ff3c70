"""Command handlers. Each runs in the writer thread as ``handler(work, cmd)``: it loads and checks
first, then calls business verbs; the writer stores every changed aggregate in one ``save()``.

A handler must not change anything before its last check: a refused command stores nothing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from ledger import rules, signatures
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim, InvoiceClaim, RefusedRedemption
from ledger.errors import (
    AlreadyExists,
    DuplicateClaim,
    EnterpriseCapReached,
    InsufficientFunds,
    PayeeFrozen,
    SelfDealing,
    ValidationError,
)
from ledger.funding import FundingSource, Programme
from ledger.institution import Institution
from ledger.principals import Principal
from ledger.unit_of_work import Work
from ledger.views import (
    FundingSourceView,
    InstitutionView,
    PrincipalView,
    ProgrammeView,
    RedemptionView,
    VoucherView,
)
from ledger.voucher import Voucher


@dataclass(frozen=True)
class OpenFundingSource:
    source_id: str
    name: str
    level: str
    fiscal_year: int
    appropriation_fen: int
    document_ref: str
    actor: str


def open_funding_source(work: Work, c: OpenFundingSource) -> FundingSourceView:
    agg_id = FundingSource.create_id(c.source_id)
    existing = work.find(FundingSource, agg_id)
    if existing is not None:
        same = (
            existing.name,
            existing.level,
            existing.fiscal_year,
            existing.appropriation_fen,
            existing.document_ref,
        ) == (c.name, c.level, c.fiscal_year, c.appropriation_fen, c.document_ref)
        if not same:
            raise AlreadyExists(f"funding source {c.source_id} exists with other attributes")
        return FundingSourceView.of(existing)
    source = work.add(
        FundingSource(
            source_id=c.source_id,
            name=c.name,
            level=c.level,
            fiscal_year=c.fiscal_year,
            appropriation_fen=c.appropriation_fen,
            document_ref=c.document_ref,
            actor=c.actor,
        )
    )
    return FundingSourceView.of(source)


@dataclass(frozen=True)
class CreateProgramme:
    programme_id: str
    name: str
    fiscal_year: int
    shares: tuple[tuple[str, int], ...]
    max_face_value_fen: int
    provider_bonus_rate_bp: int
    provider_bonus_source_id: str
    provider_annual_cap_fen: int
    enterprise_annual_cap_fen: int
    actor: str


def create_programme(work: Work, c: CreateProgramme) -> ProgrammeView:
    for source_id in [s for s, _ in c.shares] + [c.provider_bonus_source_id]:
        source = work.get(
            FundingSource, FundingSource.create_id(source_id), f"funding source {source_id}"
        )
        if source.fiscal_year != c.fiscal_year:
            raise ValidationError(
                f"funding source {source_id} is for fiscal year {source.fiscal_year}, "
                f"the programme for {c.fiscal_year}"
            )
    candidate = Programme(
        programme_id=c.programme_id,
        name=c.name,
        fiscal_year=c.fiscal_year,
        shares=[[s, bp] for s, bp in c.shares],
        max_face_value_fen=c.max_face_value_fen,
        provider_bonus_rate_bp=c.provider_bonus_rate_bp,
        provider_bonus_source_id=c.provider_bonus_source_id,
        provider_annual_cap_fen=c.provider_annual_cap_fen,
        enterprise_annual_cap_fen=c.enterprise_annual_cap_fen,
        actor=c.actor,
    )
    existing = work.find(Programme, candidate.id)
    if existing is None:
        return ProgrammeView.of(work.add(candidate))
    if ProgrammeView.of(existing) != ProgrammeView.of(candidate):
        raise AlreadyExists(f"programme {c.programme_id} exists with other attributes")
    return ProgrammeView.of(existing)


@dataclass(frozen=True)
class RegisterInstitution:
    uscc: str
    name: str
    kind: str
    public_key_pem: str | None
    bank_account: str | None
    contact: str | None
    actor: str


def register_institution(work: Work, c: RegisterInstitution) -> InstitutionView:
    existing = work.find(Institution, Institution.create_id(c.uscc))
    if existing is not None:
        same = (existing.name, existing.kind, existing.public_key_pem) == (
            c.name,
            c.kind,
            c.public_key_pem,
        )
        if not same:
            raise AlreadyExists(f"institution {c.uscc} exists with other attributes")
        return InstitutionView.of(existing)
    institution = work.add(
        Institution(
            uscc=c.uscc,
            name=c.name,
            kind=c.kind,
            public_key_pem=c.public_key_pem,
            actor=c.actor,
            bank_account=c.bank_account,
            contact=c.contact,
        )
    )
    return InstitutionView.of(institution)


@dataclass(frozen=True)
class SetFrozen:
    uscc: str
    frozen: bool
    reason: str
    actor: str


def set_frozen(work: Work, c: SetFrozen) -> InstitutionView:
    institution = work.get(Institution, Institution.create_id(c.uscc), f"institution {c.uscc}")
    if c.frozen:
        institution.freeze(c.reason, c.actor)
    else:
        institution.unfreeze(c.reason, c.actor)
    return InstitutionView.of(institution)


@dataclass(frozen=True)
class IssueVoucher:
    programme_id: str
    holder_id: str
    face_value_fen: int
    valid_until: dt.date
    today: dt.date
    actor: str


def issue_voucher(work: Work, c: IssueVoucher) -> VoucherView:
    programme = work.get(
        Programme, Programme.create_id(c.programme_id), f"programme {c.programme_id}"
    )
    holder = work.get(Institution, Institution.create_id(c.holder_id), f"holder {c.holder_id}")
    # A service provider can itself be a small firm that holds a voucher (a research institute
    # buying testing elsewhere); redeeming its own voucher is then refused as self-dealing.
    if holder.kind == "bank":
        raise ValidationError(f"holder {c.holder_id} is a bank: vouchers go to firms")
    if c.face_value_fen > programme.max_face_value_fen:
        raise ValidationError(
            f"face_value_fen {c.face_value_fen} exceeds the programme maximum "
            f"{programme.max_face_value_fen}"
        )
    if c.valid_until < c.today:
        raise ValidationError(f"valid_until {c.valid_until} is in the past")
    amounts = rules.reservation_split(c.face_value_fen, [bp for _, bp in programme.shares])
    sources = [
        work.get(FundingSource, FundingSource.create_id(s), f"funding source {s}")
        for s, _ in programme.shares
    ]
    for source, amount_fen in zip(sources, amounts, strict=True):
        if amount_fen > source.available_fen:
            raise InsufficientFunds(
                f"funding source {source.source_id} has {source.available_fen} fen available, "
                f"{amount_fen} fen needed"
            )
    voucher = work.add(
        Voucher(
            programme_id=c.programme_id,
            holder_id=c.holder_id,
            fiscal_year=programme.fiscal_year,
            face_value_fen=c.face_value_fen,
            valid_until=c.valid_until.isoformat(),
            reservations=[[s.source_id, a] for s, a in zip(sources, amounts, strict=True)],
            actor=c.actor,
            rule=rules.VOUCHER_RESERVATION.ref,
        )
    )
    for source, amount_fen in zip(sources, amounts, strict=True):
        source.reserve(amount_fen, voucher.id, c.actor, rules.VOUCHER_RESERVATION.ref)
    return VoucherView.of(voucher)


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


@dataclass(frozen=True)
class Refusal:
    attempt: Redeem
    slug: str
    detail: str


def record_refusal(work: Work, r: Refusal) -> None:
    """Keep the attempt behind a refused redemption (``RECORDED_REFUSALS``)."""
    c = r.attempt
    work.add(
        RefusedRedemption(
            provider_id=c.provider_id,
            voucher_id=c.voucher_id,
            contract_no=c.contract_no,
            invoice_no=c.invoice_no,
            contract_amount_fen=c.contract_amount_fen,
            service_date=c.service_date.isoformat(),
            slug=r.slug,
            detail=r.detail,
            actor=c.actor,
        )
    )


# Refusals that say something about the provider rather than the input: an attempt at one is
# stored as a RefusedRedemption (and nothing else changes).
RECORDED_REFUSALS = (SelfDealing, DuplicateClaim)


def redeem(work: Work, c: Redeem) -> RedemptionView:
    voucher = work.get(Voucher, c.voucher_id, f"voucher {c.voucher_id}")
    provider = work.get(
        Institution, Institution.create_id(c.provider_id), f"provider {c.provider_id}"
    )
    if c.provider_id == voucher.holder_id:
        raise SelfDealing(f"provider {c.provider_id} holds voucher {voucher.id}")
    if provider.kind != "provider":
        raise ValidationError(f"institution {c.provider_id} is not a service provider")
    if provider.frozen:
        raise PayeeFrozen(f"provider {c.provider_id} is frozen: {provider.frozen_reason}")
    if provider.public_key_pem is not None:
        signatures.verify(provider.public_key_pem, c.signature, c.signed_payload)
    voucher.check_redeemable(c.service_date)
    programme = work.get(Programme, Programme.create_id(voucher.programme_id), "programme")
    claim_id = ContractClaim.create_id(c.provider_id, c.contract_no)
    invoice_id = InvoiceClaim.create_id(c.invoice_no)
    if work.claim_exists(ContractClaim, claim_id):
        raise DuplicateClaim(f"contract {c.contract_no} of {c.provider_id} was already claimed")
    if work.claim_exists(InvoiceClaim, invoice_id):
        raise DuplicateClaim(f"invoice {c.invoice_no} was already claimed")
    fy = voucher.fiscal_year
    e_year = work.find(EnterpriseYear, EnterpriseYear.create_id(voucher.holder_id, fy))
    e_cap_fen = programme.enterprise_annual_cap_fen
    e_cap_left = e_year.cap_remaining_fen(e_cap_fen) if e_year else e_cap_fen
    if e_cap_left <= 0:
        raise EnterpriseCapReached(f"enterprise {voucher.holder_id} has no cap left in {fy}")
    p_year = work.find(ProviderYear, ProviderYear.create_id(c.provider_id, fy))
    p_cap_fen = programme.provider_annual_cap_fen
    sources = [s for s, _ in voucher.reservations]
    decision = rules.voucher_subsidy(
        c.contract_amount_fen,
        programme.shares_bp_total,
        [voucher.remaining_by_source[s] for s in sources],
        e_cap_left,
    )
    bonus_fen = rules.provider_bonus_fen(
        c.contract_amount_fen,
        programme.provider_bonus_rate_bp,
        p_year.bonus_cap_remaining_fen(p_cap_fen) if p_year else p_cap_fen,
    )
    splits = list(zip(sources, decision.splits, strict=True))
    # All checks passed: from here on, only verbs.
    claim = work.add(
        ContractClaim.claim(
            claim_id,
            provider_id=c.provider_id,
            contract_no=c.contract_no,
            invoice_no=c.invoice_no,
            voucher_id=voucher.id,
            programme_id=voucher.programme_id,
            holder_id=voucher.holder_id,
            fiscal_year=fy,
            service_category=c.service_category,
            service_date=c.service_date.isoformat(),
            contract_amount_fen=c.contract_amount_fen,
            subsidy_fen=decision.subsidy_fen,
            enterprise_pays_fen=decision.enterprise_pays_fen,
            splits=[[s, a] for s, a in splits],
            provider_bonus_fen=bonus_fen,
            provider_bonus_source_id=programme.provider_bonus_source_id,
            actor=c.actor,
            rules=[
                rules.VOUCHER_COFUNDING.ref,
                rules.PROVIDER_POST_SUBSIDY.ref,
                rules.ENTERPRISE_ANNUAL_CAP.ref,
                rules.ONE_CONTRACT_ONE_CLAIM.ref,
            ],
            signature=c.signature,
            signed_payload=c.signed_payload.decode() if c.signature and c.signed_payload else None,
        )
    )
    voucher.redeem(
        claim.id,
        c.provider_id,
        c.contract_amount_fen,
        splits,
        c.service_date,
        c.actor,
        rules.VOUCHER_COFUNDING.ref,
    )
    work.add(
        InvoiceClaim.claim(
            invoice_id,
            invoice_no=c.invoice_no,
            provider_id=c.provider_id,
            redemption_id=claim.id,
            actor=c.actor,
        )
    )
    e_year = e_year or work.add(
        EnterpriseYear(holder_id=voucher.holder_id, fiscal_year=fy, actor=c.actor)
    )
    e_year.receive(
        subsidy_fen=decision.subsidy_fen,
        cap_fen=e_cap_fen,
        redemption_id=claim.id,
        rule=rules.ENTERPRISE_ANNUAL_CAP.ref,
        actor=c.actor,
    )
    p_year = p_year or work.add(
        ProviderYear(provider_id=c.provider_id, fiscal_year=fy, actor=c.actor)
    )
    p_year.accrue(
        contract_amount_fen=c.contract_amount_fen,
        subsidy_fen=decision.subsidy_fen,
        bonus_fen=bonus_fen,
        bonus_cap_fen=p_cap_fen,
        redemption_id=claim.id,
        rule=rules.PROVIDER_POST_SUBSIDY.ref,
        actor=c.actor,
    )
    return RedemptionView.of(claim, voucher.remaining_fen)


@dataclass(frozen=True)
class Revoke:
    voucher_id: UUID
    reason: str
    actor: str


def revoke_voucher(work: Work, c: Revoke) -> VoucherView:
    voucher = work.get(Voucher, c.voucher_id, f"voucher {c.voucher_id}")
    sources = _sources_of(work, voucher)
    released = voucher.revoke(c.reason, c.actor)
    _release(sources, released, voucher.id, f"revoked: {c.reason}", c.actor)
    return VoucherView.of(voucher)


@dataclass(frozen=True)
class Expire:
    voucher_ids: tuple[UUID, ...]
    as_of: dt.date
    actor: str


def expire_vouchers(work: Work, c: Expire) -> list[UUID]:
    """Expire those of ``voucher_ids`` still active past their date; returns the ones expired."""
    expired: list[UUID] = []
    for voucher_id in c.voucher_ids:
        voucher = work.find(Voucher, voucher_id)
        if voucher is None or voucher.status != "active" or voucher.status_on(c.as_of) != "expired":
            continue
        sources = _sources_of(work, voucher)
        released = voucher.expire(c.as_of, c.actor)
        _release(sources, released, voucher.id, "expired", c.actor)
        expired.append(voucher_id)
    return expired


def _sources_of(work: Work, voucher: Voucher) -> dict[str, FundingSource]:
    return {
        s: work.get(FundingSource, FundingSource.create_id(s), f"funding source {s}")
        for s, _ in voucher.reservations
    }


def _release(
    sources: dict[str, FundingSource],
    released: list[tuple[str, int]],
    voucher_id: UUID,
    reason: str,
    actor: str,
) -> None:
    for source_id, amount_fen in released:
        if amount_fen:
            sources[source_id].release(amount_fen, voucher_id, reason, actor)


@dataclass(frozen=True)
class ClawBack:
    redemption_id: UUID
    reason_code: str
    actor: str


def claw_back(work: Work, c: ClawBack) -> RedemptionView:
    """Compensate an improper redemption: the sources recover its subsidy, the provider's bonus is
    reversed, and the history keeps both the redemption and the clawback."""
    claim = work.get(ContractClaim, c.redemption_id, f"redemption {c.redemption_id}")
    sources = {
        s: work.get(FundingSource, FundingSource.create_id(s), f"funding source {s}")
        for s, _ in claim.splits
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
    for source_id, amount_fen in claim.splits:
        if amount_fen:
            sources[source_id].recover(
                amount_fen=amount_fen,
                redemption_id=claim.id,
                reason_code=c.reason_code,
                actor=c.actor,
            )
    e_year.claw_back(
        amount_fen=claim.subsidy_fen,
        redemption_id=claim.id,
        reason_code=c.reason_code,
        actor=c.actor,
    )
    p_year.claw_back(
        amount_fen=claim.provider_bonus_fen,
        redemption_id=claim.id,
        reason_code=c.reason_code,
        actor=c.actor,
    )
    return RedemptionView.of(claim, voucher.remaining_fen)


@dataclass(frozen=True)
class CreatePrincipal:
    token_sha256: str
    name: str
    role: str
    institution_id: str | None
    actor: str


def create_principal(work: Work, c: CreatePrincipal) -> PrincipalView:
    """A provider principal acts for exactly one registered provider; other roles for none."""
    if c.role == "provider":
        if c.institution_id is None:
            raise ValidationError("a provider principal needs institution_id")
        institution = work.get(
            Institution, Institution.create_id(c.institution_id), f"institution {c.institution_id}"
        )
        if institution.kind != "provider":
            raise ValidationError(f"institution {c.institution_id} is not a service provider")
    elif c.institution_id is not None:
        raise ValidationError("only a provider principal is bound to an institution")
    if work.find(Principal, Principal.create_id(c.token_sha256)) is not None:
        raise AlreadyExists("a principal with this token exists")
    principal = work.add(
        Principal(
            token_sha256=c.token_sha256,
            name=c.name,
            role=c.role,
            institution_id=c.institution_id,
            actor=c.actor,
        )
    )
    return PrincipalView.of(principal)
