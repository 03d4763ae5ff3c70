"""Command handlers. Each runs in the writer thread as ``handler(work, cmd)``: it loads and checks
first, then calls business verbs; the writer stores every changed aggregate in one ``save()``.

A handler must not change anything before its last check: a refused command stores nothing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from ledger import rules
from ledger.errors import (
    AlreadyExists,
    ValidationError,
)
from ledger.funding import FundingSource, Programme, programme_rule_params
from ledger.institution import Institution
from ledger.principals import BOUND_ROLES, Principal, TokenBinding
from ledger.unit_of_work import Work
from ledger.views import (
    FundingSourceView,
    InstitutionView,
    PrincipalView,
    ProgrammeView,
    VoucherView,
)
from ledger.voucher import Unused, Voucher


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
    post_subsidy_rate_bp: int
    post_subsidy_source_id: str
    post_subsidy_annual_cap_fen: int
    enterprise_annual_cap_fen: int
    actor: str


def create_programme(work: Work, c: CreateProgramme) -> ProgrammeView:
    for source_id in [s for s, _ in c.shares] + [c.post_subsidy_source_id]:
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
        post_subsidy_rate_bp=c.post_subsidy_rate_bp,
        post_subsidy_source_id=c.post_subsidy_source_id,
        post_subsidy_annual_cap_fen=c.post_subsidy_annual_cap_fen,
        enterprise_annual_cap_fen=c.enterprise_annual_cap_fen,
        actor=c.actor,
        rule_params=programme_rule_params(
            [bp for _, bp in c.shares],
            c.post_subsidy_rate_bp,
            c.post_subsidy_annual_cap_fen,
            c.enterprise_annual_cap_fen,
        ),
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
    """Registering the same institution again with the same attributes changes nothing; with
    other attributes it is refused, naming them: keys and payment details change by their own
    commands."""
    existing = work.find(Institution, Institution.create_id(c.uscc))
    if existing is not None:
        differ = existing.differences(
            name=c.name,
            kind=c.kind,
            public_key_pem=c.public_key_pem,
            bank_account=c.bank_account,
            contact=c.contact,
        )
        if differ:
            raise AlreadyExists(
                f"institution {c.uscc} exists with other {', '.join(differ)}: change payment "
                "details or keys by their own requests"
            )
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
    institution = _institution(work, c.uscc)
    if c.frozen:
        institution.freeze(c.reason, c.actor)
    else:
        institution.unfreeze(c.reason, c.actor)
    return InstitutionView.of(institution)


@dataclass(frozen=True)
class RegisterKey:
    uscc: str
    public_key_pem: str
    reason: str
    actor: str


def register_key(work: Work, c: RegisterKey) -> InstitutionView:
    institution = _institution(work, c.uscc)
    institution.register_key(c.public_key_pem, c.reason, c.actor)
    return InstitutionView.of(institution)


@dataclass(frozen=True)
class ChangePaymentDetails:
    uscc: str
    bank_account: str | None
    contact: str | None
    reason: str
    actor: str


def change_payment_details(work: Work, c: ChangePaymentDetails) -> InstitutionView:
    institution = _institution(work, c.uscc)
    institution.change_payment_details(c.bank_account, c.contact, c.reason, c.actor)
    return InstitutionView.of(institution)


def _institution(work: Work, uscc: str) -> Institution:
    return work.get(Institution, Institution.create_id(uscc), f"institution {uscc}")


@dataclass(frozen=True)
class IssueVoucher:
    programme_id: str
    holder_id: str
    face_value_fen: int
    valid_until: dt.date
    today: dt.date
    actor: str


def issue_voucher(work: Work, c: IssueVoucher) -> VoucherView:
    """Reserve the face value across the programme's sources and, on its post-subsidy source,
    the most post-subsidy the voucher can earn; refused unless every source covers its part."""
    programme = work.get(
        Programme, Programme.create_id(c.programme_id), f"programme {c.programme_id}"
    )
    holder = _institution(work, c.holder_id)
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
    params = programme.rule_params
    reservation = rules.voucher_reservation(
        c.face_value_fen,
        params[rules.VOUCHER_COFUNDING.ref],
        params[rules.PROVIDER_POST_SUBSIDY.ref],
    )
    shares = [(s, a) for (s, _), a in zip(programme.shares, reservation.splits, strict=True)]
    post_source_id = programme.post_subsidy_source_id
    needs = _by_source([(s, a, 0) for s, a in shares], post_source_id, reservation.post_subsidy_fen)
    sources = _sources(work, needs)
    for source_id, (amount_fen, post_fen) in needs.items():
        sources[source_id].check_covers(amount_fen + post_fen)
    voucher = work.add(
        Voucher(
            programme_id=c.programme_id,
            holder_id=c.holder_id,
            fiscal_year=programme.fiscal_year,
            face_value_fen=c.face_value_fen,
            valid_until=c.valid_until.isoformat(),
            reservations=[[s, a] for s, a in shares],
            actor=c.actor,
            rule=rules.VOUCHER_RESERVATION.ref,
            issued_on=c.today.isoformat(),
            post_subsidy_source_id=post_source_id,
            post_subsidy_reserved_fen=reservation.post_subsidy_fen,
            rule_params={
                ref: params[ref]
                for ref in (rules.VOUCHER_COFUNDING.ref, rules.PROVIDER_POST_SUBSIDY.ref)
            },
        )
    )
    for source_id, (amount_fen, post_fen) in needs.items():
        sources[source_id].reserve(
            amount_fen,
            voucher.id,
            c.actor,
            rules.VOUCHER_RESERVATION.ref,
            post_subsidy_fen=post_fen,
        )
    return VoucherView.of(voucher)


def _by_source(
    subsidy: list[tuple[str, int, int]], post_source_id: str | None, post_fen: int
) -> dict[str, tuple[int, int]]:
    """(subsidy, post-subsidy) per source, in the order the sources come: the post-subsidy
    source may be one of the share sources, and then one event carries both."""
    needs: dict[str, tuple[int, int]] = {s: (a, p) for s, a, p in subsidy}
    if post_source_id is not None and post_fen:
        amount_fen, _ = needs.get(post_source_id, (0, 0))
        needs[post_source_id] = (amount_fen, post_fen)
    return needs


def _sources(work: Work, needs: dict[str, tuple[int, int]]) -> dict[str, FundingSource]:
    return {
        s: work.get(FundingSource, FundingSource.create_id(s), f"funding source {s}") for s in needs
    }


@dataclass(frozen=True)
class Revoke:
    voucher_id: UUID
    reason: str
    actor: str


def revoke_voucher(work: Work, c: Revoke) -> VoucherView:
    voucher = work.get(Voucher, c.voucher_id, f"voucher {c.voucher_id}")
    sources = _sources(work, _unused_by_source(voucher))
    unused = voucher.revoke(c.reason, c.actor)
    _release(sources, unused, voucher.id, f"revoked: {c.reason}", c.actor)
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
        sources = _sources(work, _unused_by_source(voucher))
        unused = voucher.expire(c.as_of, c.actor)
        _release(sources, unused, voucher.id, "expired", c.actor)
        expired.append(voucher_id)
    return expired


def _unused_by_source(voucher: Voucher) -> dict[str, tuple[int, int]]:
    return _by_source(
        [(s, voucher.remaining_by_source[s], 0) for s, _ in voucher.reservations],
        voucher.post_subsidy_source_id,
        voucher.post_subsidy_remaining_fen,
    )


def _release(
    sources: dict[str, FundingSource],
    unused: Unused,
    voucher_id: UUID,
    reason: str,
    actor: str,
) -> None:
    needs = _by_source(
        [(s, a, 0) for s, a in unused.subsidy],
        unused.post_subsidy_source_id,
        unused.post_subsidy_fen,
    )
    for source_id, (amount_fen, post_fen) in needs.items():
        if amount_fen or post_fen:
            sources[source_id].release(
                amount_fen, voucher_id, reason, actor, post_subsidy_fen=post_fen
            )


@dataclass(frozen=True)
class CreatePrincipal:
    token_sha256: str
    name: str
    role: str
    institution_id: str | None
    actor: str


def create_principal(work: Work, c: CreatePrincipal) -> PrincipalView:
    """A provider or bank principal acts for exactly one registered institution of its kind;
    other roles for none."""
    kind = BOUND_ROLES.get(c.role)
    if kind is not None:
        if c.institution_id is None:
            raise ValidationError(f"a {c.role} principal needs institution_id")
        _institution(work, c.institution_id).check_kind(kind)
    elif c.institution_id is not None:
        raise ValidationError("only a provider or bank principal is bound to an institution")
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


@dataclass(frozen=True)
class RevokePrincipal:
    principal_id: UUID
    reason: str
    actor: str


def revoke_principal(work: Work, c: RevokePrincipal) -> PrincipalView:
    principal = work.get(Principal, c.principal_id, f"principal {c.principal_id}")
    principal.revoke(c.reason, c.actor)
    return PrincipalView.of(principal)


@dataclass(frozen=True)
class RotateToken:
    principal_id: UUID
    token_sha256: str
    actor: str


def rotate_token(work: Work, c: RotateToken) -> PrincipalView:
    principal = work.get(Principal, c.principal_id, f"principal {c.principal_id}")
    if work.find(TokenBinding, TokenBinding.create_id(c.token_sha256)) is not None:
        raise AlreadyExists("a principal with this token exists")
    principal.rotate(c.token_sha256, c.actor)
    work.add(TokenBinding(token_sha256=c.token_sha256, principal_id=principal.id, actor=c.actor))
    return PrincipalView.of(principal)
