"""Demo data: the worked example of API_CONTRACT.md §5 plus a few dozen vouchers and redemptions
across two programmes. Loading it twice changes nothing the second time."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from ledger.application import VoucherLedger
from ledger.claims import ContractClaim
from ledger.errors import AlreadyExists, LedgerError
from ledger.uscc import make_uscc

ACTOR = "demo-loader"
PROVINCE, CITY = "province-2026", "city-2026"
COUNTY = "county-2026"
PROGRAMME_A, PROGRAMME_B = "innovation-voucher-2026", "instrument-sharing-2026"
# Codes completed with their GB 32100-2015 check character.
WORKED_ENTERPRISE = make_uscc("91371500MA3C00001")
WORKED_PROVIDER = make_uscc("12371500MB2800001")
ENTERPRISES = [make_uscc(f"91371500MA3C{i:05d}") for i in range(2, 14)]
PROVIDERS = [make_uscc(f"12371500MB28{i:05d}") for i in range(2, 8)]
WORKED_CONTRACT = "LC-2026-0001"
# The guarantee fund, shaped as Zhuhai's pool (fixtures/policy_parameters.md,
# zhuhai.kjxd.2022.pool): province 5m + city 35m yuan, so 1250 / 8750 bp.
GUARANTEE_PROVINCE, GUARANTEE_CITY = "guarantee-province-2026", "guarantee-city-2026"
GUARANTEE_POOL = "tech-credit-pool-2026"
DEMO_BANK = make_uscc("91371500MA3D00001")
DEMO_LOAN = "LOAN-2026-0001"
DEMO_POOL_REF = "演示数据 参照珠海科技信贷风险补偿金 2022"  # demo data, not a real document


# One principal per role a newcomer tries first; the provider acts for the worked example's,
# the bank for the demo bank.
DEMO_ROLES = ("program_officer", "provider", "treasury", "auditor", "inspector", "bank")
ROLE_INSTITUTIONS = {"provider": WORKED_PROVIDER, "bank": DEMO_BANK}
SECRET_BYTES = 32


@dataclass(frozen=True)
class DemoResult:
    loaded: bool
    worked_voucher_id: UUID | None
    worked_redemption_id: UUID
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token


def load_demo(app: VoucherLedger, secret: bytes | None = None) -> DemoResult:
    """Load the demo; a second call finds the worked redemption and stores nothing. With
    ``secret``, also one principal per role of ``DEMO_ROLES``, whose tokens derive from it: the
    same tokens each time, so they can be printed again without storing them."""
    worked_redemption = ContractClaim.create_id(WORKED_PROVIDER, WORKED_CONTRACT)
    _open_sources_and_programmes(app)
    _register_institutions(app)
    tokens = demo_principals(app, secret) if secret is not None else {}
    try:
        app.redemption(worked_redemption)
    except LedgerError:
        pass
    else:
        return DemoResult(False, None, worked_redemption, tokens)
    valid_until = app.today() + dt.timedelta(days=365)
    voucher, _ = app.issue_voucher(
        programme_id=PROGRAMME_A,
        holder_id=WORKED_ENTERPRISE,
        face_value_fen=2_000_000,
        valid_until=valid_until,
        actor=ACTOR,
    )
    app.redeem(
        voucher_id=voucher.id,
        provider_id=WORKED_PROVIDER,
        contract_no=WORKED_CONTRACT,
        invoice_no="INV-2026-0001",
        service_category="testing",
        contract_amount_fen=1_000_000,
        service_date=app.today(),
        actor=ACTOR,
    )
    _load_more(app, valid_until)
    _open_guarantee_pool(app)
    return DemoResult(True, voucher.id, worked_redemption, tokens)


def demo_principals(app: VoucherLedger, secret: bytes) -> dict[str, str]:
    """A principal per role of ``DEMO_ROLES`` (created once), and its token: HMAC-SHA256 of the
    role under ``secret``. Only a token's digest is stored, as for any principal."""
    tokens = {}
    for role in DEMO_ROLES:
        digest = hmac.new(secret, f"voucher-ledger demo {role}".encode(), hashlib.sha256).digest()
        token = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if app.principal_for_token(token) is None:
            try:
                app.create_principal(
                    name=f"demo {role.replace('_', ' ')}",
                    role=role,
                    institution_id=ROLE_INSTITUTIONS.get(role),
                    actor=ACTOR,
                    token=token,
                )
            except AlreadyExists:  # an admin revoked it, or rotated its token: so be it
                continue
        tokens[role] = token
    return tokens


def demo_secret(path: str | None) -> bytes:
    """The secret at ``path``, created there (mode 0600) on first use; None: one for this run."""
    if path is None:
        return secrets.token_bytes(SECRET_BYTES)
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two processes starting at once keep the first one's secret
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(SECRET_BYTES))
    secret = file.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"{path} does not hold a {SECRET_BYTES}-byte demo secret")
    return secret


