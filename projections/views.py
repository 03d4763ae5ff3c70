"""The policies: how each ledger event changes the read models (STYLE.md: projections as
``singledispatchmethod`` policies with tracking). Funding-source status, institution years
(balances and caps), vouchers, and payables (what each source owes each provider, redemption by
redemption). Rows are changed in a ``Batch``; the runner writes them with the position."""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache, singledispatchmethod
from typing import Any

from eventsourcing.utils import get_topic

from ledger.bank_statements import BankLine, BankStatement
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim, RefusedRedemption
from ledger.funding import FundingSource
from ledger.guarantee import GuaranteeClaim
from ledger.institution import Institution
from ledger.payouts import POST_SUBSIDY, PayableLine, Payout
from ledger.principals import Principal
from ledger.voucher import ACTIVE, USED_UP, Voucher
from projections.store import (
    ACTIONS,
    BANK_LINES,
    ENTERPRISE_YEARS,
    GUARANTEE_CLAIMS,
    INSTITUTIONS,
    PAYABLE_LINES,
    PAYABLES,
    PAYOUTS,
    PRINCIPALS,
    PROVIDER_YEARS,
    REDEMPTIONS,
    REFUSALS,
    SOURCES,
    STATEMENTS,
    TABLES,
    VOUCHERS,
    Key,
    Row,
    Table,
    ViewStore,
)

# The event classes the ``@event`` decorator made, named once (mypy cannot see them).
SOURCE_OPENED: type[Any] = getattr(FundingSource, "Opened")  # noqa: B009
RESERVED: type[Any] = getattr(FundingSource, "Reserved")  # noqa: B009
RELEASED: type[Any] = getattr(FundingSource, "Released")  # noqa: B009
RECOVERED: type[Any] = getattr(FundingSource, "Recovered")  # noqa: B009
ISSUED: type[Any] = getattr(Voucher, "Issued")  # noqa: B009
EXPIRED: type[Any] = getattr(Voucher, "Expired")  # noqa: B009
REVOKED: type[Any] = getattr(Voucher, "Revoked")  # noqa: B009
CLAIMED: type[Any] = getattr(ContractClaim, "Claimed")  # noqa: B009
ENTERPRISE_OPENED: type[Any] = getattr(EnterpriseYear, "Opened")  # noqa: B009
SUBSIDY_CLAWED_BACK: type[Any] = getattr(EnterpriseYear, "SubsidyClawedBack")  # noqa: B009
PROVIDER_OPENED: type[Any] = getattr(ProviderYear, "Opened")  # noqa: B009
POST_SUBSIDY_CLAWED_BACK: type[Any] = getattr(ProviderYear, "PostSubsidyClawedBack")  # noqa: B009
PAYMENT_DETAILS_CHANGED: type[Any] = getattr(Institution, "PaymentDetailsChanged")  # noqa: B009
PRINCIPAL_CREATED: type[Any] = getattr(Principal, "Created")  # noqa: B009
PAYABLE_LINE_OPENED: type[Any] = getattr(PayableLine, "Opened")  # noqa: B009
PAYABLE_LINE_ASSIGNED: type[Any] = getattr(PayableLine, "Assigned")  # noqa: B009
PAYABLE_LINE_FREED: type[Any] = getattr(PayableLine, "Freed")  # noqa: B009
PAYABLE_LINE_PAID: type[Any] = getattr(PayableLine, "Paid")  # noqa: B009
PAYOUT_CREATED: type[Any] = getattr(Payout, "Created")  # noqa: B009
PAYOUT_APPROVED: type[Any] = getattr(Payout, "Approved")  # noqa: B009
PAYOUT_SETTLED: type[Any] = getattr(Payout, "Settled")  # noqa: B009
PAYOUT_RETURNED: type[Any] = getattr(Payout, "Returned")  # noqa: B009
PAYOUT_CANCELLED: type[Any] = getattr(Payout, "Cancelled")  # noqa: B009
COMPENSATION_COMMITTED: type[Any] = getattr(FundingSource, "CompensationCommitted")  # noqa: B009
COMPENSATION_RELEASED: type[Any] = getattr(FundingSource, "CompensationReleased")  # noqa: B009
CLAIM_FILED: type[Any] = getattr(GuaranteeClaim, "Filed")  # noqa: B009
CLAIM_APPROVED: type[Any] = getattr(GuaranteeClaim, "Approved")  # noqa: B009
CLAIM_RECOVERED: type[Any] = getattr(GuaranteeClaim, "Recovered")  # noqa: B009
CLAIM_EXEMPTED: type[Any] = getattr(GuaranteeClaim, "Exempted")  # noqa: B009
CLAIM_REJECTED: type[Any] = getattr(GuaranteeClaim, "Rejected")  # noqa: B009
STATEMENT_IMPORTED: type[Any] = getattr(BankStatement, "Imported")  # noqa: B009
LINE_RECORDED: type[Any] = getattr(BankLine, "Recorded")  # noqa: B009
LINE_CONFIRMED: type[Any] = getattr(BankLine, "Confirmed")  # noqa: B009
PRINCIPAL_REVOKED: type[Any] = getattr(Principal, "Revoked")  # noqa: B009
CLAWED_BACK: type[Any] = getattr(ContractClaim, "ClawedBack")  # noqa: B009
INSTITUTION_REGISTERED: type[Any] = getattr(Institution, "Registered")  # noqa: B009
FROZEN: type[Any] = getattr(Institution, "Frozen")  # noqa: B009
UNFROZEN: type[Any] = getattr(Institution, "Unfrozen")  # noqa: B009
REFUSAL_RECORDED: type[Any] = getattr(RefusedRedemption, "Recorded")  # noqa: B009
CHINA_OFFSET = dt.timedelta(hours=8)  # China Standard Time has no daylight saving


