"""Shared set-up for benchmarks: a fresh ledger in its own schema or file, loaded with sources,
a programme, institutions and vouchers sized for the run."""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg

from ledger.application import VoucherLedger
from ledger.settings import Settings
from ledger.uscc import make_uscc
from ledger.views import RedemptionView

TODAY = dt.date(2026, 4, 1)
BIG_FEN = 10**14


def fresh_database_url(base_url: str) -> str:
    """A URL for an empty ledger: a new schema on PostgreSQL, a new file for SQLite."""
    parts = urlsplit(base_url)
    if parts.scheme.startswith("postgres"):
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(base_url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return urlunsplit(parts._replace(query=f"schema={schema}"))
    if parts.scheme == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="ledger-bench-"), "ledger.sqlite")
        return f"sqlite:///{path}"
    return base_url


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres") and parts.query.startswith("schema="):
        schema = parts.query.split("=", 1)[1]
        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def enterprise_id(i: int) -> str:
    return make_uscc(f"91350100E{i:08d}")


def provider_id(i: int) -> str:
    return make_uscc(f"91110000P{i:08d}")


@dataclass
class Loaded:
    app: VoucherLedger
    vouchers: list[uuid.UUID]
    providers: list[str]


def load(url: str, *, vouchers: int, enterprises: int = 50, providers: int = 20) -> Loaded:
    app = VoucherLedger(Settings(database_url=url), clock=lambda: TODAY)
    actor = "bench"
    for sid, level in (("prov", "province"), ("city", "city")):
        app.open_funding_source(
            source_id=sid,
            name=sid,
            level=level,
            fiscal_year=2026,
            appropriation_fen=BIG_FEN,
            document_ref="bench",
            actor=actor,
        )
    app.create_programme(
        programme_id="bench",
        name="bench",
        fiscal_year=2026,
        shares=[("prov", 6000), ("city", 3000)],
        max_face_value_fen=BIG_FEN,
        post_subsidy_rate_bp=500,
        post_subsidy_source_id="city",
        post_subsidy_annual_cap_fen=BIG_FEN,
        enterprise_annual_cap_fen=BIG_FEN,
        actor=actor,
    )
    for i in range(enterprises):
        app.register_institution(
            uscc=enterprise_id(i), name=f"E{i}", kind="enterprise", actor=actor
        )
    for i in range(providers):
        app.register_institution(uscc=provider_id(i), name=f"P{i}", kind="provider", actor=actor)
    ids = [
        app.issue_voucher(
            programme_id="bench",
            holder_id=enterprise_id(i % enterprises),
            face_value_fen=10**12,
            valid_until="2026-12-31",
            actor=actor,
        )[0].id
        for i in range(vouchers)
    ]
    return Loaded(app, ids, [provider_id(i) for i in range(providers)])


def redeem_one(
    app: VoucherLedger, vouchers: list[uuid.UUID], providers: list[str], n: int, prefix: str = ""
) -> RedemptionView:
    """The ``n``th benchmark redemption: a fresh contract and invoice, a small amount."""
    redeemed, _ = app.redeem(
        voucher_id=vouchers[n % len(vouchers)],
        provider_id=providers[n % len(providers)],
        contract_no=f"C{prefix}{n}",
        invoice_no=f"I{prefix}{n}",
        service_category="testing",
        contract_amount_fen=1000 + n % 997,
        service_date="2026-04-01",
        actor="bench",
    )
    return redeemed


def postgres_url() -> str:
    """DATABASE_URL, which must name a PostgreSQL server (else exit with a message)."""
    url = os.environ.get("DATABASE_URL", "")
    if not urlsplit(url).scheme.startswith("postgres"):
        sys.exit("DATABASE_URL must be a postgresql:// URL")
    return url
