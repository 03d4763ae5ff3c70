"""Commands end to end on SQLite and PostgreSQL: what each refuses, with which slug, and that a
refused command stores nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ledger.application import VoucherLedger
from ledger.errors import LedgerError
from ledger.redemptions import RECORDED_REFUSALS
from tests.conftest import (
    BANK,
    ENTERPRISE,
    ENTERPRISE_2,
    OFFICER,
    PROVIDER,
    PROVIDER_2,
    World,
    add_programme,
    issue,
    log_length,
    redeem,
)


def recorded(slug: str) -> int:
    """Events a refusal with ``slug`` stores: the attempt, for the refusals kept as evidence."""
    return 1 if slug in {e.slug for e in RECORDED_REFUSALS} else 0


def refused(app: VoucherLedger, slug: str, command: Callable[[], Any]) -> LedgerError:
    """Run ``command``, expect a LedgerError with ``slug`` and that no event was stored but, for
    self-dealing and duplicate claims, the record of the attempt."""
    before = log_length(app)
    with pytest.raises(LedgerError) as caught:
        command()
    assert caught.value.slug == slug, caught.value.detail
    assert log_length(app) == before + recorded(slug), "a refused command stored events"
    return caught.value


@pytest.mark.parametrize("amount", [-1, 0, 1.5, 1_000_000.0, "1000000", True, 10**15 + 1, None])
def test_a_redemption_amount_that_is_not_a_positive_integer_of_fen_is_refused(
    app: VoucherLedger, world: World, amount: Any
) -> None:
    voucher_id = issue(app)
    refused(app, "validation-error", lambda: redeem(app, voucher_id, amount_fen=amount))


@pytest.mark.parametrize("face_value", [-5, 0, 2.5, "2000000", False, 10**16])
def test_a_face_value_that_is_not_a_positive_integer_of_fen_is_refused(
    app: VoucherLedger, world: World, face_value: Any
) -> None:
    refused(app, "validation-error", lambda: issue(app, face_value_fen=face_value))


@pytest.mark.parametrize("appropriation", [-1, 1e6, "5", True, 10**15 + 1])
def test_an_appropriation_that_is_not_an_integer_of_fen_is_refused(
    app: VoucherLedger, appropriation: Any
) -> None:
    refused(
        app,
        "validation-error",
        lambda: app.open_funding_source(
            source_id="s",
            name="S",
            level="city",
            fiscal_year=2026,
            appropriation_fen=appropriation,
            document_ref="doc",
            actor=OFFICER,
        ),
    )


def test_an_unknown_programme_is_not_found(app: VoucherLedger, world: World) -> None:
    refused(app, "not-found", lambda: issue(app, programme_id="no-such-programme"))


def test_an_unknown_voucher_is_not_found(app: VoucherLedger, world: World) -> None:
    refused(app, "not-found", lambda: redeem(app, uuid.uuid4()))
    refused(app, "not-found", lambda: redeem(app, "not-a-uuid"))  # type: ignore[arg-type]


def test_a_programme_naming_an_unknown_source_is_not_found(
    app: VoucherLedger, world: World
) -> None:
    refused(
        app,
        "not-found",
        lambda: add_programme(
            app,
            "p2",
            [{"source_id": "nowhere", "share_bp": 5000}],
            name="P2",
            max_face_value_fen=1,
            post_subsidy_rate_bp=0,
            post_subsidy_annual_cap_fen=0,
            enterprise_annual_cap_fen=0,
        ),
    )


def test_shares_over_10000_bp_are_refused(app: VoucherLedger, world: World) -> None:
    refused(
        app,
        "validation-error",
        lambda: add_programme(
            app,
            "p2",
            [
                {"source_id": world.province, "share_bp": 6000},
                {"source_id": world.city, "share_bp": 4001},
            ],
            name="P2",
            max_face_value_fen=1,
            post_subsidy_rate_bp=0,
            post_subsidy_annual_cap_fen=0,
            enterprise_annual_cap_fen=0,
        ),
    )


def test_a_programme_cannot_draw_on_a_source_of_another_fiscal_year(
    app: VoucherLedger, world: World
) -> None:
    app.open_funding_source(
        source_id="city-2025",
        name="City 2025",
        level="city",
        fiscal_year=2025,
        appropriation_fen=1_000,
        document_ref="d",
        actor=OFFICER,
    )
    refused(
        app,
        "validation-error",
        lambda: add_programme(
            app,
            "p2",
            [{"source_id": "city-2025", "share_bp": 5000}],
            name="P2",
            max_face_value_fen=1,
            post_subsidy_rate_bp=0,
            post_subsidy_annual_cap_fen=0,
            enterprise_annual_cap_fen=0,
        ),
    )


def test_an_invalid_uscc_is_refused(app: VoucherLedger) -> None:
    refused(
        app,
        "validation-error",
        lambda: app.register_institution(
            uscc="91350100M000100Y44", name="Bad", kind="enterprise", actor=OFFICER
        ),
    )


def test_a_public_key_that_is_not_ed25519_pem_is_refused(app: VoucherLedger) -> None:
    refused(
        app,
        "validation-error",
        lambda: app.register_institution(
            uscc="91350100M000100Y43",
            name="Key",
            kind="provider",
            public_key_pem="not a key",
            actor=OFFICER,
        ),
    )


def test_a_service_date_after_valid_until_is_refused_as_expired(
    make_app: Callable[..., VoucherLedger], app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app, valid_until="2026-06-30")
    on_the_last_day = make_app(today=dt.date(2026, 6, 30))
    refused(app, "voucher-expired", lambda: redeem(app, voucher_id, service_date="2026-07-01"))
    redeem(on_the_last_day, voucher_id, service_date="2026-06-30")


def test_a_service_date_in_the_future_is_refused_but_after_valid_until_it_is_expired(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app, valid_until="2026-06-30")
    error = refused(
        app, "validation-error", lambda: redeem(app, voucher_id, service_date="2026-04-02")
    )
    assert "future" in error.detail
    refused(app, "voucher-expired", lambda: redeem(app, voucher_id, service_date="2026-07-01"))


def test_a_service_date_before_the_voucher_was_issued_is_refused(
    make_app: Callable[..., VoucherLedger], app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app)  # issued on 2026-04-01
    a_week_later = make_app(today=dt.date(2026, 4, 8))
    error = refused(
        a_week_later,
        "validation-error",
        lambda: redeem(a_week_later, voucher_id, service_date="2026-03-31"),
    )
    assert "before the voucher was issued" in error.detail
    redeem(a_week_later, voucher_id, service_date="2026-04-01")
    redeem(a_week_later, voucher_id, contract_no="C-2", service_date="2026-04-08")


def test_today_is_the_day_in_china_standard_time() -> None:
    from ledger.application import CHINA_STANDARD_TIME, china_today

    now = dt.datetime.now(dt.UTC)
    assert china_today() in {
        (now + dt.timedelta(hours=8)).date(),
        (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date(),
    }
    late_utc = dt.datetime(2026, 4, 1, 16, 0, tzinfo=dt.UTC)
    assert late_utc.astimezone(CHINA_STANDARD_TIME).date() == dt.date(2026, 4, 2)


def test_a_voucher_beyond_the_available_appropriation_is_refused(
    app: VoucherLedger, world: World
) -> None:
    add_programme(
        app,
        "big",
        [{"source_id": world.city, "share_bp": 10_000}],
        name="Big",
        max_face_value_fen=10**12,
        post_subsidy_rate_bp=0,
        post_subsidy_annual_cap_fen=0,
        enterprise_annual_cap_fen=10**12,
    )
    issue(app, face_value_fen=49_000_000, programme_id="big")
    refused(
        app, "insufficient-funds", lambda: issue(app, face_value_fen=1_000_001, programme_id="big")
    )
    issue(app, face_value_fen=1_000_000, programme_id="big")
    assert app.funding_source(world.city).available_fen == 0


def test_a_face_value_above_the_programme_maximum_is_refused(
    app: VoucherLedger, world: World
) -> None:
    refused(app, "validation-error", lambda: issue(app, face_value_fen=5_000_001))


def test_a_bank_cannot_hold_a_voucher(app: VoucherLedger, world: World) -> None:
    app.register_institution(uscc=BANK, name="A bank", kind="bank", actor=OFFICER)
    refused(app, "validation-error", lambda: issue(app, holder=BANK))


def test_a_provider_may_hold_a_voucher_but_not_redeem_it_itself(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app, holder=PROVIDER)
    refused(app, "self-dealing", lambda: redeem(app, voucher_id, provider=PROVIDER))
    assert redeem(app, voucher_id, provider=PROVIDER_2)[0].subsidy_fen == 900_000


def test_the_same_contract_of_a_provider_is_paid_once_across_programmes(
    app: VoucherLedger, world: World
) -> None:
    add_programme(app, "second", [{"source_id": world.city, "share_bp": 5000}], name="Second")
    redeem(app, issue(app), contract_no="HT-1", invoice_no="FP-1")
    other = issue(app, programme_id="second", holder=ENTERPRISE_2)

    refused(
        app, "duplicate-claim", lambda: redeem(app, other, contract_no="HT-1", invoice_no="FP-2")
    )


def test_an_invoice_is_claimed_once_whoever_presents_it(app: VoucherLedger, world: World) -> None:
    redeem(app, issue(app), contract_no="HT-1", invoice_no="FP-1")
    other = issue(app, holder=ENTERPRISE_2)
    refused(
        app,
        "duplicate-claim",
        lambda: redeem(app, other, contract_no="HT-2", invoice_no="FP-1", provider=PROVIDER_2),
    )


def test_another_provider_may_use_the_same_contract_number(
    app: VoucherLedger, world: World
) -> None:
    redeem(app, issue(app), contract_no="HT-1", invoice_no="FP-1")
    redemption, _ = redeem(
        app, issue(app), contract_no="HT-1", invoice_no="FP-2", provider=PROVIDER_2
    )
    assert redemption.provider_id == PROVIDER_2


def test_a_holder_cannot_redeem_its_own_voucher(app: VoucherLedger, world: World) -> None:
    voucher_id = issue(app)
    refused(app, "self-dealing", lambda: redeem(app, voucher_id, provider=ENTERPRISE))


def test_a_frozen_provider_is_not_paid_until_unfrozen(app: VoucherLedger, world: World) -> None:
    voucher_id = issue(app)
    frozen, _ = app.freeze_institution(PROVIDER, reason="纪委监委 case 7", actor="inspector-1")
    assert frozen.frozen and frozen.frozen_reason == "纪委监委 case 7"

    refused(app, "payee-frozen", lambda: redeem(app, voucher_id))

    app.unfreeze_institution(PROVIDER, reason="case closed", actor="inspector-1")
    redeem(app, voucher_id)


def test_a_used_up_voucher_is_not_active(app: VoucherLedger, world: World) -> None:
    voucher_id = issue(app, face_value_fen=900_000)
    redemption, _ = redeem(app, voucher_id, amount_fen=5_000_000, contract_no="C-1")
    assert redemption.subsidy_fen == 900_000
    assert app.voucher(voucher_id).status == "used_up"
    assert app.voucher(voucher_id).remaining_by_source == (("province-2026", 0), ("city-2026", 0))
    refused(app, "voucher-not-active", lambda: redeem(app, voucher_id, contract_no="C-2"))


def test_revoking_a_voucher_releases_its_unused_reservation(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app)
    redeem(app, voucher_id)

    revoked, _ = app.revoke_voucher(voucher_id, reason="holder dissolved", actor=OFFICER)

    assert revoked.status == "revoked"
    assert revoked.released_by_source == (("province-2026", 733_333), ("city-2026", 366_667))
    province = app.funding_source("province-2026")
    assert province.committed_fen == 600_000  # only what was redeemed stays committed
    assert province.available_fen == 100_000_000 - 600_000
    refused(app, "voucher-not-active", lambda: redeem(app, voucher_id, contract_no="C-2"))
    refused(
        app,
        "voucher-not-active",
        lambda: app.revoke_voucher(voucher_id, reason="again", actor=OFFICER),
    )


def test_the_expiry_sweep_releases_vouchers_past_their_date(
    make_app: Callable[..., VoucherLedger], world: World, app: VoucherLedger
) -> None:
    short = issue(app, valid_until="2026-04-30")
    long = issue(app, valid_until="2026-12-31")
    redeem(app, short, amount_fen=100_000)

    expired = app.expire_vouchers("2026-05-01", actor="sweeper")

    assert expired == [short]
    assert app.voucher(short).status == "expired"
    assert app.voucher(long).status == "active"
    # The long voucher's reservations (subsidy and the post-subsidy it can earn) stay; of the
    # short one only what its redemption drew: 30,000 of subsidy and 5,000 of post-subsidy.
    assert app.funding_source("city-2026").committed_fen == 666_667 + 111_111 + 30_000 + 5_000
    assert app.expire_vouchers("2026-05-01", actor="sweeper") == []


def test_the_enterprise_annual_cap_limits_the_subsidy_then_refuses(
    app: VoucherLedger, world: World
) -> None:
    add_programme(
        app,
        "capped",
        [{"source_id": world.city, "share_bp": 9000}],
        name="Capped",
        enterprise_annual_cap_fen=1_000_000,
    )
    voucher_id = issue(app, programme_id="capped", face_value_fen=5_000_000)

    first, _ = redeem(app, voucher_id, contract_no="C-1", amount_fen=1_000_000)
    second, _ = redeem(app, voucher_id, contract_no="C-2", amount_fen=1_000_000)

    assert first.subsidy_fen == 900_000
    assert second.subsidy_fen == 100_000  # only what is left of the 1,000,000 fen cap
    assert second.enterprise_pays_fen == 900_000
    refused(
        app,
        "enterprise-cap-reached",
        lambda: redeem(app, voucher_id, contract_no="C-3", amount_fen=1_000_000),
    )


def test_the_provider_bonus_stops_at_the_annual_cap(app: VoucherLedger, world: World) -> None:
    add_programme(
        app,
        "bonus",
        [{"source_id": world.city, "share_bp": 1000}],
        name="Bonus",
        post_subsidy_annual_cap_fen=60_000,
    )
    voucher_id = issue(app, programme_id="bonus", face_value_fen=5_000_000)

    first, _ = redeem(app, voucher_id, contract_no="C-1", amount_fen=1_000_000)
    second, _ = redeem(app, voucher_id, contract_no="C-2", amount_fen=1_000_000)
    third, _ = redeem(app, voucher_id, contract_no="C-3", amount_fen=1_000_000)

    assert (first.post_subsidy_fen, second.post_subsidy_fen, third.post_subsidy_fen) == (
        50_000,
        10_000,
        0,
    )


def test_a_clawback_returns_the_subsidy_to_its_sources_as_recovered(
    app: VoucherLedger, world: World
) -> None:
    redemption, _ = redeem(app, issue(app))

    clawed, position = app.claw_back(
        redemption.id, reason_code="false-invoice", actor="inspector-1"
    )

    assert clawed.clawed_back and position is not None
    province, city = app.funding_source("province-2026"), app.funding_source("city-2026")
    # The city source recovers its subsidy and the post-subsidy it owed the provider.
    assert (province.recovered_fen, city.recovered_fen) == (600_000, 300_000 + 50_000)
    assert province.available_fen == 100_000_000 - 1_333_333 + 600_000
    provider_year = app.provider_year(PROVIDER, 2026)
    assert provider_year is not None and provider_year.post_subsidy_clawed_back_fen == 50_000
    refused(
        app,
        "invalid-state",
        lambda: app.claw_back(redemption.id, reason_code="again", actor="inspector-1"),
    )
    refused(
        app,
        "validation-error",
        lambda: app.claw_back(redemption.id, reason_code="Bad Code!", actor="inspector-1"),
    )


def test_opening_the_same_source_twice_is_idempotent_but_other_attributes_conflict(
    app: VoucherLedger, world: World
) -> None:
    before = log_length(app)
    again, position = app.open_funding_source(
        source_id=world.city,
        name="City",
        level="city",
        fiscal_year=2026,
        appropriation_fen=50_000_000,
        document_ref="聊政字〔2020〕15号",
        actor=OFFICER,
    )
    assert position is None and log_length(app) == before
    assert again.appropriation_fen == 50_000_000
    refused(
        app,
        "already-exists",
        lambda: app.open_funding_source(
            source_id=world.city,
            name="City",
            level="city",
            fiscal_year=2026,
            appropriation_fen=60_000_000,
            document_ref="other",
            actor=OFFICER,
        ),
    )


def test_every_event_names_the_acting_principal(app: VoucherLedger, world: World) -> None:
    voucher_id = issue(app)
    redeem(app, voucher_id)
    notifications = app.recorder.select_notifications(1, 1000)
    events = [app.mapper.to_domain_event(n) for n in notifications]
    for event in events:
        if type(event).__name__ in ("Issued", "Reserved", "Redeemed", "Claimed"):
            assert getattr(event, "actor", None) in (OFFICER, "provider-principal-1"), event


def test_a_contract_number_with_a_trailing_newline_is_not_a_new_contract(
    app: VoucherLedger, world: World
) -> None:
    voucher_id = issue(app)
    redeem(app, voucher_id, contract_no="C-1")
    refused(app, "validation-error", lambda: redeem(app, voucher_id, contract_no="C-1\n"))
