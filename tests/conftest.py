"""Fixtures: one ledger per test on a real store. ``store_url`` is parametrised over SQLite and
PostgreSQL, so every integration test runs on both (a fixture, not a copy of the suite).

PostgreSQL comes from TEST_POSTGRES_URL (``make test`` starts a throwaway server and sets it).
When it is missing the PostgreSQL cases fail: they are never skipped."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ledger.application import VoucherLedger
from ledger.settings import Settings
from ledger.uscc import make_uscc

TODAY = dt.date(2026, 4, 1)
OFFICER = "officer-1"
PROVIDER_ACTOR = "provider-principal-1"

ENTERPRISE = make_uscc("91371500MA3C00001")
ENTERPRISE_2 = make_uscc("91371500MA3C00002")
PROVIDER = make_uscc("12371500MB2800001")
PROVIDER_2 = make_uscc("12371500MB2800002")
BANK = make_uscc("91370000MA3BANK01")


def postgres_base_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL", "")
    if not url:
        pytest.fail(
            "TEST_POSTGRES_URL is not set: run `make test`, which starts a throwaway PostgreSQL",
            pytrace=False,
        )
    return url


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose ``?schema=`` is a fresh, empty schema, dropped afterwards."""
    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield urlunsplit(urlsplit(base)._replace(query=f"schema={schema}"))
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{os.path.join(tmp_path, 'ledger.sqlite')}"
    return str(request.getfixturevalue("pg_schema_url"))


AppFactory = Callable[..., VoucherLedger]


@pytest.fixture
def make_app(store_url: str) -> Iterator[AppFactory]:
    """Open ledgers on the test's store; several may share it, like several processes."""
    opened: list[VoucherLedger] = []

    def factory(today: dt.date = TODAY, **kwargs: object) -> VoucherLedger:
        app = VoucherLedger(Settings(database_url=store_url), clock=lambda: today, **kwargs)
        opened.append(app)
        return app

    yield factory
    for app in opened:
        app.close()


@contextmanager
def open_ledger(url: str, cls: type[VoucherLedger] = VoucherLedger) -> Iterator[VoucherLedger]:
    """A ledger on ``url`` with the tests' clock, closed however the block ends."""
    app = cls(Settings(database_url=url), clock=lambda: TODAY)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def app(make_app: AppFactory) -> VoucherLedger:
    return make_app()


@pytest.fixture
def memory_app() -> Iterator[VoucherLedger]:
    """The in-memory store: eventsourcing's own fake, for fast unit and property tests."""
    app = VoucherLedger(Settings(database_url="memory://"), clock=lambda: TODAY)
    yield app
    app.close()


@dataclass(frozen=True)
class World:
    """The worked example's sources, programme and institutions (API_CONTRACT.md §5)."""

    programme_id: str = "innovation-2026"
    province: str = "province-2026"
    city: str = "city-2026"


def open_worked_example(app: VoucherLedger, world: World = World()) -> World:
    app.open_funding_source(
        source_id=world.province,
        name="Province",
        level="province",
        fiscal_year=2026,
        appropriation_fen=100_000_000,
        document_ref="鲁科字〔2026〕1号",
        actor=OFFICER,
    )
    app.open_funding_source(
        source_id=world.city,
        name="City",
        level="city",
        fiscal_year=2026,
        appropriation_fen=50_000_000,
        document_ref="聊政字〔2020〕15号",
        actor=OFFICER,
    )
    app.create_programme(
        programme_id=world.programme_id,
        name="Innovation vouchers 2026",
        fiscal_year=2026,
        shares=[
            {"source_id": world.province, "share_bp": 6000},
            {"source_id": world.city, "share_bp": 3000},
        ],
        max_face_value_fen=5_000_000,
        post_subsidy_rate_bp=500,
        post_subsidy_source_id=world.city,
        post_subsidy_annual_cap_fen=50_000_000,
        enterprise_annual_cap_fen=10_000_000,
        actor=OFFICER,
    )
    for uscc, kind in (
        (ENTERPRISE, "enterprise"),
        (ENTERPRISE_2, "enterprise"),
        (PROVIDER, "provider"),
        (PROVIDER_2, "provider"),
    ):
        app.register_institution(uscc=uscc, name=f"{kind} {uscc[-4:]}", kind=kind, actor=OFFICER)
    return world


@pytest.fixture
def world(app: VoucherLedger) -> World:
    return open_worked_example(app)


def issue(
    app: VoucherLedger,
    face_value_fen: int = 2_000_000,
    holder: str = ENTERPRISE,
    programme_id: str = "innovation-2026",
    valid_until: str = "2026-12-31",
) -> uuid.UUID:
    voucher, _ = app.issue_voucher(
        programme_id=programme_id,
        holder_id=holder,
        face_value_fen=face_value_fen,
        valid_until=valid_until,
        actor=OFFICER,
    )
    return voucher.id


def redeem(
    app: VoucherLedger,
    voucher_id: uuid.UUID,
    contract_no: str = "C-1",
    invoice_no: str | None = None,
    amount_fen: int = 1_000_000,
    provider: str = PROVIDER,
    service_date: str = "2026-04-01",
):  # type: ignore[no-untyped-def]
    return app.redeem(
        voucher_id=voucher_id,
        provider_id=provider,
        contract_no=contract_no,
        invoice_no=invoice_no or f"INV-{contract_no}",
        service_category="testing",
        contract_amount_fen=amount_fen,
        service_date=service_date,
        actor=PROVIDER_ACTOR,
    )


def log_length(app: VoucherLedger) -> int:
    """How many events the store holds (the last position)."""
    return app.recorder.max_notification_id() or 0


PROGRAMME_DEFAULTS: dict[str, object] = {
    "fiscal_year": 2026,
    "max_face_value_fen": 5_000_000,
    "post_subsidy_rate_bp": 500,
    "post_subsidy_source_id": "city-2026",
    "post_subsidy_annual_cap_fen": 50_000_000,
    "enterprise_annual_cap_fen": 10_000_000,
    "actor": OFFICER,
}


def add_programme(app: VoucherLedger, programme_id: str, shares: object, **overrides: object):  # type: ignore[no-untyped-def]
    """Create a programme with the worked example's settings, except ``overrides``."""
    kwargs = {**PROGRAMME_DEFAULTS, "name": programme_id, **overrides}
    return app.create_programme(programme_id=programme_id, shares=shares, **kwargs)


def _api(url: str, **settings: Any) -> Iterator[Any]:
    """The API over a fresh ledger at ``url``; ``settings`` override the test defaults."""
    import falcon.testing

    from api.app import create_app
    from tests.api_support import ADMIN_TOKEN, Api

    chosen = Settings(
        **{"database_url": url, "admin_token": ADMIN_TOKEN, "checkpoint_every": 8, **settings}
    )
    ledger = VoucherLedger(chosen, clock=lambda: TODAY)
    app = create_app(chosen, ledger)
    try:
        yield Api(app, falcon.testing.TestClient(app))
    finally:
        app.close()


@pytest.fixture
def api(store_url: str) -> Iterator[Any]:
    """The HTTP API over a ledger on SQLite and on PostgreSQL, driven in-process."""
    yield from _api(store_url)


@pytest.fixture
def memory_api() -> Iterator[Any]:
    """The HTTP API over the in-memory store: for tests about HTTP itself (roles, schemas)."""
    yield from _api("memory://")