class Batch:
    """The rows one page of events reads and changes. ``cache`` outlives the batch while this
    projector is the only writer; the runner clears it when that stops being true."""

    def __init__(self, store: ViewStore, cache: dict[tuple[str, Key], Row | None]) -> None:
        self.store = store
        self.cache = cache
        self.changed: dict[Table, dict[Key, Row]] = {t: {} for t in TABLES}
        # Bank lines recorded in this batch, by their aggregate id: a statement names its
        # duplicates and a confirmation its line by that id (the view's key is another).
        self.line_keys: dict[str, tuple[str, int]] = {}

    def get(self, t: Table, *key: Any) -> Row:
        cache_key = (t.name, key)
        if cache_key not in self.cache:
            self.cache[cache_key] = self.store.fetch(t, key)
        row = self.cache[cache_key]
        assert row is not None, f"{t.name} {key} is not in the views: an event is missing"
        return row

    def put(self, t: Table, row: Row, position: int) -> None:
        row["position"] = position
        key = t.key_of(row)
        self.cache[(t.name, key)] = row
        self.changed[t][key] = row

    def rows(self) -> dict[Table, list[Row]]:
        return {t: list(rows.values()) for t, rows in self.changed.items()}


@lru_cache(maxsize=4096)
def source_key(source_id: str) -> str:
    return str(FundingSource.create_id(source_id))


