"""The ledger application: one ``eventsourcing.Application`` whose commands go through the
group-commit writer, and whose queries read the event store."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Transcoder
from eventsourcing.utils import get_topic

from ledger import bank_statements, guarantee_commands, payout_commands, redemptions, rules
from ledger import commands as cmd
from ledger.adapters.postgres import schema_creation_lock
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim, InvoiceClaim
from ledger.errors import NotFound, Refused, ValidationError
from ledger.events import replay
from ledger.funding import LEVELS, FundingSource, Programme
from ledger.guarantee import GuaranteeClaim, GuaranteePool
from ledger.idempotency import Idempotency, IdempotencyRecord, run_idempotent
from ledger.institution import KINDS, Institution
from ledger.money import MAX_AMOUNT_FEN, check_bp, check_fen
from ledger.payouts import KINDS as PAYABLE_KINDS
from ledger.payouts import PayableLine, Payout
from ledger.principals import ROLES, Principal, TokenBinding
from ledger.read_repository import ReadRepository
from ledger.redemptions import Redeem
from ledger.settings import Settings
from ledger.transcoder import FastJSONTranscoder
from ledger.uscc import check_uscc
from ledger.validate import (
    check_bool,
    check_choice,
    check_date,
    check_fiscal_year,
    check_int,
    check_optional_text,
    check_text,
    check_uuid,
)
from ledger.views import (
    FundingSourceView,
    InstitutionView,
    PayoutView,
    PrincipalView,
    ProgrammeView,
    RedemptionView,
    StateView,
    VoucherView,
    state_view,
)
from ledger.voucher import Voucher
from ledger.writer import Outcome, Writer

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_REASON_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_SHARES = 10
EXPIRY_CHUNK = 200
TOKEN_BYTES = 32
MAX_STREAM_SCAN = 1_000_000
NOTIFICATION_PAGE = 1000
MAX_PAYOUT_CANDIDATES = 10_000
READ_CACHE_AGGREGATES = 2_000  # aggregates kept for reads, least recently read out first
MAX_TERM_MONTHS = 600
MAX_STATEMENT_LINES = 250_000


def check_key(value: Any, field: str) -> str:
    """Ids and document numbers people choose: 1–64 of letters, digits and ``._:/-``."""
    if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
        raise ValidationError(f"{field} must be 1-64 characters of letters, digits and ._:/-")
    return value


class VoucherLedger(Application[UUID]):
    name = "VoucherLedger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        FundingSource: 500,
        EnterpriseYear: 500,
        ProviderYear: 500,
    }

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], dt.date] | None = None,
        max_batch: int = 256,
        sync_interval_ms: int = 0,
    ) -> None:
        self.settings = settings or Settings.from_env()
        env = self.settings.eventsourcing_env()
        if self.settings.backend == "postgres":
            with schema_creation_lock(env):
                super().__init__(env=env)
        else:
            super().__init__(env=env)
        self.today = clock or china_today
        # Reads keep the aggregates they replayed and bring them up to date with one query for
        # the events after the version kept (eventsourcing's fast-forward): a voucher GET reads
        # no more than what was stored since, where it replayed the whole stream. The writer
        # keeps its own cache (ledger/writer.py); this one only ever holds stored events, and
        # gives copies of whole versions (ledger/read_repository.py).
        self.reads = self._read_repository()
        self.writer = Writer(
            self,
            max_batch=max_batch,
            sync_interval_ms=sync_interval_ms,
            watched_topics=_topics_of(Institution, Programme, FundingSource),
            # A redemption's invoice claim is only ever asked whether it exists, an idempotency
            # record only read again when its request is retried; a contract claim stays
            # whole: a payout reads one for each line it pays (keeping contract claims, payable
            # lines and payouts as ids too, loaded in bulk by Work.prefetch, did not change the
            # soak's slope, +22.5%, and made a 10,000-payout statement import 2x slower).
            kept_as_ids=(InvoiceClaim, IdempotencyRecord),
        )

    def _read_repository(self) -> ReadRepository:
        return ReadRepository(self.events, cache_maxsize=READ_CACHE_AGGREGATES, fastforward=True)

    def construct_transcoder(self) -> Transcoder:
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def close(self) -> None:
        self.writer.close()
        close_inserts = getattr(self.recorder, "close_insert_connection", None)
        if close_inserts is not None:
            close_inserts()
        super().close()

    def _run(
        self, fn: Callable[..., T | Refused], command: Any, idempotency: Idempotency | None = None
    ) -> tuple[T, int | None]:
        """Run a command through the writer; returns its result and the log position of its
        last event. With ``idempotency`` the result may be a ``Replay`` of the first response."""
        if idempotency is None:
            outcome: Outcome = self.writer.run(fn, command)
        else:
            outcome = self.writer.run(run_idempotent, fn, command, idempotency)
        if isinstance(outcome.value, Refused):  # refused, with evidence or its key stored
            raise outcome.value.error
        return outcome.value, outcome.position

    # ---- commands ------------------------------------------------------------------------
    def open_funding_source(
        self,
        *,
        source_id: Any,
        name: Any,
        level: Any,
        fiscal_year: Any,
        appropriation_fen: Any,
        document_ref: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[FundingSourceView, int | None]:
        return self._run(
            cmd.open_funding_source,
            cmd.OpenFundingSource(
                source_id=check_key(source_id, "id"),
                name=check_text(name, "name"),
                level=check_choice(level, "level", LEVELS),
                fiscal_year=check_fiscal_year(fiscal_year),
                appropriation_fen=check_fen(appropriation_fen, "appropriation_fen"),
                document_ref=check_text(document_ref, "document_ref"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def create_programme(
        self,
        *,
        programme_id: Any,
        name: Any,
        fiscal_year: Any,
        shares: Any,
        max_face_value_fen: Any,
        post_subsidy_rate_bp: Any,
        post_subsidy_source_id: Any,
        post_subsidy_annual_cap_fen: Any,
        enterprise_annual_cap_fen: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[ProgrammeView, int | None]:
        return self._run(
            cmd.create_programme,
            cmd.CreateProgramme(
                programme_id=check_key(programme_id, "id"),
                name=check_text(name, "name"),
                fiscal_year=check_fiscal_year(fiscal_year),
                shares=_check_shares(shares),
                max_face_value_fen=check_fen(
                    max_face_value_fen, "max_face_value_fen", positive=True
                ),
                post_subsidy_rate_bp=check_bp(post_subsidy_rate_bp, "provider_bonus_rate_bp"),
                post_subsidy_source_id=check_key(
                    post_subsidy_source_id, "provider_bonus_source_id"
                ),
                post_subsidy_annual_cap_fen=check_fen(
                    post_subsidy_annual_cap_fen, "provider_annual_cap_fen"
                ),
                enterprise_annual_cap_fen=check_fen(
                    enterprise_annual_cap_fen, "enterprise_annual_cap_fen"
                ),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def register_institution(
        self,
        *,
        uscc: Any,
        name: Any,
        kind: Any,
        public_key_pem: Any = None,
        actor: str,
        bank_account: Any = None,
        contact: Any = None,
        idempotency: Idempotency | None = None,
    ) -> tuple[InstitutionView, int | None]:
        return self._run(
            cmd.register_institution,
            cmd.RegisterInstitution(
                uscc=check_uscc(uscc),
                name=check_text(name, "name"),
                kind=check_choice(kind, "kind", KINDS),
                public_key_pem=_check_public_key(public_key_pem),
                bank_account=check_optional_text(bank_account, "bank_account", max_len=64),
                contact=check_optional_text(contact, "contact"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def freeze_institution(
        self, uscc: Any, *, reason: Any, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[InstitutionView, int | None]:
        return self._set_frozen(uscc, True, reason, actor, idempotency)

    def unfreeze_institution(
        self, uscc: Any, *, reason: Any, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[InstitutionView, int | None]:
        return self._set_frozen(uscc, False, reason, actor, idempotency)

    def register_key(
        self,
        uscc: Any,
        *,
        public_key_pem: Any,
        reason: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[InstitutionView, int | None]:
        """A provider's new Ed25519 signing key: claims committed from now on are checked
        against it; claims signed before stay verifiable against the key they name."""
        pem = _check_public_key(public_key_pem)
        if pem is None:
            raise ValidationError("public_key_pem must be a PEM public key")
        return self._run(
            cmd.register_key,
            cmd.RegisterKey(
                uscc=check_uscc(uscc),
                public_key_pem=pem,
                reason=check_text(reason, "reason"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def change_payment_details(
        self,
        uscc: Any,
        *,
        bank_account: Any,
        contact: Any,
        reason: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[InstitutionView, int | None]:
        """A new bank account or contact (null clears it), recorded with who and why."""
        return self._run(
            cmd.change_payment_details,
            cmd.ChangePaymentDetails(
                uscc=check_uscc(uscc),
                bank_account=check_optional_text(bank_account, "bank_account", max_len=64),
                contact=check_optional_text(contact, "contact"),
                reason=check_text(reason, "reason"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def _set_frozen(
        self,
        uscc: Any,
        frozen: bool,
        reason: Any,
        actor: str,
        idempotency: Idempotency | None,
    ) -> tuple[InstitutionView, int | None]:
        return self._run(
            cmd.set_frozen,
            cmd.SetFrozen(
                uscc=check_uscc(uscc),
                frozen=frozen,
                reason=check_text(reason, "reason"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def issue_voucher(
        self,
        *,
        programme_id: Any,
        holder_id: Any,
        face_value_fen: Any,
        valid_until: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[VoucherView, int | None]:
        return self._run(
            cmd.issue_voucher,
            cmd.IssueVoucher(
                programme_id=check_key(programme_id, "program_id"),
                holder_id=check_uscc(holder_id, "holder_id"),
                face_value_fen=check_fen(face_value_fen, "face_value_fen", positive=True),
                valid_until=check_date(valid_until, "valid_until"),
                today=self.today(),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def redeem(
        self,
        *,
        voucher_id: Any,
        provider_id: Any,
        contract_no: Any,
        invoice_no: Any,
        service_category: Any,
        contract_amount_fen: Any,
        service_date: Any,
        actor: str,
        signature: str | None = None,
        signed_payload: bytes | None = None,
        idempotency: Idempotency | None = None,
    ) -> tuple[RedemptionView, int | None]:
        """Refused as self-dealing or as a duplicate claim, the attempt is stored (a
        ``RefusedRedemption``) in the same command; nothing else changes."""
        command = Redeem(
            voucher_id=check_uuid(voucher_id, "voucher"),
            provider_id=check_uscc(provider_id, "provider_id"),
            contract_no=check_key(contract_no, "contract_no"),
            invoice_no=check_key(invoice_no, "invoice_no"),
            service_category=check_text(service_category, "service_category", max_len=64),
            contract_amount_fen=check_fen(
                contract_amount_fen, "contract_amount_fen", positive=True
            ),
            service_date=check_date(service_date, "service_date"),
            signature=check_optional_text(signature, "signature", max_len=200),
            actor=actor,
            signed_payload=signed_payload,
            today=self.today(),
        )
        return self._run(redemptions.redeem, command, idempotency=idempotency)

    def revoke_voucher(
        self,
        voucher_id: Any,
        *,
        reason: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[VoucherView, int | None]:
        return self._run(
            cmd.revoke_voucher,
            cmd.Revoke(
                voucher_id=check_uuid(voucher_id, "voucher"),
                reason=check_text(reason, "reason"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def claw_back(
        self,
        redemption_id: Any,
        *,
        reason_code: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[RedemptionView, int | None]:
        if not isinstance(reason_code, str) or not _REASON_CODE_RE.fullmatch(reason_code):
            raise ValidationError("reason_code must be 1-40 of lower-case letters, digits and -")
        return self._run(
            redemptions.claw_back,
            redemptions.ClawBack(
                redemption_id=check_uuid(redemption_id, "redemption"),
                reason_code=reason_code,
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def create_principal(
        self,
        *,
        name: Any,
        role: Any,
        institution_id: Any = None,
        actor: str,
        idempotency: Idempotency | None = None,
        token: str | None = None,
    ) -> tuple[PrincipalView, str, int | None]:
        """Create a principal; returns it and its token (32 random bytes, URL-safe base64), which
        is shown this once: only its SHA-256 is stored. ``token``: one the caller chose (the
        demo's, derived from a secret), at least as long as a random one."""
        if token is not None and len(token) < (TOKEN_BYTES * 4) // 3:
            raise ValidationError("a chosen token must hold at least 256 bits")
        token = token or secrets.token_urlsafe(TOKEN_BYTES)
        view, position = self._run(
            cmd.create_principal,
            cmd.CreatePrincipal(
                token_sha256=token_digest(token),
                name=check_text(name, "name"),
                role=check_choice(role, "role", ROLES),
                institution_id=None if institution_id is None else check_uscc(institution_id),
                actor=actor,
            ),
            idempotency=idempotency,
        )
        return view, token, position

    def principal_for_token(self, token: str) -> PrincipalView | None:
        """The principal a bearer token stands for, or None: unknown, rotated out or revoked.
        The stored digest is compared in constant time."""
        digest = token_digest(token)
        principal = self._find(Principal, Principal.create_id(digest))
        if principal is None:  # not a first token: perhaps one rotated in
            binding = self._find(TokenBinding, TokenBinding.create_id(digest))
            if binding is not None:
                principal = self._find(Principal, binding.principal_id)
        if principal is None or principal.revoked:
            return None
        if not hmac.compare_digest(principal.token_sha256, digest):
            return None
        return PrincipalView.of(principal)

    def revoke_principal(
        self, principal_id: Any, *, reason: Any, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[PrincipalView, int | None]:
        return self._run(
            cmd.revoke_principal,
            cmd.RevokePrincipal(
                principal_id=check_uuid(principal_id, "principal"),
                reason=check_text(reason, "reason"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def rotate_principal(
        self, principal_id: Any, *, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[PrincipalView, str, int | None]:
        """A new token for the principal (shown this once); the old one is refused from now."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        view, position = self._run(
            cmd.rotate_token,
            cmd.RotateToken(
                principal_id=check_uuid(principal_id, "principal"),
                token_sha256=token_digest(token),
                actor=actor,
            ),
            idempotency=idempotency,
        )
        return view, token, position

    def principal_changes(self, after: int) -> tuple[list[UUID], int]:
        """Principals revoked or given a new token after position ``after``, and the last
        position looked at: what a cache of principals must forget."""
        head = self.recorder.max_notification_id() or 0
        changed = [
            event.originator_id
            for _, event in self._follow_topics(PRINCIPAL_CHANGES, after, stop=head)
        ]
        return changed, max(after, head)

    def load_aggregate(self, agg_id: UUID, version: int | None = None) -> Aggregate:
        """The aggregate as stored (at ``version``, else the latest), a copy of the one kept
        for reads brought up to date, replaying with ``ledger.events.replay``."""
        agg: Aggregate = self.reads.get(agg_id, version=version, projector_func=replay)
        return agg

    def _find(self, cls: type[A], agg_id: UUID) -> A | None:
        try:
            agg: Aggregate = self.load_aggregate(agg_id)
        except AggregateNotFoundError:
            return None
        return agg if isinstance(agg, cls) else None

    # ---- treasury: payouts (ledger/payouts.py) ---------------------------------------------
    def create_payout(
        self,
        *,
        payee_id: Any,
        source_id: Any,
        candidates: Sequence[tuple[UUID, str]],
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[PayoutView, int | None]:
        """A payout of every outstanding payable of ``payee_id`` from ``source_id`` that no live
        payout holds, among ``candidates`` ((origin id, kind), as the views list them)."""
        if len(candidates) > MAX_PAYOUT_CANDIDATES:
            raise ValidationError(f"at most {MAX_PAYOUT_CANDIDATES} payables in one payout")
        return self._run(
            payout_commands.create_payout,
            payout_commands.CreatePayout(
                payout_id=uuid.uuid4(),
                payee_id=check_uscc(payee_id, "payee_id"),
                source_id=check_key(source_id, "source_id"),
                candidates=tuple(
                    (check_uuid(o, "payable"), check_choice(k, "kind", PAYABLE_KINDS))
                    for o, k in candidates
                ),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def approve_payout(
        self, payout_id: Any, *, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[PayoutView, int | None]:
        return self._run(
            payout_commands.approve_payout,
            payout_commands.ApprovePayout(check_uuid(payout_id, "payout"), actor),
            idempotency=idempotency,
        )

    def cancel_payout(
        self, payout_id: Any, *, reason: Any, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[PayoutView, int | None]:
        return self._run(
            payout_commands.cancel_payout,
            payout_commands.CancelPayout(
                check_uuid(payout_id, "payout"), check_text(reason, "reason"), actor
            ),
            idempotency=idempotency,
        )

    def payout(self, payout_id: Any) -> PayoutView:
        agg_id = check_uuid(payout_id, "payout")
        return PayoutView.of(self._load(Payout, agg_id, f"payout {agg_id}"))

    # ---- reconciliation (ledger/bank_statements.py) ------------------------------------------
    def import_statement(
        self,
        *,
        file_sha256: str,
        summary: dict[str, Any],
        lines: Sequence[bank_statements.LineIn],
        open_payouts: Sequence[bank_statements.OpenPayout],
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[dict[str, Any], int | None]:
        """Store a parsed bank statement and what its lines settle or return, atomically; the
        same file again (by its SHA-256) changes nothing and answers ``replayed``."""
        if len(lines) > MAX_STATEMENT_LINES:
            raise ValidationError(f"at most {MAX_STATEMENT_LINES} lines in one statement")
        return self._run(
            bank_statements.import_statement,
            bank_statements.ImportStatement(
                file_sha256, summary, tuple(lines), tuple(open_payouts), actor
            ),
            idempotency=idempotency,
        )

    def confirm_bank_line(
        self,
        bank_line_id: UUID,
        *,
        payout_ids: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[dict[str, Any], int | None]:
        if not isinstance(payout_ids, list | tuple) or len(payout_ids) > MAX_PAYOUT_CANDIDATES:
            raise ValidationError("payout_ids must be a list of payout ids")
        return self._run(
            bank_statements.confirm_line,
            bank_statements.ConfirmLine(
                bank_line_id,
                tuple(dict.fromkeys(check_uuid(p, "payout") for p in payout_ids)),
                actor,
            ),
            idempotency=idempotency,
        )

    # ---- the guarantee fund (ledger/guarantee.py) -------------------------------------------
    def open_guarantee_pool(
        self,
        *,
        pool_id: Any,
        name: Any,
        shares: Any,
        rule: Any = None,
        bank_annual_cap_fen: Any = None,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.open_pool,
            guarantee_commands.OpenPool(
                pool_id=check_key(pool_id, "id"),
                name=check_text(name, "name"),
                shares=_check_shares(shares),
                rule=check_choice(
                    rule or rules.RISK_COMPENSATION_V1.ref,
                    "rule",
                    guarantee_commands.RISK_COMPENSATION_RULES,
                ),
                bank_annual_cap_fen=None
                if bank_annual_cap_fen is None
                else check_fen(bank_annual_cap_fen, "bank_annual_cap_fen"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def register_guarantee_loan(
        self,
        *,
        loan_id: Any,
        bank_id: Any,
        pool_id: Any,
        borrower_id: Any,
        principal_fen: Any,
        start_date: Any,
        term_months: Any,
        first_loan: Any,
        credit_only: Any,
        ip_pledge: Any,
        credit_share_bp: Any = None,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.register_loan,
            guarantee_commands.RegisterLoan(
                loan_id=check_key(loan_id, "id"),
                bank_id=check_uscc(bank_id, "bank_id"),
                pool_id=check_key(pool_id, "pool_id"),
                borrower_id=check_uscc(borrower_id, "borrower_id"),
                principal_fen=check_fen(principal_fen, "principal_fen", positive=True),
                start_date=check_date(start_date, "start_date"),
                term_months=check_int(term_months, "term_months", 1, MAX_TERM_MONTHS),
                first_loan=check_bool(first_loan, "first_loan"),
                credit_only=check_bool(credit_only, "credit_only"),
                ip_pledge=check_bool(ip_pledge, "ip_pledge"),
                credit_share_bp=None
                if credit_share_bp is None
                else check_bp(credit_share_bp, "credit_share_bp"),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def file_guarantee_claim(
        self,
        *,
        bank_id: Any,
        loan_id: Any,
        loss_fen: Any,
        default_date: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.file_claim,
            guarantee_commands.FileClaim(
                claim_id=uuid.uuid4(),
                bank_id=check_uscc(bank_id, "bank_id"),
                loan_id=check_key(loan_id, "loan_id"),
                loss_fen=check_fen(loss_fen, "loss_fen", positive=True),
                default_date=check_date(default_date, "default_date"),
                today=self.today(),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def approve_guarantee_claim(
        self, claim_id: Any, *, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.approve_claim,
            guarantee_commands.ApproveClaim(check_uuid(claim_id, "guarantee claim"), actor),
            idempotency=idempotency,
        )

    def reject_guarantee_claim(
        self, claim_id: Any, *, reason: Any, actor: str, idempotency: Idempotency | None = None
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.reject_claim,
            guarantee_commands.RejectClaim(
                check_uuid(claim_id, "guarantee claim"), check_text(reason, "reason"), actor
            ),
            idempotency=idempotency,
        )

    def record_guarantee_recovery(
        self,
        claim_id: Any,
        *,
        bank_id: Any,
        amount_fen: Any,
        recovered_on: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.record_recovery,
            guarantee_commands.RecordRecovery(
                claim_id=check_uuid(claim_id, "guarantee claim"),
                bank_id=check_uscc(bank_id, "bank_id"),
                amount_fen=check_fen(amount_fen, "amount_fen", positive=True),
                recovered_on=check_date(recovered_on, "recovered_on"),
                today=self.today(),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def record_exemption(
        self,
        *,
        claim_id: Any,
        decision_ref: Any,
        decided_on: Any,
        reason: Any,
        actor: str,
        idempotency: Idempotency | None = None,
    ) -> tuple[StateView, int | None]:
        return self._run(
            guarantee_commands.exempt_claim,
            guarantee_commands.Exempt(
                claim_id=check_uuid(claim_id, "guarantee claim"),
                decision_ref=check_text(decision_ref, "decision_ref"),
                decided_on=check_date(decided_on, "decided_on"),
                reason=check_text(reason, "reason"),
                today=self.today(),
                actor=actor,
            ),
            idempotency=idempotency,
        )

    def guarantee_claim(self, claim_id: Any) -> StateView:
        """A claim, with ``status`` paid once every line of its compensation is paid."""
        agg_id = check_uuid(claim_id, "guarantee claim")
        claim = self._load(GuaranteeClaim, agg_id, f"guarantee claim {agg_id}")
        view = state_view(claim)
        lines = [
            self._find(PayableLine, PayableLine.create_id(claim.id, "guarantee", s))
            for s, a in claim.splits
            if a
        ]
        if claim.status == "approved" and lines and all(line and line.paid for line in lines):
            view["status"] = "paid"
        return view

    def guarantee_pool(self, pool_id: Any) -> StateView:
        key = check_key(pool_id, "id")
        return state_view(
            self._load(GuaranteePool, GuaranteePool.create_id(key), f"guarantee pool {key}")
        )

    def expire_vouchers(self, as_of: Any, *, actor: str) -> list[UUID]:
        """Sweep: record expiry of every active voucher whose use-by date is before ``as_of``,
        releasing its unused reservation. Atomic per chunk of vouchers; returns those expired."""
        day = check_date(as_of, "as_of")
        candidates = [v for v, until in self._issued_vouchers() if until < day]
        expired: list[UUID] = []
        for start in range(0, len(candidates), EXPIRY_CHUNK):
            chunk = tuple(candidates[start : start + EXPIRY_CHUNK])
            done, _ = self._run(cmd.expire_vouchers, cmd.Expire(chunk, day, actor))
            expired.extend(done)
        return expired

    def _issued_vouchers(self) -> Iterator[tuple[UUID, dt.date]]:
        for _, issued in self._follow(Voucher.Issued, after=0):  # type: ignore[attr-defined]
            yield issued.originator_id, dt.date.fromisoformat(issued.valid_until)

    def _follow(self, event_class: type[Any], after: int) -> Iterator[tuple[int, Any]]:
        """(position, event) of every ``event_class`` event after position ``after``, in log
        order, read a page at a time."""
        return self._follow_topics([get_topic(event_class)], after)

    def _follow_topics(
        self, topics: list[str], after: int, stop: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        while True:
            page = self.recorder.select_notifications(
                after + 1, NOTIFICATION_PAGE, stop=stop, topics=topics
            )
            for n in page:
                yield n.id, self.mapper.to_domain_event(n)
            if len(page) < NOTIFICATION_PAGE:
                return
            after = page[-1].id

    # ---- queries -------------------------------------------------------------------------
    def _load(self, cls: type[A], agg_id: UUID, what: str, version: int | None = None) -> A:
        try:
            agg: Aggregate = self.load_aggregate(agg_id, version)
        except AggregateNotFoundError:
            raise NotFound(f"{what} not found") from None
        if not isinstance(agg, cls):
            raise NotFound(f"{what} not found")
        return agg

    def _version_at(self, agg_id: UUID, as_of: dt.datetime | None, what: str) -> int | None:
        """The aggregate's version at instant ``as_of`` (None: the latest). Reads its stream;
        the projections of a later issue answer this without replaying."""
        if as_of is None:
            return None
        version: int | None = None
        for stored in self.recorder.select_events(agg_id, limit=MAX_STREAM_SCAN):
            event: Any = self.mapper.to_domain_event(stored)
            if event.timestamp > as_of:
                break
            version = int(event.originator_version)
        if version is None:
            raise NotFound(f"{what} did not exist at {as_of.isoformat()}")
        return version

    def funding_source(self, source_id: Any, as_of: dt.datetime | None = None) -> FundingSourceView:
        key = check_key(source_id, "id")
        agg_id = FundingSource.create_id(key)
        what = f"funding source {key}"
        return FundingSourceView.of(
            self._load(FundingSource, agg_id, what, self._version_at(agg_id, as_of, what))
        )

    def disbursed_fen(self, source_id: str, as_of: dt.datetime | None = None) -> int:
        """Subsidy redeemed against ``source_id`` (clawbacks show as recovered, not here), read
        from the claims in the log (up to ``as_of``). Redemptions never write the funding source
        (DESIGN.md §3); the projections keep the running total for reads of the present."""
        return self.owed_fen(source_id, as_of)[0]

    def owed_fen(self, source_id: str, as_of: dt.datetime | None = None) -> tuple[int, int]:
        """(subsidy, post-subsidy) that redemptions up to ``as_of`` made ``source_id`` owe,
        clawbacks not subtracted (they count as recovered)."""
        subsidy_fen = post_subsidy_fen = 0
        claimed = ContractClaim.Claimed  # type: ignore[attr-defined]
        for _, claim in self._follow(claimed, 0):
            if as_of is not None and claim.timestamp > as_of:
                continue  # timestamps of concurrent writers may interleave in log order
            subsidy_fen += sum(a for s, a in claim.splits if s == source_id)
            if claim.post_subsidy_source_id == source_id:
                post_subsidy_fen += claim.post_subsidy_fen
        return subsidy_fen, post_subsidy_fen

    def programme(self, programme_id: Any) -> ProgrammeView:
        key = check_key(programme_id, "id")
        return ProgrammeView.of(self._load(Programme, Programme.create_id(key), f"programme {key}"))

    def institution(self, uscc: Any) -> InstitutionView:
        code = check_uscc(uscc)
        return InstitutionView.of(
            self._load(Institution, Institution.create_id(code), f"institution {code}")
        )

    def voucher_version(self, voucher_id: Any) -> int:
        """The voucher's version as stored now (one query for the events after the version
        kept for reads); NotFound if there is no such voucher."""
        agg_id = check_uuid(voucher_id, "voucher")
        try:
            cls, version = self.reads.version_of(agg_id, projector_func=replay)
        except AggregateNotFoundError:
            raise NotFound(f"voucher {agg_id} not found") from None
        if not issubclass(cls, Voucher):
            raise NotFound(f"voucher {agg_id} not found")
        return version

    def voucher(self, voucher_id: Any, as_of: dt.datetime | None = None) -> VoucherView:
        agg_id = check_uuid(voucher_id, "voucher")
        what = f"voucher {agg_id}"
        voucher = self._load(Voucher, agg_id, what, self._version_at(agg_id, as_of, what))
        return VoucherView.of(voucher, as_of.date() if as_of else self.today())

    def redemption(self, redemption_id: Any) -> RedemptionView:
        agg_id = check_uuid(redemption_id, "redemption")
        claim = self._load(ContractClaim, agg_id, f"redemption {agg_id}")
        voucher = self._load(Voucher, claim.voucher_id, "voucher")
        return RedemptionView.of(claim, voucher.remaining_fen)

    def enterprise_year(
        self, holder_id: str, fiscal_year: int, as_of: dt.datetime | None = None
    ) -> EnterpriseYear | None:
        """The holder's counter for the year (as it was at ``as_of``); None if none yet."""
        return self._year(EnterpriseYear, EnterpriseYear.create_id(holder_id, fiscal_year), as_of)

    def provider_year(
        self, provider_id: str, fiscal_year: int, as_of: dt.datetime | None = None
    ) -> ProviderYear | None:
        """The provider's counter for the year (as it was at ``as_of``); None if none yet."""
        return self._year(ProviderYear, ProviderYear.create_id(provider_id, fiscal_year), as_of)

    def _year(self, cls: type[A], agg_id: UUID, as_of: dt.datetime | None) -> A | None:
        try:
            return self._load(cls, agg_id, "", self._version_at(agg_id, as_of, ""))
        except NotFound:
            return None


CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")


def china_today() -> dt.date:
    """Today in China Standard Time (API_CONTRACT.md §2): after 16:00 UTC it is tomorrow."""
    return dt.datetime.now(CHINA_STANDARD_TIME).date()


def token_digest(token: str) -> str:
    """SHA-256 of a bearer token, hex. A token has 256 random bits, so no salt or slow hash
    is needed: nobody can guess one from its digest."""
    return hashlib.sha256(token.encode()).hexdigest()


PRINCIPAL_CHANGES = [
    get_topic(getattr(Principal, "Revoked")),  # noqa: B009
    get_topic(getattr(Principal, "TokenRotated")),  # noqa: B009
]


def _topics_of(*classes: type[Aggregate]) -> list[str]:
    topics = []
    for cls in classes:
        for value in vars(cls).values():
            if isinstance(value, type) and issubclass(value, Aggregate.Event):
                topics.append(get_topic(value))
    return topics


def _check_shares(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise ValidationError("shares must be a non-empty list of {source_id, share_bp}")
    if len(value) > MAX_SHARES:
        raise ValidationError(f"shares may name at most {MAX_SHARES} sources")
    shares: list[tuple[str, int]] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            if set(item) != {"source_id", "share_bp"}:
                raise ValidationError(f"shares[{i}] must have exactly source_id and share_bp")
            source_id, share_bp = item["source_id"], item["share_bp"]
        elif isinstance(item, tuple | list) and len(item) == 2:
            source_id, share_bp = item
        else:
            raise ValidationError(f"shares[{i}] must be {{source_id, share_bp}}")
        bp = check_bp(share_bp, f"shares[{i}].share_bp")
        if bp == 0:
            raise ValidationError(f"shares[{i}].share_bp must be positive")
        shares.append((check_key(source_id, f"shares[{i}].source_id"), bp))
    if len({s for s, _ in shares}) != len(shares):
        raise ValidationError("shares name a funding source twice")
    if sum(bp for _, bp in shares) > 10_000:
        raise ValidationError("shares must sum to at most 10000 bp")
    return tuple(shares)


def _check_public_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise ValidationError("public_key_pem must be a PEM string")
    try:
        key = load_pem_public_key(value.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):  # not PEM, or an algorithm or curve
        # this build of cryptography does not know
        raise ValidationError("public_key_pem must be an Ed25519 public key in PEM") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError("public_key_pem must be an Ed25519 public key")
    return value


__all__ = ["MAX_AMOUNT_FEN", "VoucherLedger"]
