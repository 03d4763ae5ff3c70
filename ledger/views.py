"""Plain, immutable views of aggregates that the ledger hands to its callers."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.claims import ContractClaim
from ledger.funding import FundingSource, Programme, available_fen, committed_fen
from ledger.institution import Institution
from ledger.payouts import Payout
from ledger.principals import Principal
from ledger.voucher import Voucher


@dataclass(frozen=True)
class FundingSourceView:
    id: str
    name: str
    level: str
    fiscal_year: int
    appropriation_fen: int
    document_ref: str
    reserved_fen: int  # vouchers' face value shares, or guarantee compensation decided
    released_fen: int
    post_subsidy_reserved_fen: int  # the most post-subsidy vouchers can earn from it
    post_subsidy_released_fen: int
    committed_fen: int
    recovered_fen: int
    available_fen: int

    @classmethod
    def from_totals(
        cls,
        source_id: str,
        name: str,
        level: str,
        fiscal_year: int,
        appropriation_fen: int,
        document_ref: str,
        reserved_fen: int,
        released_fen: int,
        post_subsidy_reserved_fen: int,
        post_subsidy_released_fen: int,
        recovered_fen: int,
    ) -> FundingSourceView:
        committed = committed_fen(
            reserved_fen, released_fen, post_subsidy_reserved_fen, post_subsidy_released_fen
        )
        return cls(
            source_id,
            name,
            level,
            fiscal_year,
            appropriation_fen,
            document_ref,
            reserved_fen,
            released_fen,
            post_subsidy_reserved_fen,
            post_subsidy_released_fen,
            committed,
            recovered_fen,
            available_fen(appropriation_fen, committed, recovered_fen),
        )

    @classmethod
    def of(cls, s: FundingSource) -> FundingSourceView:
        return cls.from_totals(
            s.source_id,
            s.name,
            s.level,
            s.fiscal_year,
            s.appropriation_fen,
            s.document_ref,
            s.reserved_fen,
            s.released_fen,
            s.post_subsidy_reserved_fen,
            s.post_subsidy_released_fen,
            s.recovered_fen,
        )


@dataclass(frozen=True)
class ProgrammeView:
    id: str
    name: str
    fiscal_year: int
    shares: tuple[tuple[str, int], ...]
    max_face_value_fen: int
    post_subsidy_rate_bp: int
    post_subsidy_source_id: str
    post_subsidy_annual_cap_fen: int
    enterprise_annual_cap_fen: int

    @classmethod
    def of(cls, p: Programme) -> ProgrammeView:
        return cls(
            p.programme_id,
            p.name,
            p.fiscal_year,
            tuple((s, b) for s, b in p.shares),
            p.max_face_value_fen,
            p.post_subsidy_rate_bp,
            p.post_subsidy_source_id,
            p.post_subsidy_annual_cap_fen,
            p.enterprise_annual_cap_fen,
        )


@dataclass(frozen=True)
class InstitutionView:
    id: str
    name: str
    kind: str
    public_key_pem: str | None
    frozen: bool
    frozen_reason: str | None
    bank_account: str | None = None
    contact: str | None = None
    public_keys: tuple[tuple[str, str], ...] = ()  # (fingerprint, pem), oldest first

    @classmethod
    def of(cls, i: Institution) -> InstitutionView:
        return cls(
            i.uscc,
            i.name,
            i.kind,
            i.public_key_pem,
            i.frozen,
            i.frozen_reason,
            i.bank_account,
            i.contact,
            tuple(i.public_keys),
        )


@dataclass(frozen=True)
class VoucherView:
    id: UUID
    program_id: str
    holder_id: str
    fiscal_year: int
    face_value_fen: int
    remaining_fen: int
    valid_until: str
    status: str
    reservations: tuple[tuple[str, int], ...]
    remaining_by_source: tuple[tuple[str, int], ...]
    released_by_source: tuple[tuple[str, int], ...]
    provider_ids: tuple[str, ...] = ()
    issued_on: str | None = None
    post_subsidy_source_id: str | None = None
    post_subsidy_reserved_fen: int = 0
    post_subsidy_remaining_fen: int = 0

    @classmethod
    def of(cls, v: Voucher, today: dt.date | None = None) -> VoucherView:
        status = v.status if today is None else v.status_on(today)
        return cls(
            v.id,
            v.programme_id,
            v.holder_id,
            v.fiscal_year,
            v.face_value_fen,
            v.remaining_fen,
            v.valid_until,
            status,
            tuple((s, a) for s, a in v.reservations),
            tuple(v.remaining_by_source.items()),
            tuple(v.released_by_source.items()),
            tuple(v.provider_ids),
            v.issued_on,
            v.post_subsidy_source_id,
            v.post_subsidy_reserved_fen,
            v.post_subsidy_remaining_fen,
        )


@dataclass(frozen=True)
class RedemptionView:
    id: UUID
    voucher_id: UUID
    provider_id: str
    holder_id: str
    programme_id: str
    contract_no: str
    invoice_no: str
    contract_amount_fen: int
    subsidy_fen: int
    enterprise_pays_fen: int
    splits: tuple[tuple[str, int], ...]
    post_subsidy_fen: int
    voucher_remaining_fen: int
    clawed_back: bool
    rules: tuple[str, ...]
    honoured_contract_fen: int = 0
    post_subsidy_source_id: str = ""
    signature: str | None = None
    public_key_sha256: str | None = None
    signed_payload: str | None = None
    rule_params: dict[str, Any] | None = None

    @classmethod
    def of(cls, c: ContractClaim, voucher_remaining_fen: int) -> RedemptionView:
        return cls(
            c.id,
            c.voucher_id,
            c.provider_id,
            c.holder_id,
            c.programme_id,
            c.contract_no,
            c.invoice_no,
            c.contract_amount_fen,
            c.subsidy_fen,
            c.enterprise_pays_fen,
            tuple((s, a) for s, a in c.splits),
            c.post_subsidy_fen,
            voucher_remaining_fen,
            c.clawed_back,
            tuple(c.rules),
            c.honoured_contract_fen,
            c.post_subsidy_source_id,
            c.signature,
            c.public_key_sha256,
            c.signed_payload,
            c.rule_params,
        )


@dataclass(frozen=True)
class PrincipalView:
    id: UUID
    name: str
    role: str
    institution_id: str | None
    revoked: bool = False

    @classmethod
    def of(cls, p: Principal) -> PrincipalView:
        return cls(p.id, p.name, p.role, p.institution_id, p.revoked)


@dataclass(frozen=True)
class PayoutView:
    id: UUID
    payee_id: str
    source_id: str
    amount_fen: int
    status: str
    created_by: str
    approved_by: str | None
    end_to_end_id: str | None
    bank_account: str | None
    payee_name: str | None
    lines: tuple[dict[str, Any], ...]  # [{origin_id, kind, source_id, amount_fen}]
    bank_lines: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, p: Payout) -> PayoutView:
        return cls(
            p.id,
            p.payee_id,
            p.source_id,
            p.amount_fen,
            p.status,
            p.created_by,
            p.approved_by,
            p.end_to_end_id,
            p.bank_account,
            p.payee_name,
            tuple(dict(line) for line in p.lines),
            tuple(dict(line) for line in p.bank_lines),
        )


StateView = dict[str, Any]


def state_view(agg: Aggregate) -> StateView:
    """A deep copy of an aggregate's state with its id, safe to hand out of the writer thread
    (which goes on changing the aggregate it caches): for aggregates the API shows whole."""
    state = {k: v for k, v in vars(agg).items() if not k.startswith("_")}
    state["id"] = agg.id
    return copy.deepcopy(state)