class LedgerViews:
    """``apply(event, batch, position)`` for every event a view needs; other events pass."""

    @singledispatchmethod
    def apply(self, event: Any, b: Batch, position: int) -> None:
        """Events no view reads (principals, idempotency records, institutions)."""

    @classmethod
    def topics(cls) -> frozenset[str]:
        registry = cls.__dict__["apply"].dispatcher.registry
        return frozenset(get_topic(c) for c in registry if c is not object)

    # ---- funding sources -----------------------------------------------------------------
    @apply.register(SOURCE_OPENED)
    def _source_opened(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "aggregate_id": str(e.originator_id),
            "source_id": e.source_id,
            "name": e.name,
            "level": e.level,
            "fiscal_year": e.fiscal_year,
            "document_ref": e.document_ref,
            "appropriation_fen": e.appropriation_fen,
            "reserved_fen": 0,
            "released_fen": 0,
            "post_subsidy_reserved_fen": 0,
            "post_subsidy_released_fen": 0,
            "disbursed_fen": 0,
            "post_subsidy_fen": 0,
            "paid_fen": 0,
            "recovered_fen": 0,
            "live_vouchers": 0,
        }
        b.put(SOURCES, row, position)

    @apply.register(RESERVED)
    def _reserved(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(SOURCES, str(e.originator_id))
        row["reserved_fen"] += e.amount_fen
        row["post_subsidy_reserved_fen"] += e.post_subsidy_fen
        b.put(SOURCES, row, position)

    @apply.register(COMPENSATION_COMMITTED)
    def _compensation_committed(self, e: Any, b: Batch, position: int) -> None:
        self._add(b, SOURCES, str(e.originator_id), "reserved_fen", e.amount_fen, position)

    @apply.register(COMPENSATION_RELEASED)
    def _compensation_released(self, e: Any, b: Batch, position: int) -> None:
        self._add(b, SOURCES, str(e.originator_id), "released_fen", e.amount_fen, position)

    @apply.register(RELEASED)
    def _released(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(SOURCES, str(e.originator_id))
        row["released_fen"] += e.amount_fen
        row["post_subsidy_released_fen"] += e.post_subsidy_fen
        b.put(SOURCES, row, position)

    @apply.register(RECOVERED)
    def _recovered(self, e: Any, b: Batch, position: int) -> None:
        source = self._add(
            b, SOURCES, str(e.originator_id), "recovered_fen", e.amount_fen, position
        )
        if e.kind == "subsidy":  # a post-subsidy's payable line follows its year's counter
            line = (str(e.redemption_id), f"subsidy:{source['source_id']}")
            self._add(b, PAYABLES, line, "clawed_back_fen", e.amount_fen, position)

    # ---- vouchers ------------------------------------------------------------------------
    @apply.register(ISSUED)
    def _issued(self, e: Any, b: Batch, position: int) -> None:
        source_ids = [str(s) for s, _ in e.reservations]
        row = {
            "voucher_id": str(e.originator_id),
            "programme_id": e.programme_id,
            "holder_id": e.holder_id,
            "fiscal_year": e.fiscal_year,
            "face_value_fen": e.face_value_fen,
            "remaining_fen": sum(int(a) for _, a in e.reservations),
            "valid_until": e.valid_until,
            "status": ACTIVE,
            "source_ids": ",".join(source_ids),
            "issued_position": position,
            "issued_at": e.timestamp.isoformat(),
        }
        b.put(VOUCHERS, row, position)
        for source_id in source_ids:
            self._add(b, SOURCES, source_key(source_id), "live_vouchers", 1, position)

    @apply.register(Voucher.Redeemed)
    def _redeemed(self, e: Any, b: Batch, position: int) -> None:
        spent_fen = sum(int(a) for _, a in e.splits)
        voucher = self._add(
            b, VOUCHERS, str(e.originator_id), "remaining_fen", -spent_fen, position
        )
        if voucher["remaining_fen"] == 0 and voucher["status"] == ACTIVE:
            self._close_voucher(b, voucher, USED_UP, position)

    @apply.register(EXPIRED)
    def _expired(self, e: Any, b: Batch, position: int) -> None:
        self._release(b, e, "expired", position)

    @apply.register(REVOKED)
    def _revoked(self, e: Any, b: Batch, position: int) -> None:
        self._release(b, e, "revoked", position)

    def _release(self, b: Batch, e: Any, status: str, position: int) -> None:
        released_fen = sum(int(a) for _, a in e.released)
        voucher = self._add(
            b, VOUCHERS, str(e.originator_id), "remaining_fen", -released_fen, position
        )
        self._close_voucher(b, voucher, status, position)

    def _close_voucher(self, b: Batch, voucher: Row, status: str, position: int) -> None:
        if voucher["status"] == ACTIVE:
            for source_id in voucher["source_ids"].split(","):
                self._add(b, SOURCES, source_key(source_id), "live_vouchers", -1, position)
        voucher["status"] = status
        b.put(VOUCHERS, voucher, position)

    # ---- redemptions: payables and disbursement ------------------------------------------
    @apply.register(CLAIMED)
    def _claimed(self, e: Any, b: Batch, position: int) -> None:
        self._redemption(e, b, position)
        lines = [("subsidy", str(s), int(a)) for s, a in e.splits]
        lines.append(("bonus", e.post_subsidy_source_id, e.post_subsidy_fen))
        for kind, source_id, amount_fen in lines:
            column = "disbursed_fen" if kind == "subsidy" else "post_subsidy_fen"
            self._add(b, SOURCES, source_key(source_id), column, amount_fen, position)
            if amount_fen == 0:
                continue
            self._open_payable(
                b,
                e,
                position,
                redemption_id=str(e.originator_id),
                line=f"subsidy:{source_id}" if kind == "subsidy" else "bonus",
                kind=kind,
                source_id=source_id,
                provider_id=e.provider_id,
                holder_id=e.holder_id,
                programme_id=e.programme_id,
                voucher_id=str(e.voucher_id),
                contract_no=e.contract_no,
                fiscal_year=e.fiscal_year,
                amount_fen=amount_fen,
            )

    @staticmethod
    def _redemption(e: Any, b: Batch, position: int) -> None:
        row = {
            "redemption_id": str(e.originator_id),
            "provider_id": e.provider_id,
            "holder_id": e.holder_id,
            "voucher_id": str(e.voucher_id),
            "programme_id": e.programme_id,
            "fiscal_year": e.fiscal_year,
            "contract_no": e.contract_no,
            "invoice_no": e.invoice_no,
            "contract_amount_fen": e.contract_amount_fen,
            "subsidy_fen": e.subsidy_fen,
            "service_date": e.service_date,
            "recorded_at": e.timestamp.isoformat(),
            "recorded_day": (e.timestamp + CHINA_OFFSET).date().isoformat(),
            "redeemed_by": e.actor,
            "clawed_back": 0,
            "redeemed_position": position,
        }
        b.put(REDEMPTIONS, row, position)

    # ---- annual counters -----------------------------------------------------------------
    @apply.register(ENTERPRISE_OPENED)
    def _enterprise_opened(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "aggregate_id": str(e.originator_id),
            "institution_id": e.holder_id,
            "fiscal_year": e.fiscal_year,
            "subsidy_received_fen": 0,
            "clawed_back_fen": 0,
            "cap_fen": None,
        }
        b.put(ENTERPRISE_YEARS, row, position)

    @apply.register(EnterpriseYear.SubsidyReceived)
    def _subsidy_received(self, e: Any, b: Batch, position: int) -> None:
        row = self._add(
            b,
            ENTERPRISE_YEARS,
            str(e.originator_id),
            "subsidy_received_fen",
            e.subsidy_fen,
            position,
        )
        row["cap_fen"] = e.cap_fen

    @apply.register(SUBSIDY_CLAWED_BACK)
    def _subsidy_clawed_back(self, e: Any, b: Batch, position: int) -> None:
        self._add(
            b, ENTERPRISE_YEARS, str(e.originator_id), "clawed_back_fen", e.amount_fen, position
        )

    @apply.register(PROVIDER_OPENED)
    def _provider_opened(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "aggregate_id": str(e.originator_id),
            "institution_id": e.provider_id,
            "fiscal_year": e.fiscal_year,
            "redeemed_contract_fen": 0,
            "subsidy_earned_fen": 0,
            "post_subsidy_accrued_fen": 0,
            "post_subsidy_clawed_back_fen": 0,
            "post_subsidy_cap_fen": None,
        }
        b.put(PROVIDER_YEARS, row, position)

    @apply.register(ProviderYear.Accrued)
    def _accrued(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(PROVIDER_YEARS, str(e.originator_id))
        row["redeemed_contract_fen"] += e.contract_amount_fen
        row["subsidy_earned_fen"] += e.subsidy_fen
        row["post_subsidy_accrued_fen"] += e.post_subsidy_fen
        row["post_subsidy_cap_fen"] = e.post_subsidy_cap_fen
        b.put(PROVIDER_YEARS, row, position)

    @apply.register(POST_SUBSIDY_CLAWED_BACK)
    def _post_subsidy_clawed_back(self, e: Any, b: Batch, position: int) -> None:
        year_id = str(e.originator_id)
        self._add(
            b, PROVIDER_YEARS, year_id, "post_subsidy_clawed_back_fen", e.amount_fen, position
        )
        if e.amount_fen:
            line = (str(e.redemption_id), "bonus")
            self._add(b, PAYABLES, line, "clawed_back_fen", e.amount_fen, position)

    # ---- what inspectors look at ---------------------------------------------------------
    @apply.register(INSTITUTION_REGISTERED)
    def _registered(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "aggregate_id": str(e.originator_id),
            "institution_id": e.uscc,
            "name": e.name,
            "kind": e.kind,
            "bank_account": getattr(e, "bank_account", None),
            "contact": getattr(e, "contact", None),
            "frozen": 0,
        }
        b.put(INSTITUTIONS, row, position)

    @apply.register(PAYMENT_DETAILS_CHANGED)
    def _payment_details_changed(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(INSTITUTIONS, str(e.originator_id))
        row["bank_account"] = e.bank_account
        row["contact"] = e.contact
        b.put(INSTITUTIONS, row, position)
        self._action(b, e, "payment-details", str(row["institution_id"]), e.reason, position)

    # ---- payouts: which payout holds a payable, what was paid ----------------------------
    @apply.register(PAYABLE_LINE_OPENED)
    def _payable_line_opened(self, e: Any, b: Batch, position: int) -> None:
        line = f"{e.kind}:{e.source_id}" if e.kind != POST_SUBSIDY else POST_SUBSIDY
        row = {"line_id": str(e.originator_id), "redemption_id": str(e.origin_id), "line": line}
        b.put(PAYABLE_LINES, row, position)

    @apply.register(PAYABLE_LINE_ASSIGNED)
    def _payable_line_assigned(self, e: Any, b: Batch, position: int) -> None:
        payable = self._payable_of(b, e)
        payable["payout_id"] = str(e.payout_id)
        b.put(PAYABLES, payable, position)

    @apply.register(PAYABLE_LINE_FREED)
    def _payable_line_freed(self, e: Any, b: Batch, position: int) -> None:
        payable = self._payable_of(b, e)
        payable["payout_id"] = None
        payable["paid_fen"] -= e.unpaid_fen
        b.put(PAYABLES, payable, position)
        if e.unpaid_fen:
            self._add(
                b, SOURCES, source_key(payable["source_id"]), "paid_fen", -e.unpaid_fen, position
            )

    @apply.register(PAYABLE_LINE_PAID)
    def _payable_line_paid(self, e: Any, b: Batch, position: int) -> None:
        payable = self._add(
            b, PAYABLES, self._payable_key(b, e), "paid_fen", e.amount_fen, position
        )
        self._add(b, SOURCES, source_key(payable["source_id"]), "paid_fen", e.amount_fen, position)

    @staticmethod
    def _payable_key(b: Batch, e: Any) -> tuple[str, str]:
        keys = b.get(PAYABLE_LINES, str(e.originator_id))
        return str(keys["redemption_id"]), str(keys["line"])

    def _payable_of(self, b: Batch, e: Any) -> Row:
        return b.get(PAYABLES, *self._payable_key(b, e))

    @apply.register(PAYOUT_CREATED)
    def _payout_created(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "payout_id": str(e.originator_id),
            "payee_id": e.payee_id,
            "source_id": e.source_id,
            "amount_fen": e.amount_fen,
            "line_count": len(e.lines),
            "status": "created",
            "created_by": e.created_by,
            "approved_by": None,
            "end_to_end_id": None,
            "bank_account": None,
            "payee_name": None,
            "created_at": e.timestamp.isoformat(),
            "approved_at": None,
            "closed_at": None,
            "created_position": position,
        }
        b.put(PAYOUTS, row, position)

    @apply.register(PAYOUT_APPROVED)
    def _payout_approved(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(PAYOUTS, str(e.originator_id))
        row.update(
            status="approved",
            approved_by=e.approved_by,
            end_to_end_id=e.end_to_end_id,
            bank_account=e.bank_account,
            payee_name=e.payee_name,
            approved_at=e.timestamp.isoformat(),
        )
        b.put(PAYOUTS, row, position)

    @apply.register(PAYOUT_SETTLED)
    def _payout_settled(self, e: Any, b: Batch, position: int) -> None:
        self._close_payout(b, e, "settled", position)

    @apply.register(PAYOUT_RETURNED)
    def _payout_returned(self, e: Any, b: Batch, position: int) -> None:
        self._close_payout(b, e, "returned", position)

    @apply.register(PAYOUT_CANCELLED)
    def _payout_cancelled(self, e: Any, b: Batch, position: int) -> None:
        self._close_payout(b, e, "cancelled", position)
        self._action(b, e, "cancel-payout", str(e.originator_id), e.reason, position)

    @staticmethod
    def _close_payout(b: Batch, e: Any, status: str, position: int) -> None:
        row = b.get(PAYOUTS, str(e.originator_id))
        row.update(status=status, closed_at=e.timestamp.isoformat())
        b.put(PAYOUTS, row, position)

    # ---- the guarantee fund -------------------------------------------------------------
    @apply.register(CLAIM_FILED)
    def _claim_filed(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "claim_id": str(e.originator_id),
            "loan_id": e.loan_id,
            "bank_id": e.bank_id,
            "pool_id": e.pool_id,
            "borrower_id": e.borrower_id,
            "fiscal_year": e.fiscal_year,
            "rule": e.decision["rule"],
            "loss_fen": e.loss_fen,
            "compensation_fen": e.decision["compensation_fen"],
            "not_compensated_fen": e.decision["not_compensated_fen"],
            "recovered_fen": 0,
            "returned_fen": 0,
            "status": "filed",
            "exempt_net_loss_fen": None,
            "exemption_ref": None,
            "exempted_on": None,
            "filed_at": e.timestamp.isoformat(),
            "filed_position": position,
        }
        b.put(GUARANTEE_CLAIMS, row, position)

    @apply.register(CLAIM_APPROVED)
    def _claim_approved(self, e: Any, b: Batch, position: int) -> None:
        """The compensation becomes payable to the bank, a line per pool source."""
        claim = b.get(GUARANTEE_CLAIMS, str(e.originator_id))
        claim["status"] = "approved"
        b.put(GUARANTEE_CLAIMS, claim, position)
        for source_id, amount_fen in e.splits:
            if not amount_fen:
                continue
            self._open_payable(
                b,
                e,
                position,
                redemption_id=claim["claim_id"],
                line=f"guarantee:{source_id}",
                kind="guarantee",
                source_id=source_id,
                provider_id=claim["bank_id"],  # the payee
                holder_id=claim["borrower_id"],
                programme_id=claim["pool_id"],
                voucher_id=claim["loan_id"],
                contract_no=claim["loan_id"],
                fiscal_year=claim["fiscal_year"],
                amount_fen=int(amount_fen),
            )

    @apply.register(CLAIM_REJECTED)
    def _claim_rejected(self, e: Any, b: Batch, position: int) -> None:
        claim = b.get(GUARANTEE_CLAIMS, str(e.originator_id))
        claim["status"] = "rejected"
        b.put(GUARANTEE_CLAIMS, claim, position)
        self._action(b, e, "claim-rejection", claim["claim_id"], e.reason, position)

    @apply.register(CLAIM_RECOVERED)
    def _claim_recovered(self, e: Any, b: Batch, position: int) -> None:
        claim = b.get(GUARANTEE_CLAIMS, str(e.originator_id))
        claim["recovered_fen"] += e.amount_fen
        claim["returned_fen"] += e.returned_to_fund_fen
        b.put(GUARANTEE_CLAIMS, claim, position)

    @apply.register(CLAIM_EXEMPTED)
    def _claim_exempted(self, e: Any, b: Batch, position: int) -> None:
        claim = b.get(GUARANTEE_CLAIMS, str(e.originator_id))
        claim.update(
            exempt_net_loss_fen=e.net_loss_fen,
            exemption_ref=e.decision_ref,
            exempted_on=e.decided_on,
        )
        b.put(GUARANTEE_CLAIMS, claim, position)
        reason = f"{e.decision_ref} ({e.decided_on}): {e.reason}"
        self._action(b, e, "exemption", claim["claim_id"], reason, position)

    # ---- reconciliation: statements and their lines --------------------------------------
    @apply.register(LINE_RECORDED)
    def _line_recorded(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "statement_id": str(e.statement_id),
            "line": e.line,
            "bank_line_id": str(e.originator_id),
            "account": e.account,
            "booking_date": e.booking_date,
            "value_date": e.value_date,
            "amount_fen": e.amount_fen,
            "currency": e.currency,
            "credit_debit": e.credit_debit,
            "reversal": int(e.reversal),
            "end_to_end_id": e.end_to_end_id,
            "counterparty_account": e.counterparty_account,
            "counterparty_name": e.counterparty_name,
            "reference": e.reference,
            "status": e.status,
            "payout_ids": ",".join(str(p) for p in e.payout_ids),
            "reason": e.reason,
        }
        b.put(BANK_LINES, row, position)
        b.line_keys[row["bank_line_id"]] = (row["statement_id"], row["line"])

    @apply.register(STATEMENT_IMPORTED)
    def _statement_imported(self, e: Any, b: Batch, position: int) -> None:
        """The import's lines are in the log before it: a line another file brought is
        listed again here, as ignored, with the line it duplicates."""
        statement_id = str(e.originator_id)
        for line, bank_line_id in e.duplicates:
            original = self._line_by_id(b, str(bank_line_id))
            row = {
                **original,
                "statement_id": statement_id,
                "line": line,
                "bank_line_id": "",
                "status": "ignored",
                "payout_ids": "",
                "reason": f"already imported: statement {original['statement_id']} line "
                f"{original['line']}",
            }
            b.put(BANK_LINES, row, position)
        row = {
            "statement_id": statement_id,
            "file_sha256": e.file_sha256,
            "format": e.summary["format"],
            "account": e.summary["account"],
            "currency": e.summary["currency"],
            "summary": json.dumps(e.summary, ensure_ascii=False, sort_keys=True),
            "line_count": e.line_count,
            **{k: e.counts.get(k, 0) for k in ("matched", "suggested", "unmatched", "ignored")},
            "imported_by": e.actor,
            "imported_at": e.timestamp.isoformat(),
            "imported_position": position,
        }
        b.put(STATEMENTS, row, position)

    @staticmethod
    def _line_by_id(b: Batch, bank_line_id: str) -> Row:
        key = b.line_keys.get(bank_line_id) or b.store.line_key(bank_line_id)
        assert key is not None, f"bank line {bank_line_id} is not in the views"
        return dict(b.get(BANK_LINES, *key))

    @apply.register(LINE_CONFIRMED)
    def _line_confirmed(self, e: Any, b: Batch, position: int) -> None:
        line = self._line_by_id(b, str(e.originator_id))
        before = line["status"]
        line.update(
            status="matched",
            payout_ids=",".join(str(p) for p in e.payout_ids),
            reason="confirmed by treasury",
        )
        b.put(BANK_LINES, line, position)
        statement = b.get(STATEMENTS, line["statement_id"])
        statement[before] -= 1
        statement["matched"] += 1
        b.put(STATEMENTS, statement, position)

    # ---- principals (never their tokens) -------------------------------------------------
    @apply.register(PRINCIPAL_CREATED)
    def _principal_created(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "principal_id": str(e.originator_id),
            "name": e.name,
            "role": e.role,
            "institution_id": e.institution_id,
            "revoked": 0,
            "created_position": position,
        }
        b.put(PRINCIPALS, row, position)

    @apply.register(PRINCIPAL_REVOKED)
    def _principal_revoked(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(PRINCIPALS, str(e.originator_id))
        row["revoked"] = 1
        b.put(PRINCIPALS, row, position)
        self._action(b, e, "revoke-principal", str(e.originator_id), e.reason, position)

    @apply.register(FROZEN)
    def _frozen(self, e: Any, b: Batch, position: int) -> None:
        self._action(b, e, "freeze", self._set_frozen(b, e, 1, position), e.reason, position)

    @apply.register(UNFROZEN)
    def _unfrozen(self, e: Any, b: Batch, position: int) -> None:
        self._action(b, e, "unfreeze", self._set_frozen(b, e, 0, position), e.reason, position)

    def _set_frozen(self, b: Batch, e: Any, frozen: int, position: int) -> str:
        row = b.get(INSTITUTIONS, str(e.originator_id))
        row["frozen"] = frozen
        b.put(INSTITUTIONS, row, position)
        return str(row["institution_id"])

    @apply.register(CLAWED_BACK)
    def _clawed_back(self, e: Any, b: Batch, position: int) -> None:
        row = b.get(REDEMPTIONS, str(e.originator_id))
        row["clawed_back"] = 1
        b.put(REDEMPTIONS, row, position)
        self._action(b, e, "clawback", str(e.originator_id), e.reason_code, position)

    @apply.register(REFUSAL_RECORDED)
    def _refusal(self, e: Any, b: Batch, position: int) -> None:
        row = {
            "attempt_id": str(e.originator_id),
            "slug": e.slug,
            "provider_id": e.provider_id,
            "voucher_id": str(e.voucher_id),
            "contract_no": e.contract_no,
            "invoice_no": e.invoice_no,
            "contract_amount_fen": e.contract_amount_fen,
            "detail": e.detail,
            "attempted_by": e.actor,
            "recorded_at": e.timestamp.isoformat(),
        }
        b.put(REFUSALS, row, position)

    @staticmethod
    def _action(b: Batch, e: Any, kind: str, subject: str, reason: str, position: int) -> None:
        row = {
            "kind": kind,
            "subject_id": subject,
            "reason": reason,
            "actor": e.actor,
            "recorded_at": e.timestamp.isoformat(),
        }
        b.put(ACTIONS, row, position)

    @staticmethod
    def _open_payable(b: Batch, e: Any, position: int, **origin: Any) -> None:
        """A payable line (a redemption's subsidy or bonus, a claim's compensation), nothing
        of it yet clawed back, held or paid."""
        row = {
            **origin,
            "clawed_back_fen": 0,
            "paid_fen": 0,
            "payout_id": None,
            "recorded_at": e.timestamp.isoformat(),
            "redeemed_position": position,
        }
        b.put(PAYABLES, row, position)

    @staticmethod
    def _add(b: Batch, t: Table, key: Any, column: str, amount: int, position: int) -> Row:
        row = b.get(t, *(key if isinstance(key, tuple) else (key,)))
        row[column] += amount
        b.put(t, row, position)
        return row
