"""Views of the ledger as the JSON bodies of API_CONTRACT.md §4 (shapes in api.schemas)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ledger.caps import cap_remaining_fen
from ledger.views import (
    FundingSourceView,
    InstitutionView,
    PayoutView,
    PrincipalView,
    ProgrammeView,
    RedemptionView,
    VoucherView,
)
from ledger.voucher import observed_status

Body = dict[str, Any]


def source_amounts(pairs: Iterable[tuple[str, int]]) -> list[Body]:
    return [{"source_id": s, "amount_fen": a} for s, a in pairs]


def principal(p: PrincipalView, token: str | None) -> Body:
    return {**principal_row(p), "token": token}


def principal_row(p: PrincipalView) -> Body:
    """A principal as an admin lists it: never a token."""
    return {
        "id": str(p.id),
        "name": p.name,
        "role": p.role,
        "institution_id": p.institution_id,
        "revoked": p.revoked,
    }


def principal_row_of(r: dict[str, Any]) -> Body:
    """A principal from its view row, with its position (the page cursor)."""
    return {
        "id": r["principal_id"],
        "name": r["name"],
        "role": r["role"],
        "institution_id": r["institution_id"],
        "revoked": bool(r["revoked"]),
        "position": r["created_position"],
    }


def funding_source(
    s: FundingSourceView,
    disbursed_fen: int = 0,
    live_vouchers: int | None = None,
    post_subsidy_fen: int = 0,
    paid_fen: int | None = None,
) -> Body:
    """A source's status. ``reserved_fen``/``released_fen`` are the subsidy's; what it holds
    for post-subsidy (the wire's ``provider_bonus``) is shown beside them, and committed and
    available include both."""
    body = {
        "id": s.id,
        "name": s.name,
        "level": s.level,
        "fiscal_year": s.fiscal_year,
        "appropriation_fen": s.appropriation_fen,
        "document_ref": s.document_ref,
        "reserved_fen": s.reserved_fen,
        "released_fen": s.released_fen,
        "provider_bonus_reserved_fen": s.post_subsidy_reserved_fen,
        "provider_bonus_released_fen": s.post_subsidy_released_fen,
        "committed_fen": s.committed_fen,
        "disbursed_fen": disbursed_fen,
        "provider_bonus_fen": post_subsidy_fen,
        "recovered_fen": s.recovered_fen,
        "available_fen": s.available_fen,
    }
    if live_vouchers is not None:
        body["live_vouchers"] = live_vouchers
    if paid_fen is not None:  # settled by payouts: the views know it, not an as_of replay
        body["paid_fen"] = paid_fen
    return body


def program(p: ProgrammeView) -> Body:
    return {
        "id": p.id,
        "name": p.name,
        "fiscal_year": p.fiscal_year,
        "shares": [{"source_id": s, "share_bp": bp} for s, bp in p.shares],
        "max_face_value_fen": p.max_face_value_fen,
        "provider_bonus_rate_bp": p.post_subsidy_rate_bp,
        "provider_bonus_source_id": p.post_subsidy_source_id,
        "provider_annual_cap_fen": p.post_subsidy_annual_cap_fen,
        "enterprise_annual_cap_fen": p.enterprise_annual_cap_fen,
    }


def institution(i: InstitutionView) -> Body:
    return {
        "id": i.id,
        "name": i.name,
        "kind": i.kind,
        "public_key_pem": i.public_key_pem,
        "public_keys": [{"sha256": f, "public_key_pem": pem} for f, pem in i.public_keys],
        "bank_account": i.bank_account,
        "contact": i.contact,
        "frozen": i.frozen,
        "frozen_reason": i.frozen_reason,
    }


def voucher(v: VoucherView) -> Body:
    return {
        "id": str(v.id),
        "program_id": v.program_id,
        "holder_id": v.holder_id,
        "fiscal_year": v.fiscal_year,
        "face_value_fen": v.face_value_fen,
        "remaining_fen": v.remaining_fen,
        "valid_until": v.valid_until,
        "status": v.status,
        "reservations": source_amounts(v.reservations),
        "remaining_by_source": source_amounts(v.remaining_by_source),
        "issued_on": v.issued_on,
        # What it holds for its redemptions' post-subsidy, apart from the subsidy's reservations.
        "provider_bonus_reservation": (
            None
            if v.post_subsidy_source_id is None
            else {"source_id": v.post_subsidy_source_id, "amount_fen": v.post_subsidy_reserved_fen}
        ),
        "provider_bonus_remaining_fen": v.post_subsidy_remaining_fen,
    }


def redemption(r: RedemptionView) -> Body:
    return {
        "id": str(r.id),
        "voucher_id": str(r.voucher_id),
        "provider_id": r.provider_id,
        "holder_id": r.holder_id,
        "program_id": r.programme_id,
        "contract_no": r.contract_no,
        "invoice_no": r.invoice_no,
        "contract_amount_fen": r.contract_amount_fen,
        "subsidy_fen": r.subsidy_fen,
        "enterprise_pays_fen": r.enterprise_pays_fen,
        "splits": source_amounts(r.splits),
        "honoured_contract_fen": r.honoured_contract_fen,
        "provider_bonus_fen": r.post_subsidy_fen,
        "provider_bonus_source_id": r.post_subsidy_source_id,
        "voucher_remaining_fen": r.voucher_remaining_fen,
        "clawed_back": r.clawed_back,
        "rules": list(r.rules),
        "rule_params": r.rule_params or {},
        "signature": r.signature,
        "signed_payload": r.signed_payload,
        "public_key_sha256": r.public_key_sha256,
    }


def balances(institution_id: str, fiscal_year: int, e: Any | None, p: Any | None) -> Body:
    """From a year's counters: the aggregates (as of an instant) or the view rows (now), which
    name their fields alike. Caps are programme settings: the remaining cap is against the cap
    applied at the latest redemption, and null before the first one."""
    return {
        "institution_id": institution_id,
        "fiscal_year": fiscal_year,
        "subsidy_received_fen": e.subsidy_received_fen if e else 0,
        "enterprise_cap_remaining_fen": (
            cap_remaining_fen(e.cap_fen, e.subsidy_received_fen)
            if e and e.cap_fen is not None
            else None
        ),
        "redeemed_contract_fen": p.redeemed_contract_fen if p else 0,
        "subsidy_earned_fen": p.subsidy_earned_fen if p else 0,
        "provider_bonus_fen": p.post_subsidy_accrued_fen - p.post_subsidy_clawed_back_fen
        if p
        else 0,
        "provider_bonus_cap_remaining_fen": (
            cap_remaining_fen(p.post_subsidy_cap_fen, p.post_subsidy_accrued_fen)
            if p and p.post_subsidy_cap_fen is not None
            else None
        ),
    }


def payables(rows: Iterable[dict[str, Any]]) -> dict[str, list[Body]]:
    """Per source and kind: owed to a provider, clawed back, paid, outstanding."""
    lines = []
    for r in rows:
        owed_fen = int(r["amount_fen"])
        clawed_fen, paid_fen = int(r["clawed_back_fen"]), int(r["paid_fen"])
        lines.append(
            {
                "source_id": r["source_id"],
                "kind": r["kind"],
                "amount_fen": owed_fen,
                "clawed_back_fen": clawed_fen,
                "paid_fen": paid_fen,
                "outstanding_fen": owed_fen - clawed_fen - paid_fen,
            }
        )
    return {"by_source": lines}


def payable(r: dict[str, Any]) -> Body:
    """A payable line: a redemption's (subsidy or bonus) or a guarantee claim's (its loan in
    ``contract_no``, its pool in ``program_id``, the borrower in ``holder_id``)."""
    guarantee = r["kind"] == "guarantee"
    return {
        "redemption_id": None if guarantee else r["redemption_id"],
        "claim_id": r["redemption_id"] if guarantee else None,
        "kind": r["kind"],
        "source_id": r["source_id"],
        "provider_id": r["provider_id"],
        "holder_id": r["holder_id"],
        "program_id": r["programme_id"],
        "voucher_id": None if guarantee else r["voucher_id"],
        "contract_no": r["contract_no"],
        "fiscal_year": r["fiscal_year"],
        "amount_fen": r["amount_fen"],
        "clawed_back_fen": r["clawed_back_fen"],
        "paid_fen": r["paid_fen"],
        "outstanding_fen": r["amount_fen"] - r["clawed_back_fen"] - r["paid_fen"],
        "payout_id": r["payout_id"],
        "recorded_at": r["recorded_at"],
        "position": r["redeemed_position"],
    }


def voucher_row(r: dict[str, Any], today: str) -> Body:
    status = observed_status(r["status"], r["valid_until"], dt.date.fromisoformat(today))
    return {
        "id": r["voucher_id"],
        "program_id": r["programme_id"],
        "holder_id": r["holder_id"],
        "fiscal_year": r["fiscal_year"],
        "face_value_fen": r["face_value_fen"],
        "remaining_fen": r["remaining_fen"],
        "valid_until": r["valid_until"],
        "status": status,
        "issued_at": r["issued_at"],
        "position": r["issued_position"],
    }


def payout_line(line: dict[str, Any]) -> Body:
    """What a payout line settles: a redemption's subsidy or post-subsidy (``bonus``), or a
    guarantee claim's compensation."""
    origin = "claim_id" if line["kind"] == "guarantee" else "redemption_id"
    return {origin: line["origin_id"], "kind": line["kind"], "amount_fen": line["amount_fen"]}


def payout(p: PayoutView) -> Body:
    return {
        "id": str(p.id),
        "payee_id": p.payee_id,
        "source_id": p.source_id,
        "amount_fen": p.amount_fen,
        "status": p.status,
        "created_by": p.created_by,
        "approved_by": p.approved_by,
        "end_to_end_id": p.end_to_end_id,
        "bank_account": p.bank_account,
        "payee_name": p.payee_name,
        "lines": [payout_line(line) for line in p.lines],
        "bank_lines": [
            {
                "statement_id": b["statement_id"],
                "line": b["line"],
                "amount_fen": b["amount_fen"],
                "kind": b["kind"],
            }
            for b in p.bank_lines
        ],
    }


def payout_row(r: dict[str, Any]) -> Body:
    return {
        "id": r["payout_id"],
        "payee_id": r["payee_id"],
        "source_id": r["source_id"],
        "amount_fen": r["amount_fen"],
        "line_count": r["line_count"],
        "status": r["status"],
        "created_by": r["created_by"],
        "approved_by": r["approved_by"],
        "end_to_end_id": r["end_to_end_id"],
        "bank_account": r["bank_account"],
        "payee_name": r["payee_name"],
        "created_at": r["created_at"],
        "approved_at": r["approved_at"],
        "closed_at": r["closed_at"],
        "position": r["created_position"],
    }


def guarantee_pool(p: dict[str, Any]) -> Body:
    return {
        "id": p["pool_id"],
        "name": p["name"],
        "shares": [{"source_id": s, "share_bp": bp} for s, bp in p["shares"]],
        "rule": p["rule"],
        "bank_annual_cap_fen": p["bank_annual_cap_fen"],
    }


def guarantee_loan(loan: dict[str, Any]) -> Body:
    fields = (
        "bank_id",
        "pool_id",
        "borrower_id",
        "principal_fen",
        "start_date",
        "term_months",
        "first_loan",
        "credit_only",
        "ip_pledge",
        "credit_share_bp",
        "losses_fen",
        "compensated_fen",
    )
    return {"id": loan["loan_id"], **{f: loan[f] for f in fields}}


def guarantee_claim(c: dict[str, Any]) -> Body:
    return {
        "id": str(c["id"]),
        "loan_id": c["loan_id"],
        "bank_id": c["bank_id"],
        "pool_id": c["pool_id"],
        "borrower_id": c["borrower_id"],
        "loss_fen": c["loss_fen"],
        "default_date": c["default_date"],
        "compensation_fen": c["compensation_fen"],
        "not_compensated_fen": c["not_compensated_fen"],
        "splits": source_amounts(c["splits"]),
        "rule": c["rule"],
        "status": c["status"],
        "decision": c["decision"],
        "approved_by": c["approved_by"],
        "recovered_fen": c["recovered_fen"],
        "returned_to_fund_fen": c["returned_fen"],
        "exemption": c["exemption"],
        "rejection": (
            {"reason": c["rejection_reason"], "rejected_by": c["rejected_by"]}
            if c.get("rejected_by")
            else None
        ),
    }


def recovery(r: dict[str, Any]) -> Body:
    return {
        "claim_id": r["claim_id"],
        "amount_fen": r["amount_fen"],
        "returned_to_fund_fen": r["returned_to_fund_fen"],
        "splits": source_amounts(r["splits"]),
    }
