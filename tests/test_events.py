"""``ledger.events`` builds the same events and aggregates as eventsourcing's own path: the
same attributes in the same order, the same stored bytes, and the same aggregate on replay."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from ledger import events
from ledger.application import VoucherLedger
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim, InvoiceClaim
from ledger.funding import FundingSource
from ledger.settings import Settings
from ledger.voucher import Voucher

WHEN = dt.datetime(2026, 4, 1, 8, 30, tzinfo=dt.UTC)
REDEMPTION = uuid.UUID(int=7)
PROVIDER = "12371500MB2800001"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """Both paths take their timestamps from ``create_timestamp``: it returns ``clock[0]``, which
    a test moves on between the events it compares."""
    now = [WHEN]
    monkeypatch.setattr("eventsourcing.domain.datetime_now_with_tzinfo", lambda: now[0])
    return now


@pytest.fixture
def app() -> Any:
    ledger = VoucherLedger(Settings(database_url="memory://"))
    yield ledger
    ledger.close()


def state(agg: Aggregate) -> dict[str, Any]:
    return {k: v for k, v in vars(agg).items() if k != "_pending_events"}


def same(app: VoucherLedger, lean: Aggregate, library: Aggregate) -> None:
    assert list(state(lean)) == list(state(library))
    assert state(lean) == state(library)
    lean_events = lean.collect_events()
    library_events = library.collect_events()
    assert [list(vars(e)) for e in lean_events] == [list(vars(e)) for e in library_events]
    stored = [app.mapper.to_stored_event(e) for e in lean_events]
    assert stored == [app.mapper.to_stored_event(e) for e in library_events]
    replayed: Any = None
    for s in stored:
        replayed = app.mapper.to_domain_event(s).mutate(replayed)  # type: ignore[attr-defined]
    assert state(replayed) == state(lean)


CLAIM = dict(
    provider_id=PROVIDER,
    contract_no="C-1",
    invoice_no="I-1",
    voucher_id=uuid.UUID(int=3),
    programme_id="p",
    holder_id="91371500MA3C00001",
    fiscal_year=2026,
    service_category="testing",
    service_date="2026-04-01",
    contract_amount_fen=100_000,
    subsidy_fen=90_000,
    enterprise_pays_fen=10_000,
    splits=[["prov", 60_000], ["city", 30_000]],
    honoured_contract_fen=100_000,
    post_subsidy_fen=5_000,
    post_subsidy_source_id="city",
    actor="p1",
    rules=["r@1"],
    rule_params={"r@1": {"rate_bp": 500}},
    signature=None,
    signed_payload=None,
    public_key_sha256=None,
)


@pytest.mark.usefixtures("clock")
def test_a_contract_claim_is_created_as_the_library_creates_it(app: VoucherLedger) -> None:
    claim_id = ContractClaim.create_id(PROVIDER, "C-1")
    lean = ContractClaim.claim(claim_id, **CLAIM)
    library = ContractClaim._create(ContractClaim.Claimed, id=claim_id, **CLAIM)  # type: ignore[attr-defined]
    same(app, lean, library)


@pytest.mark.usefixtures("clock")
def test_an_invoice_claim_is_created_as_the_library_creates_it(app: VoucherLedger) -> None:
    fields = dict(invoice_no="I-1", provider_id=PROVIDER, redemption_id=REDEMPTION, actor="p1")
    claim_id = InvoiceClaim.create_id("I-1")
    lean = InvoiceClaim.claim(claim_id, **fields)
    library = InvoiceClaim._create(InvoiceClaim.Claimed, id=claim_id, **fields)  # type: ignore[attr-defined]
    same(app, lean, library)


def voucher() -> Voucher:
    return Voucher(
        programme_id="p",
        holder_id="91371500MA3C00001",
        fiscal_year=2026,
        face_value_fen=1_000_000,
        valid_until="2026-12-31",
        reservations=[["prov", 600_000], ["city", 300_000]],
        actor="officer",
        rule="r@1",
    )


def test_counters_and_voucher_events_are_emitted_as_the_library_triggers_them(
    app: VoucherLedger, clock: list[dt.datetime]
) -> None:
    redeemed = dict(
        redemption_id=REDEMPTION,
        provider_id=PROVIDER,
        contract_amount_fen=100_000,
        splits=[["prov", 60_000], ["city", 30_000]],
        service_date="2026-04-01",
        actor="p1",
        rule="r@1",
        post_subsidy_fen=5_000,
    )
    received = dict(
        subsidy_fen=90_000, cap_fen=10**9, redemption_id=REDEMPTION, rule="r@1", actor="p1"
    )
    accrued = dict(
        contract_amount_fen=100_000,
        subsidy_fen=90_000,
        post_subsidy_fen=5_000,
        post_subsidy_cap_fen=10**9,
        redemption_id=REDEMPTION,
        rule="r@1",
        actor="p1",
    )
    cases: list[tuple[Aggregate, Aggregate, type[Any], dict[str, Any]]] = []
    for created, event_class, fields in (
        (voucher(), Voucher.Redeemed, redeemed),
        (
            EnterpriseYear(holder_id="E", fiscal_year=2026, actor="a"),
            EnterpriseYear.SubsidyReceived,
            received,
        ),
        (ProviderYear(provider_id="P", fiscal_year=2026, actor="a"), ProviderYear.Accrued, accrued),
    ):
        cases.append((created, copy.deepcopy(created), event_class, fields))
    for lean, library, event_class, fields in cases:
        for minutes in (1, 2):  # versions 2 and 3, each at its own instant
            clock[0] = WHEN + dt.timedelta(minutes=minutes)
            events.emit(lean, event_class, **fields)
            library.trigger_event(event_class, **fields)
        assert lean.version == 3 and lean.modified_on == WHEN + dt.timedelta(minutes=2)
        same(app, lean, library)


def test_a_missing_or_unexpected_field_is_refused() -> None:
    v = voucher()
    with pytest.raises(TypeError, match="missing \\['rule'\\]"):
        events.emit(
            v,
            Voucher.Redeemed,
            redemption_id=REDEMPTION,
            provider_id=PROVIDER,
            contract_amount_fen=1,
            splits=[],
            service_date="2026-04-01",
            actor="p1",
            post_subsidy_fen=0,
        )
    with pytest.raises(TypeError, match="unexpected \\['colour'\\]"):
        events.create(
            InvoiceClaim,
            InvoiceClaim.Claimed,  # type: ignore[attr-defined]
            uuid.UUID(int=1),
            invoice_no="I",
            provider_id=PROVIDER,
            actor="p1",
            colour="red",
        )
    assert v.version == 1 and v.collect_events()[-1].originator_version == 1


def test_replay_gives_the_aggregate_the_library_projection_gives_with_and_without_snapshots() -> (
    None
):
    from tests.conftest import PROVIDER as WORLD_PROVIDER
    from tests.conftest import TODAY, issue, open_worked_example, redeem

    ledger = VoucherLedger(Settings(database_url="memory://"), clock=lambda: TODAY)
    try:
        world = open_worked_example(ledger)
        voucher_id = issue(ledger)
        for n in range(3):
            redeem(ledger, voucher_id, contract_no=f"C-{n}", amount_fen=100_000)
        source_id = FundingSource.create_id(world.province)
        year_id = ProviderYear.create_id(WORLD_PROVIDER, 2026)

        def both(agg_id: uuid.UUID, version: int | None = None) -> tuple[Any, Any]:
            library = ledger.repository.get(agg_id, version=version)
            ours = ledger.load_aggregate(agg_id, version)
            return vars(library), vars(ours)

        for agg_id in (voucher_id, source_id, year_id):
            library, ours = both(agg_id)
            assert ours == library and ours["_version"] > 1
            assert both(agg_id, 1)[0] == both(agg_id, 1)[1]
        ledger.take_snapshot(source_id)
        redeem(ledger, voucher_id, contract_no="C-after-snapshot", amount_fen=100_000)
        library, ours = both(source_id)
        assert ours == library
    finally:
        ledger.close()