def _open_sources_and_programmes(app: VoucherLedger) -> None:
    fund = "guarantee_fund"
    for source_id, name, level, appropriation_fen, ref in (
        (PROVINCE, "省科技厅创新券专项 2026", "province", 100_000_000, "鲁科字〔2026〕1号"),
        (CITY, "市财政创新券配套 2026", "city", 50_000_000, "聊政字〔2020〕15号"),
        (COUNTY, "县科技创新资金 2026", "county", 20_000_000, "县财预〔2026〕3号"),
        (GUARANTEE_PROVINCE, "省科技信贷风险补偿金 2026", fund, 500_000_000, DEMO_POOL_REF),
        (GUARANTEE_CITY, "市科技信贷风险补偿金 2026", fund, 3_500_000_000, DEMO_POOL_REF),
    ):
        app.open_funding_source(
            source_id=source_id,
            name=name,
            level=level,
            fiscal_year=2026,
            appropriation_fen=appropriation_fen,
            document_ref=ref,
            actor=ACTOR,
        )
    app.create_programme(
        programme_id=PROGRAMME_A,
        name="科技创新券 2026",
        fiscal_year=2026,
        shares=[(PROVINCE, 6000), (CITY, 3000)],
        max_face_value_fen=5_000_000,
        post_subsidy_rate_bp=500,
        post_subsidy_source_id=CITY,
        post_subsidy_annual_cap_fen=50_000_000,
        enterprise_annual_cap_fen=10_000_000,
        actor=ACTOR,
    )
    app.create_programme(
        programme_id=PROGRAMME_B,
        name="大型仪器共享券 2026",
        fiscal_year=2026,
        shares=[(CITY, 5000), (COUNTY, 3000)],
        max_face_value_fen=1_000_000,
        post_subsidy_rate_bp=500,
        post_subsidy_source_id=CITY,
        post_subsidy_annual_cap_fen=50_000_000,
        enterprise_annual_cap_fen=3_000_000,
        actor=ACTOR,
    )


def _register_institutions(app: VoucherLedger) -> None:
    app.register_institution(
        uscc=WORKED_ENTERPRISE, name="聊城示范科技有限公司", kind="enterprise", actor=ACTOR
    )
    app.register_institution(
        uscc=WORKED_PROVIDER, name="聊城检验检测中心", kind="provider", actor=ACTOR
    )
    for i, uscc in enumerate(ENTERPRISES):
        app.register_institution(
            uscc=uscc, name=f"示范企业 {i + 2:02d}", kind="enterprise", actor=ACTOR
        )
    for i, uscc in enumerate(PROVIDERS):
        app.register_institution(
            uscc=uscc, name=f"科技服务机构 {i + 2:02d}", kind="provider", actor=ACTOR
        )
    app.register_institution(uscc=DEMO_BANK, name="示范合作银行", kind="bank", actor=ACTOR)


def _open_guarantee_pool(app: VoucherLedger) -> None:
    """The pool over the two guarantee_fund sources, and one covered loan of the demo bank to
    the worked example's enterprise: a bank can file a claim on it at once."""
    app.open_guarantee_pool(
        pool_id=GUARANTEE_POOL,
        name="科技信贷风险补偿资金池 2026",
        shares=[(GUARANTEE_PROVINCE, 1250), (GUARANTEE_CITY, 8750)],
        rule="risk-compensation@2",
        actor=ACTOR,
    )
    app.register_guarantee_loan(
        loan_id=DEMO_LOAN,
        bank_id=DEMO_BANK,
        pool_id=GUARANTEE_POOL,
        borrower_id=WORKED_ENTERPRISE,
        principal_fen=200_000_000,
        start_date=app.today() - dt.timedelta(days=180),
        term_months=12,
        first_loan=True,
        credit_only=True,
        ip_pledge=False,
        actor=ACTOR,
    )


def _load_more(app: VoucherLedger, valid_until: dt.date) -> None:
    """36 more vouchers over both programmes; about two in three are (partly) redeemed."""
    for i in range(36):
        programme = PROGRAMME_A if i % 3 else PROGRAMME_B
        face_value_fen = (
            (200_000 + 50_000 * (i % 7))
            if programme == PROGRAMME_B
            else (500_000 + 250_000 * (i % 9))
        )
        voucher, _ = app.issue_voucher(
            programme_id=programme,
            holder_id=ENTERPRISES[i % len(ENTERPRISES)],
            face_value_fen=face_value_fen,
            valid_until=valid_until,
            actor=ACTOR,
        )
        if i % 3 == 2:
            continue
        app.redeem(
            voucher_id=voucher.id,
            provider_id=PROVIDERS[i % len(PROVIDERS)],
            contract_no=f"DEMO-{i + 2:04d}",
            invoice_no=f"INV-DEMO-{i + 2:04d}",
            service_category="testing" if programme == PROGRAMME_B else "consulting",
            contract_amount_fen=300_000 + 37_501 * i,
            service_date=app.today(),
            actor=ACTOR,
        )
