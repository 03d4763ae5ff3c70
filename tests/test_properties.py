"""Property tests: random workloads of issue / redeem / revoke / expire / claw back / freeze keep
the money invariants of DESIGN.md §2-3, refuse only with LedgerErrors that store nothing, and the
state the writer caches is the state the log replays to.

A small model (plain integers, no ledger code) predicts every outcome; on top of that the ledger's
own reads must satisfy the invariants without the model:

1. a redemption's splits add up to its subsidy, and subsidy + enterprise pays = contract amount;
2. no balance, remaining or cap remaining goes below zero, and no cap is exceeded;
3. per source: reserved = outstanding on vouchers + released + disbursed, committed = reserved −
   released, recovered = clawed-back splits;
4. every cached aggregate equals the aggregate replayed from the log (and a second ledger on the
   same store reads the same)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.application import VoucherLedger
from ledger.caps import EnterpriseYear, ProviderYear
from ledger.claims import ContractClaim
from ledger.errors import (
    DuplicateClaim,
    EnterpriseCapReached,
    InsufficientFunds,
    InvalidState,
    LedgerError,
    NotFound,
    PayeeFrozen,
    SelfDealing,
    ValidationError,
    VoucherExpired,
    VoucherNotActive,
)
from ledger.funding import FundingSource
from ledger.redemptions import RECORDED_REFUSALS
from ledger.settings import Settings
from ledger.views import FundingSourceView, RedemptionView, VoucherView
from ledger.voucher import Voucher
from tests.conftest import (
    ENTERPRISE,
    ENTERPRISE_2,
    OFFICER,
    PROVIDER,
    PROVIDER_2,
    PROVIDER_ACTOR,
    TODAY,
    AppFactory,
    issue,
    log_length,
    open_worked_example,
    redeem,
)

BP_WHOLE = 10_000
# (source id, fiscal year, level): three sources for 2026 programmes, one for 2027.
SOURCES = (
    ("prov-26", 2026, "province"),
    ("city-26", 2026, "city"),
    ("county-26", 2026, "county"),
    ("prov-27", 2027, "province"),
)
PROGRAMME_YEARS = (("pa-26", 2026), ("pb-26", 2026), ("pc-27", 2027))
FISCAL_YEARS = (2026, 2027)
ENTERPRISES = (ENTERPRISE, ENTERPRISE_2)
PROVIDERS = (PROVIDER, PROVIDER_2)
REASON_CODES = ("improper-invoice", "collusion")
# Contract and invoice numbers: a negative draw is a fresh number, others come from small pools
# so that duplicates happen.
CONTRACT_POOL = 12
INVOICE_POOL = 16
EXPIRY_HORIZON_DAYS = 60

# ---- the world: sources, programmes and caps one run works on --------------------------------


@dataclass(frozen=True)
class ProgrammeSpec:
    programme_id: str
    fiscal_year: int
    shares: tuple[tuple[str, int], ...]
    max_face_value_fen: int
    bonus_rate_bp: int
    bonus_source_id: str

    @property
    def shares_bp_total(self) -> int:
        return sum(bp for _, bp in self.shares)


@dataclass(frozen=True)
class World:
    appropriations_fen: tuple[int, ...]  # in the order of SOURCES
    programmes: tuple[ProgrammeSpec, ...]
    # Caps per fiscal year: every programme of a year has the same caps, because the ledger counts
    # an enterprise's (a provider's) subsidy per fiscal year, across programmes.
    enterprise_caps_fen: tuple[int, ...]  # in the order of FISCAL_YEARS
    provider_caps_fen: tuple[int, ...]

    def enterprise_cap_fen(self, fiscal_year: int) -> int:
        return self.enterprise_caps_fen[FISCAL_YEARS.index(fiscal_year)]

    def provider_cap_fen(self, fiscal_year: int) -> int:
        return self.provider_caps_fen[FISCAL_YEARS.index(fiscal_year)]


def sources_of_year(fiscal_year: int) -> list[str]:
    return [s for s, year, _ in SOURCES if year == fiscal_year]


BONUS_RATES = st.one_of(st.just(500), st.integers(0, BP_WHOLE))
FACE_VALUES = st.integers(1, 15_000)
CONTRACT_AMOUNTS = st.one_of(st.integers(1, 40), st.integers(1, 25_000))
# (small, large) bounds of a world's amounts: a world tight on money (on caps) draws them from
# 0..small, so that issues run out of money (caps fill up); a generous one from small..large.
APPROPRIATION_FEN = (30_000, 10**9)
MAX_FACE_VALUE_FEN = (12_000, 10**6)
ENTERPRISE_CAP_FEN = (6_000, 10**12)
PROVIDER_CAP_FEN = (1_500, 10**12)


def now_and_then(rare: Any, usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual``, but about one draw in 32 (more while hypothesis probes edges) ``rare``."""
    return st.integers(0, 31).flatmap(lambda i: st.just(rare) if i == 31 else usual)


# An index into what exists (see Harness.pick_voucher), or -1: something that does not exist.
PICKS = now_and_then(-1, st.integers(0, 127).map(lambda i: i if i % 4 == 1 else i - i % 2))
RARELY = now_and_then(True, st.just(False))
# Days from today to a new voucher's valid_until; -1 is in the past, so refused.
VALID_DAYS = now_and_then(-1, st.integers(0, EXPIRY_HORIZON_DAYS))
CONTRACT_NUMBERS = st.integers(0, 3).flatmap(
    lambda i: st.integers(0, CONTRACT_POOL) if i == 0 else st.just(-1)
)
INVOICE_NUMBERS = st.integers(0, 3).flatmap(
    lambda i: st.integers(0, INVOICE_POOL) if i == 0 else st.just(-1)
)
# Days from today to a redemption's service date: mostly today; before the voucher was issued,
# after its date, or in the future now and then.
SERVICE_DAYS_CHOICES = (0, 0, 0, 0, -1, -3, -12, -40, 1)
SERVICE_DAYS = st.sampled_from(SERVICE_DAYS_CHOICES)
# Mostly the right kind, sometimes the wrong one (a provider holding, an enterprise redeeming).
# The first enterprise holds most vouchers, so its annual cap fills up.
HOLDERS = now_and_then(PROVIDER, st.sampled_from((ENTERPRISE, ENTERPRISE, ENTERPRISE_2)))
# The second provider is the one that gets frozen, so it redeems less.
PAYEES = now_and_then(ENTERPRISE, st.sampled_from((PROVIDER, PROVIDER, PROVIDER, PROVIDER_2)))


# The worked example's shares, and equal shares, whose splits tie (ties go to the first listed).
PRESET_SHARES_2026 = (
    (("prov-26", 6000), ("city-26", 3000)),
    (("prov-26", 4500), ("city-26", 4500)),
    (("city-26", 3000), ("county-26", 3000), ("prov-26", 3000)),
)


@st.composite
def shares_over(draw: st.DrawFn, sources: list[str]) -> tuple[tuple[str, int], ...]:
    chosen = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=3, unique=True))
    limit_bp = BP_WHOLE // len(chosen)
    return tuple((s, draw(st.integers(1, limit_bp))) for s in chosen)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    tight_money, tight_caps = draw(st.booleans()), draw(st.booleans())

    def amount_fen(bounds: tuple[int, int], tight: bool) -> int:
        small_fen, large_fen = bounds
        return draw(st.integers(0, small_fen) if tight else st.integers(small_fen, large_fen))

    programmes = []
    for programme_id, year in PROGRAMME_YEARS:
        sources = sources_of_year(year)
        shares = draw(
            st.one_of(st.sampled_from(PRESET_SHARES_2026), shares_over(sources))
            if year == 2026
            else shares_over(sources)
        )
        programmes.append(
            ProgrammeSpec(
                programme_id=programme_id,
                fiscal_year=year,
                shares=shares,
                max_face_value_fen=max(1, amount_fen(MAX_FACE_VALUE_FEN, tight_money)),
                bonus_rate_bp=draw(BONUS_RATES),
                bonus_source_id=draw(st.sampled_from(sources)),
            )
        )
    return World(
        appropriations_fen=tuple(amount_fen(APPROPRIATION_FEN, tight_money) for _ in SOURCES),
        programmes=tuple(programmes),
        enterprise_caps_fen=tuple(amount_fen(ENTERPRISE_CAP_FEN, tight_caps) for _ in FISCAL_YEARS),
        provider_caps_fen=tuple(amount_fen(PROVIDER_CAP_FEN, tight_caps) for _ in FISCAL_YEARS),
    )


def random_world(rng: random.Random) -> World:
    """The same kind of world as ``worlds()``, from a seeded generator."""
    tight_money, tight_caps = rng.randrange(2) == 0, rng.randrange(2) == 0

    def amount_fen(bounds: tuple[int, int], tight: bool) -> int:
        small_fen, large_fen = bounds
        return rng.randint(0, small_fen) if tight else rng.randint(small_fen, large_fen)

    programmes = []
    for programme_id, year in PROGRAMME_YEARS:
        sources = sources_of_year(year)
        chosen = rng.sample(sources, rng.randint(1, len(sources)))
        shares = tuple((s, rng.randint(1, BP_WHOLE // len(chosen))) for s in chosen)
        if year == 2026 and rng.randrange(2) == 0:
            shares = rng.choice(PRESET_SHARES_2026)
        programmes.append(
            ProgrammeSpec(
                programme_id=programme_id,
                fiscal_year=year,
                shares=shares,
                max_face_value_fen=max(1, amount_fen(MAX_FACE_VALUE_FEN, tight_money)),
                bonus_rate_bp=rng.choice((500, rng.randint(0, BP_WHOLE))),
                bonus_source_id=rng.choice(sources),
            )
        )
    return World(
        appropriations_fen=tuple(amount_fen(APPROPRIATION_FEN, tight_money) for _ in SOURCES),
        programmes=tuple(programmes),
        enterprise_caps_fen=tuple(amount_fen(ENTERPRISE_CAP_FEN, tight_caps) for _ in FISCAL_YEARS),
        provider_caps_fen=tuple(amount_fen(PROVIDER_CAP_FEN, tight_caps) for _ in FISCAL_YEARS),
    )


# ---- the model: what the ledger should decide, in plain integers -----------------------------


def split_by_weights(total_fen: int, weights: Sequence[int]) -> list[int]:
    """DESIGN.md §2 largest remainder, written here from the text rather than from ledger.money:
    floors first, then one fen each to the largest remainders, ties to the first listed."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0 for _ in weights]
    quotients = [divmod(total_fen * w, weight_sum) for w in weights]
    parts = [q for q, _ in quotients]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-quotients[i][1], i))
    for i in by_remainder[: total_fen - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass
class SourceModel:
    appropriation_fen: int
    reserved_fen: int = 0
    released_fen: int = 0
    post_reserved_fen: int = 0  # the post-subsidy vouchers can earn from it
    post_released_fen: int = 0
    recovered_fen: int = 0

    @property
    def committed_fen(self) -> int:
        return (
            self.reserved_fen - self.released_fen + self.post_reserved_fen - self.post_released_fen
        )

    @property
    def available_fen(self) -> int:
        return self.appropriation_fen - self.committed_fen + self.recovered_fen


@dataclass
class VoucherModel:
    programme: ProgrammeSpec
    holder_id: str
    face_value_fen: int
    valid_until: dt.date
    reservations: tuple[tuple[str, int], ...]
    remaining: dict[str, int]
    released: dict[str, int]
    issued_on: dt.date
    post_reserved_fen: int  # on programme.bonus_source_id
    post_remaining_fen: int
    status: str = "active"

    def observed_status(self, today: dt.date) -> str:
        """An active voucher past its date is seen as expired before the sweep records it."""
        return "expired" if self.status == "active" and today > self.valid_until else self.status


@dataclass
class RedemptionModel:
    voucher_id: UUID
    provider_id: str
    holder_id: str
    programme_id: str
    fiscal_year: int
    contract_no: str
    invoice_no: str
    contract_amount_fen: int
    subsidy_fen: int
    enterprise_pays_fen: int
    splits: tuple[tuple[str, int], ...]
    honoured_contract_fen: int
    post_subsidy_source_id: str
    post_subsidy_fen: int
    clawed_back: bool = False


@dataclass
class Model:
    sources: dict[str, SourceModel]
    vouchers: dict[UUID, VoucherModel] = field(default_factory=dict)  # in order of issue
    redemptions: dict[UUID, RedemptionModel] = field(default_factory=dict)
    received_fen: Counter[tuple[str, int]] = field(default_factory=Counter)
    bonus_fen: Counter[tuple[str, int]] = field(default_factory=Counter)
    contracts: set[tuple[str, str]] = field(default_factory=set)
    invoices: set[str] = field(default_factory=set)
    frozen: set[str] = field(default_factory=set)


def pick(ids: Sequence[UUID], index: int) -> UUID:
    """The ``index``-th newest of ``ids`` (modulo), or an id nothing has when ``index`` is negative.
    Newest first: hypothesis draws small indexes most, and new vouchers are more often active."""
    if index < 0 or not ids:
        return uuid.uuid4()
    return ids[-1 - index % len(ids)]


# ---- the harness: run one command, check it against the model ---------------------------------


class Harness:
    """Runs commands on ``self.app`` (which may change between ledgers on one store), checks each
    outcome against the model, and checks the invariants on what the ledger reads back."""

    def __init__(self, app: VoucherLedger, world: World) -> None:
        self.today = TODAY  # the calendar the ledgers read: time passes in the workload
        self.app = app
        self.world = world
        self.model = Model(
            sources={
                s: SourceModel(a)
                for (s, _, _), a in zip(SOURCES, world.appropriations_fen, strict=True)
            }
        )
        self.outcomes: Counter[str] = Counter()
        # With one ledger on the store, its cache must hold the newest version of everything;
        # with several, a cache may lag (a conflict at save time catches that).
        self.only_writer = True
        self.numbers = 0  # for fresh contract and invoice numbers

    @property
    def app(self) -> VoucherLedger:
        return self._app

    @app.setter
    def app(self, app: VoucherLedger) -> None:
        """Every ledger the harness drives reads its calendar."""
        app.today = lambda: self.today
        self._app = app

    def open_world(self) -> None:
        for (source_id, year, level), appropriation_fen in zip(
            SOURCES, self.world.appropriations_fen, strict=True
        ):
            self.app.open_funding_source(
                source_id=source_id,
                name=source_id,
                level=level,
                fiscal_year=year,
                appropriation_fen=appropriation_fen,
                document_ref=f"doc-{source_id}",
                actor=OFFICER,
            )
        for p in self.world.programmes:
            self.app.create_programme(
                programme_id=p.programme_id,
                name=p.programme_id,
                fiscal_year=p.fiscal_year,
                shares=[{"source_id": s, "share_bp": bp} for s, bp in p.shares],
                max_face_value_fen=p.max_face_value_fen,
                post_subsidy_rate_bp=p.bonus_rate_bp,
                post_subsidy_source_id=p.bonus_source_id,
                post_subsidy_annual_cap_fen=self.world.provider_cap_fen(p.fiscal_year),
                enterprise_annual_cap_fen=self.world.enterprise_cap_fen(p.fiscal_year),
                actor=OFFICER,
            )
        for uscc in ENTERPRISES + PROVIDERS:
            kind = "enterprise" if uscc in ENTERPRISES else "provider"
            self.app.register_institution(
                uscc=uscc, name=f"{kind} {uscc[-4:]}", kind=kind, actor=OFFICER
            )

    def attempt(self, refusals: set[type[LedgerError]], command: Callable[[], Any]) -> Any:
        """Run ``command``: refused with one of ``refusals`` storing nothing, or, when the model
        expects no refusal, accepted with its last event at the head of the log."""
        before = log_length(self.app)
        try:
            value, position = command()
        except LedgerError as exc:
            assert refusals, f"refused although the model expected success: {exc!r}"
            assert isinstance(exc, tuple(refusals)), f"{exc!r}, expected one of {refusals}"
            # Nothing stored but, for some refusals, the attempt, as evidence. (On PostgreSQL a
            # refused insert leaves a gap in the positions, so count the events, not positions.)
            added = self.app.recorder.select_notifications(before + 1, 10)
            kept = ["RefusedRedemption"] if isinstance(exc, RECORDED_REFUSALS) else []
            assert [n.topic.split(":")[1].split(".")[0] for n in added] == kept, repr(exc)
            self.outcomes[exc.slug] += 1
            return None
        assert not refusals, f"accepted although the model expected one of {refusals}"
        assert position is not None and position == log_length(self.app) > before
        return value

    # ---- commands -------------------------------------------------------------------------
    def pick_voucher(self, index: int) -> UUID:
        """An even ``index`` picks among the active vouchers (if any), an odd one among all."""
        active = [i for i, v in self.model.vouchers.items() if v.status == "active"]
        return pick(active if index % 2 == 0 and active else list(self.model.vouchers), index // 2)

    def pick_redemption(self, index: int) -> UUID:
        """An even ``index`` picks among the redemptions not clawed back (if any), an odd one
        among all."""
        standing = [i for i, r in self.model.redemptions.items() if not r.clawed_back]
        return pick(
            standing if index % 2 == 0 and standing else list(self.model.redemptions), index // 2
        )

    def issue(
        self, programme: int, holder_id: str, face_seed_fen: int, over_max: bool, days: int
    ) -> None:
        """Issue a voucher worth ``face_seed_fen`` folded into the programme's maximum, or, with
        ``over_max``, that much above it."""
        p = self.world.programmes[programme % len(self.world.programmes)]
        if over_max:
            face_value_fen = p.max_face_value_fen + face_seed_fen
        else:
            face_value_fen = (face_seed_fen - 1) % p.max_face_value_fen + 1
        valid_until = self.today + dt.timedelta(days=days)
        amounts = split_by_weights(face_value_fen, [bp for _, bp in p.shares])
        reservations = tuple((s, a) for (s, _), a in zip(p.shares, amounts, strict=True))
        # The most post-subsidy the voucher can earn: that of the most contract it can honour.
        post_fen = face_value_fen * BP_WHOLE // p.shares_bp_total * p.bonus_rate_bp // BP_WHOLE
        needs = Counter(dict(reservations))
        needs[p.bonus_source_id] += post_fen
        refusals: set[type[LedgerError]] = set()
        if face_value_fen > p.max_face_value_fen:  # a provider may hold one too
            refusals.add(ValidationError)
        if valid_until < self.today:
            refusals.add(ValidationError)
        if any(a > self.model.sources[s].available_fen for s, a in needs.items()):
            refusals.add(InsufficientFunds)
        view: VoucherView | None = self.attempt(
            refusals,
            lambda: self.app.issue_voucher(
                programme_id=p.programme_id,
                holder_id=holder_id,
                face_value_fen=face_value_fen,
                valid_until=valid_until.isoformat(),
                actor=OFFICER,
            ),
        )
        if view is None:
            return
        assert view.reservations == reservations
        assert (view.program_id, view.holder_id, view.fiscal_year) == (
            p.programme_id,
            holder_id,
            p.fiscal_year,
        )
        assert (view.face_value_fen, view.remaining_fen, view.status) == (
            face_value_fen,
            face_value_fen,
            "active",
        )
        assert view.valid_until == valid_until.isoformat()
        assert (view.post_subsidy_source_id, view.post_subsidy_reserved_fen) == (
            p.bonus_source_id,
            post_fen,
        )
        for s, a in reservations:
            self.model.sources[s].reserved_fen += a
        self.model.sources[p.bonus_source_id].post_reserved_fen += post_fen
        self.model.vouchers[view.id] = VoucherModel(
            p,
            holder_id,
            face_value_fen,
            valid_until,
            reservations,
            dict(reservations),
            {s: 0 for s, _ in reservations},
            self.today,
            post_fen,
            post_fen,
        )
        self.outcomes["issued"] += 1

    def redeem(
        self,
        voucher: int,
        provider_id: str,
        contract: int,
        invoice: int,
        contract_amount_fen: int,
        days: int,
    ) -> None:
        voucher_id = self.pick_voucher(voucher)
        v = self.model.vouchers.get(voucher_id)
        service_date = self.today + dt.timedelta(days=days)
        self.numbers += 1
        contract_no = f"C-{contract}" if contract >= 0 else f"C-new-{self.numbers}"
        invoice_no = f"INV-{invoice}" if invoice >= 0 else f"INV-new-{self.numbers}"
        refusals = self.redeem_refusals(v, provider_id, contract_no, invoice_no, service_date)
        view: RedemptionView | None = self.attempt(
            refusals,
            lambda: self.app.redeem(
                voucher_id=voucher_id,
                provider_id=provider_id,
                contract_no=contract_no,
                invoice_no=invoice_no,
                service_category="testing",
                contract_amount_fen=contract_amount_fen,
                service_date=service_date.isoformat(),
                actor=PROVIDER_ACTOR,
            ),
        )
        if view is None or v is None:
            return
        expected = self.expected_redemption(
            v, voucher_id, provider_id, contract_no, invoice_no, contract_amount_fen
        )
        self.check_redemption_view(view, expected)
        self.model.redemptions[view.id] = expected
        for s, a in expected.splits:
            v.remaining[s] -= a
        v.post_remaining_fen -= expected.post_subsidy_fen
        if sum(v.remaining.values()) == 0:  # used up: what it held for post-subsidy goes back
            v.status = "used_up"
            self.model.sources[
                v.programme.bonus_source_id
            ].post_released_fen += v.post_remaining_fen
            v.post_remaining_fen = 0
        self.model.received_fen[(v.holder_id, v.programme.fiscal_year)] += expected.subsidy_fen
        self.model.bonus_fen[(provider_id, v.programme.fiscal_year)] += expected.post_subsidy_fen
        self.model.contracts.add((provider_id, contract_no))
        self.model.invoices.add(invoice_no)
        self.outcomes["redeemed"] += 1

    def redeem_refusals(
        self,
        v: VoucherModel | None,
        provider_id: str,
        contract_no: str,
        invoice_no: str,
        service_date: dt.date,
    ) -> set[type[LedgerError]]:
        if v is None:
            return {NotFound}
        refusals: set[type[LedgerError]] = set()
        if provider_id not in PROVIDERS:
            refusals.add(ValidationError)
        if provider_id == v.holder_id:
            refusals.add(SelfDealing)
        if provider_id in self.model.frozen:
            refusals.add(PayeeFrozen)
        if v.status != "active":
            refusals.add(VoucherNotActive)
        if service_date > v.valid_until:
            refusals.add(VoucherExpired)
        if service_date > self.today or service_date < v.issued_on:
            refusals.add(ValidationError)
        if (provider_id, contract_no) in self.model.contracts or invoice_no in self.model.invoices:
            refusals.add(DuplicateClaim)
        if self.enterprise_cap_left_fen(v) <= 0:
            refusals.add(EnterpriseCapReached)
        return refusals

    def enterprise_cap_left_fen(self, v: VoucherModel) -> int:
        year = v.programme.fiscal_year
        return self.world.enterprise_cap_fen(year) - self.model.received_fen[(v.holder_id, year)]

    def expected_redemption(
        self,
        v: VoucherModel,
        voucher_id: UUID,
        provider_id: str,
        contract_no: str,
        invoice_no: str,
        contract_amount_fen: int,
    ) -> RedemptionModel:
        """DESIGN.md §3: subsidy = min(contract × Σshares, voucher remaining, cap left), split by
        the voucher's remaining reservation; post-subsidy = the honoured contract × rate, cut to
        the provider cap and to what the voucher still holds for post-subsidy."""
        p, year = v.programme, v.programme.fiscal_year
        sources = [s for s, _ in v.reservations]
        remaining_fen = [v.remaining[s] for s in sources]
        subsidy_fen = min(
            contract_amount_fen * p.shares_bp_total // BP_WHOLE,
            sum(remaining_fen),
            self.enterprise_cap_left_fen(v),
        )
        splits = tuple(zip(sources, split_by_weights(subsidy_fen, remaining_fen), strict=True))
        bonus_cap_left_fen = (
            self.world.provider_cap_fen(year) - self.model.bonus_fen[(provider_id, year)]
        )
        full_share_fen = contract_amount_fen * p.shares_bp_total // BP_WHOLE
        honoured_fen = (
            contract_amount_fen
            if subsidy_fen == full_share_fen
            else min(contract_amount_fen, subsidy_fen * BP_WHOLE // p.shares_bp_total)
        )
        bonus_fen = max(
            0,
            min(
                honoured_fen * p.bonus_rate_bp // BP_WHOLE, bonus_cap_left_fen, v.post_remaining_fen
            ),
        )
        return RedemptionModel(
            voucher_id,
            provider_id,
            v.holder_id,
            p.programme_id,
            year,
            contract_no,
            invoice_no,
            contract_amount_fen,
            subsidy_fen,
            contract_amount_fen - subsidy_fen,
            splits,
            honoured_fen,
            p.bonus_source_id,
            bonus_fen,
        )

    def check_redemption_view(self, view: RedemptionView, r: RedemptionModel) -> None:
        """``view`` shows ``r`` and the voucher's remaining now."""
        v = self.model.vouchers[r.voucher_id]
        left_fen = sum(v.remaining.values()) - (
            0 if view.id in self.model.redemptions else r.subsidy_fen
        )
        assert (view.voucher_id, view.provider_id, view.holder_id, view.programme_id) == (
            r.voucher_id,
            r.provider_id,
            r.holder_id,
            r.programme_id,
        )
        assert (view.contract_no, view.invoice_no) == (r.contract_no, r.invoice_no)
        assert view.contract_amount_fen == r.contract_amount_fen
        assert (view.subsidy_fen, view.enterprise_pays_fen) == (
            r.subsidy_fen,
            r.enterprise_pays_fen,
        )
        assert view.splits == r.splits
        assert (view.honoured_contract_fen, view.post_subsidy_fen) == (
            r.honoured_contract_fen,
            r.post_subsidy_fen,
        )
        assert view.post_subsidy_source_id == r.post_subsidy_source_id
        assert view.clawed_back == r.clawed_back
        assert view.voucher_remaining_fen == left_fen

    def revoke(self, voucher: int) -> None:
        voucher_id = self.pick_voucher(voucher)
        v = self.model.vouchers.get(voucher_id)
        refusals: set[type[LedgerError]] = set()
        if v is None:
            refusals.add(NotFound)
        elif v.status != "active":
            refusals.add(VoucherNotActive)
        view: VoucherView | None = self.attempt(
            refusals,
            lambda: self.app.revoke_voucher(
                voucher_id, reason="withdrawn by the programme", actor=OFFICER
            ),
        )
        if view is None or v is None:
            return
        self.release(v, "revoked")
        assert view.status == "revoked" and view.remaining_fen == 0
        assert view.released_by_source == tuple(v.released.items())
        self.outcomes["revoked"] += 1

    def release(self, v: VoucherModel, status: str) -> None:
        for s, amount_fen in v.remaining.items():
            v.released[s] += amount_fen
            self.model.sources[s].released_fen += amount_fen
            v.remaining[s] = 0
        self.model.sources[v.programme.bonus_source_id].post_released_fen += v.post_remaining_fen
        v.post_remaining_fen = 0
        v.status = status

    def pass_days(self, days: int) -> None:
        """Time passes: vouchers past their date stay active until a sweep records it."""
        self.today += dt.timedelta(days=days)

    def expire(self, step_days: int) -> None:
        """``step_days`` pass, then the sweep records the expiry of what is past its date."""
        self.pass_days(step_days)
        as_of = self.today
        due = [
            i
            for i, v in self.model.vouchers.items()
            if v.status == "active" and v.valid_until < as_of
        ]
        before = log_length(self.app)
        expired = self.app.expire_vouchers(as_of=as_of.isoformat(), actor=OFFICER)
        assert expired == due
        if not due:
            assert log_length(self.app) == before, "an expiry sweep that expired nothing stored"
        for voucher_id in due:
            self.release(self.model.vouchers[voucher_id], "expired")
        self.outcomes["expired"] += len(due)

    def claw_back(self, redemption: int, reason_code: str) -> None:
        redemption_id = self.pick_redemption(redemption)
        r = self.model.redemptions.get(redemption_id)
        refusals: set[type[LedgerError]] = set()
        if r is None:
            refusals.add(NotFound)
        elif r.clawed_back:
            refusals.add(InvalidState)
        view: RedemptionView | None = self.attempt(
            refusals,
            lambda: self.app.claw_back(redemption_id, reason_code=reason_code, actor=OFFICER),
        )
        if view is None or r is None:
            return
        r.clawed_back = True
        for s, a in r.splits:
            self.model.sources[s].recovered_fen += a
        self.model.sources[r.post_subsidy_source_id].recovered_fen += r.post_subsidy_fen
        self.check_redemption_view(view, r)
        self.outcomes["clawed-back"] += 1

    def inspect(self, first_provider: bool, repeat: bool) -> None:
        """Freeze or unfreeze the second provider, or now and then the first one; the first one
        is unfrozen at the next inspection, so that it stays mostly free to redeem."""
        first = first_provider or PROVIDER in self.model.frozen
        self.set_frozen(PROVIDER if first else PROVIDER_2, repeat)

    def set_frozen(self, provider_id: str, repeat: bool) -> None:
        """Freeze a provider that is not frozen or unfreeze one that is; with ``repeat``, ask for
        the state it already has (refused)."""
        frozen = (provider_id in self.model.frozen) is repeat
        refusals: set[type[LedgerError]] = {InvalidState} if repeat else set()
        change = self.app.freeze_institution if frozen else self.app.unfreeze_institution
        view = self.attempt(
            refusals, lambda: change(provider_id, reason="inspection", actor=OFFICER)
        )
        if view is None:
            return
        assert view.frozen is frozen
        (self.model.frozen.add if frozen else self.model.frozen.discard)(provider_id)
        self.outcomes["frozen" if frozen else "unfrozen"] += 1

    # ---- checks ---------------------------------------------------------------------------
    def check(self) -> None:
        state = read_ledger(self.app)
        check_invariants(state, self.world)
        self.check_against_model(state)
        check_cache_replays(self.app, latest=self.only_writer)

    def check_against_model(self, state: LedgerState) -> None:
        m = self.model
        assert list(state.vouchers) == list(m.vouchers), "the log holds other vouchers"
        assert set(state.redemptions) == set(m.redemptions), "the log holds other redemptions"
        for s, source in state.sources.items():
            expected = m.sources[s]
            assert (
                source.appropriation_fen,
                source.reserved_fen,
                source.released_fen,
                source.post_subsidy_reserved_fen,
                source.post_subsidy_released_fen,
                source.recovered_fen,
            ) == (
                expected.appropriation_fen,
                expected.reserved_fen,
                expected.released_fen,
                expected.post_reserved_fen,
                expected.post_released_fen,
                expected.recovered_fen,
            ), s
            assert source.available_fen == expected.available_fen
        for voucher_id, view in state.vouchers.items():
            v = m.vouchers[voucher_id]
            assert view.status == v.observed_status(self.today)
            assert view.remaining_by_source == tuple(v.remaining.items())
            assert view.post_subsidy_remaining_fen == v.post_remaining_fen
            assert view.issued_on == v.issued_on.isoformat()
            assert view.released_by_source == tuple(v.released.items())
        for redemption_id, view in state.redemptions.items():
            self.check_redemption_view(view, m.redemptions[redemption_id])
        for key, e_year in state.enterprise_years.items():
            assert e_year.subsidy_received_fen == m.received_fen[key]
        for key, p_year in state.provider_years.items():
            assert p_year.post_subsidy_accrued_fen == m.bonus_fen[key]
        for uscc in PROVIDERS:
            assert self.app.institution(uscc).frozen is (uscc in m.frozen)


# ---- what the ledger reads back, and the invariants on it alone -------------------------------


@dataclass
class LedgerState:
    sources: dict[str, FundingSourceView]
    vouchers: dict[UUID, VoucherView]
    redemptions: dict[UUID, RedemptionView]
    enterprise_years: dict[tuple[str, int], EnterpriseYear]
    provider_years: dict[tuple[str, int], ProviderYear]

    def comparable(self) -> tuple[Any, ...]:
        """What two ledgers on one store must read alike (cap counters as their whole state)."""
        return (
            self.sources,
            self.vouchers,
            self.redemptions,
            {k: state_of(a) for k, a in self.enterprise_years.items()},
            {k: state_of(a) for k, a in self.provider_years.items()},
        )


def aggregate_ids(app: VoucherLedger) -> list[UUID]:
    """Every aggregate the log names, in order of first appearance."""
    seen: dict[UUID, None] = {}
    start = 1
    while True:
        page = app.recorder.select_notifications(start, 1000)
        for n in page:
            seen.setdefault(n.originator_id, None)  # type: ignore[arg-type]
        if len(page) < 1000:
            return list(seen)
        start = page[-1].id + 1


def read_ledger(app: VoucherLedger) -> LedgerState:
    """Read everything through the ledger's queries; which vouchers and redemptions exist comes
    from the log, not from the test's own bookkeeping."""
    state = LedgerState({s: app.funding_source(s) for s, _, _ in SOURCES}, {}, {}, {}, {})
    for agg_id in aggregate_ids(app):
        agg = app.repository.get(agg_id)
        if isinstance(agg, Voucher):
            state.vouchers[agg_id] = app.voucher(agg_id)
        elif isinstance(agg, ContractClaim):
            state.redemptions[agg_id] = app.redemption(agg_id)
    for holder in ENTERPRISES + PROVIDERS:
        for year in FISCAL_YEARS:
            e_year = app.enterprise_year(holder, year)
            if e_year is not None:
                state.enterprise_years[(holder, year)] = e_year
            p_year = app.provider_year(holder, year)
            if p_year is not None:
                state.provider_years[(holder, year)] = p_year
    return state


def check_invariants(state: LedgerState, world: World) -> None:
    check_redemptions_add_up(state)
    check_nothing_negative_and_caps_held(state, world)
    check_sources_balance(state)
    check_cap_counters_match_redemptions(state)


def check_redemptions_add_up(state: LedgerState) -> None:
    """Invariant 1: splits add up to the subsidy; subsidy + enterprise pays = contract amount."""
    for r in state.redemptions.values():
        assert sum(a for _, a in r.splits) == r.subsidy_fen, r
        assert r.subsidy_fen + r.enterprise_pays_fen == r.contract_amount_fen, r
        assert r.subsidy_fen >= 0 and r.enterprise_pays_fen >= 0 and r.post_subsidy_fen >= 0
        assert all(a >= 0 for _, a in r.splits), r
        voucher = state.vouchers[r.voucher_id]
        assert [s for s, _ in r.splits] == [s for s, _ in voucher.reservations]
        assert r.voucher_remaining_fen == voucher.remaining_fen
        assert r.holder_id == voucher.holder_id


def check_nothing_negative_and_caps_held(state: LedgerState, world: World) -> None:
    """Invariant 2: no balance or remaining below zero; no cap exceeded."""
    for source in state.sources.values():
        assert source.available_fen >= 0 and source.committed_fen >= 0, source
    for v in state.vouchers.values():
        assert v.remaining_fen >= 0 and all(a >= 0 for _, a in v.remaining_by_source), v
        assert all(a >= 0 for _, a in v.released_by_source), v
        assert sum(a for _, a in v.reservations) == v.face_value_fen, v
        if v.status in ("used_up", "revoked"):  # "expired" may be seen before the sweep
            assert v.remaining_fen == 0 and v.post_subsidy_remaining_fen == 0, v
        if v.status == "active":
            assert v.remaining_fen > 0, v
        assert 0 <= v.post_subsidy_remaining_fen <= v.post_subsidy_reserved_fen, v
    for (holder, year), e_year in state.enterprise_years.items():
        cap_fen = world.enterprise_cap_fen(year)
        assert 0 <= e_year.subsidy_received_fen <= cap_fen, (holder, year)
        assert e_year.cap_remaining_fen(cap_fen) == cap_fen - e_year.subsidy_received_fen
        assert 0 <= e_year.clawed_back_fen <= e_year.subsidy_received_fen
    for (provider, year), p_year in state.provider_years.items():
        cap_fen = world.provider_cap_fen(year)
        assert 0 <= p_year.post_subsidy_accrued_fen <= cap_fen, (provider, year)
        assert p_year.post_subsidy_room_fen(cap_fen) == cap_fen - p_year.post_subsidy_accrued_fen
        assert 0 <= p_year.post_subsidy_clawed_back_fen <= p_year.post_subsidy_accrued_fen


def check_sources_balance(state: LedgerState) -> None:
    """Invariant 3: per source, reserved = outstanding + released + disbursed, the source's own
    counters agree with its vouchers, and (``check_post_subsidy_covered``) recovered = the
    clawed-back splits and post-subsidies."""
    for s, source in state.sources.items():
        reserved_fen = sum(a for v in state.vouchers.values() for t, a in v.reservations if t == s)
        outstanding_fen = sum(
            dict(v.remaining_by_source).get(s, 0) for v in state.vouchers.values()
        )
        released_fen = sum(dict(v.released_by_source).get(s, 0) for v in state.vouchers.values())
        disbursed_fen = sum(a for r in state.redemptions.values() for t, a in r.splits if t == s)
        assert reserved_fen == outstanding_fen + released_fen + disbursed_fen, s
        assert source.reserved_fen == reserved_fen, s
        assert source.released_fen == released_fen, s
        assert source.committed_fen == (
            source.reserved_fen
            - source.released_fen
            + source.post_subsidy_reserved_fen
            - source.post_subsidy_released_fen
        ), s
        assert source.available_fen == (
            source.appropriation_fen - source.committed_fen + source.recovered_fen
        ), s
    for v in state.vouchers.values():
        drawn = Counter[str]()
        for r in state.redemptions.values():
            if r.voucher_id == v.id:
                drawn.update(dict(r.splits))
        remaining, released = dict(v.remaining_by_source), dict(v.released_by_source)
        for s, reserved_fen in v.reservations:
            assert reserved_fen == remaining[s] + released[s] + drawn[s], (v, s)
    check_post_subsidy_covered(state)


def check_post_subsidy_covered(state: LedgerState) -> None:
    """Every liability is covered: per source, what vouchers hold for post-subsidy is what the
    source shows reserved; what they drew and gave back adds up; and nothing is owed beyond
    the appropriation and what came back: Σ subsidy + Σ post-subsidy ≤ appropriation +
    recovered, with available ≥ 0 (the issue's invariant, on the ledger's reads alone)."""
    drawn: Counter[UUID] = Counter()
    for r in state.redemptions.values():
        drawn[r.voucher_id] += r.post_subsidy_fen
    for s, source in state.sources.items():
        mine = [v for v in state.vouchers.values() if v.post_subsidy_source_id == s]
        reserved_fen = sum(v.post_subsidy_reserved_fen for v in mine)
        released_fen = sum(
            v.post_subsidy_reserved_fen - v.post_subsidy_remaining_fen - drawn[v.id] for v in mine
        )
        assert all(
            v.post_subsidy_reserved_fen - v.post_subsidy_remaining_fen >= drawn[v.id] for v in mine
        ), s
        assert (source.post_subsidy_reserved_fen, source.post_subsidy_released_fen) == (
            reserved_fen,
            released_fen,
        ), s
        owed_fen = sum(a for r in state.redemptions.values() for t, a in r.splits if t == s)
        owed_fen += sum(
            r.post_subsidy_fen for r in state.redemptions.values() if r.post_subsidy_source_id == s
        )
        recovered_fen = sum(
            a for r in state.redemptions.values() if r.clawed_back for t, a in r.splits if t == s
        ) + sum(
            r.post_subsidy_fen
            for r in state.redemptions.values()
            if r.clawed_back and r.post_subsidy_source_id == s
        )
        assert source.recovered_fen == recovered_fen, s
        assert owed_fen <= source.appropriation_fen + source.recovered_fen, (s, owed_fen)
        assert owed_fen <= source.committed_fen + source.recovered_fen, (s, owed_fen)
        assert source.available_fen >= 0, s


def check_cap_counters_match_redemptions(state: LedgerState) -> None:
    received: Counter[tuple[str, int]] = Counter()
    clawed: Counter[tuple[str, int]] = Counter()
    bonus: Counter[tuple[str, int]] = Counter()
    bonus_clawed: Counter[tuple[str, int]] = Counter()
    contract: Counter[tuple[str, int]] = Counter()
    for r in state.redemptions.values():
        year = state.vouchers[r.voucher_id].fiscal_year
        received[(r.holder_id, year)] += r.subsidy_fen
        clawed[(r.holder_id, year)] += r.subsidy_fen if r.clawed_back else 0
        bonus[(r.provider_id, year)] += r.post_subsidy_fen
        bonus_clawed[(r.provider_id, year)] += r.post_subsidy_fen if r.clawed_back else 0
        contract[(r.provider_id, year)] += r.contract_amount_fen
    assert set(state.enterprise_years) == set(received)
    assert set(state.provider_years) == set(bonus)
    for key, e_year in state.enterprise_years.items():
        assert (e_year.subsidy_received_fen, e_year.clawed_back_fen) == (received[key], clawed[key])
    for key, p_year in state.provider_years.items():
        assert (p_year.post_subsidy_accrued_fen, p_year.post_subsidy_clawed_back_fen) == (
            bonus[key],
            bonus_clawed[key],
        )
        assert p_year.redeemed_contract_fen == contract[key]


def state_of(agg: Aggregate) -> dict[str, Any]:
    return {k: v for k, v in vars(agg).items() if k != "_pending_events"}


def check_cache_replays(app: VoucherLedger, *, latest: bool) -> None:
    """Invariant 4: every aggregate in the writer's cache equals the one the log replays to at
    the same version, has no events left unsaved, and (with one writer) is the newest version."""
    for agg_id in aggregate_ids(app):
        cached = app.writer.cache.get(agg_id)
        if cached is None:
            continue
        assert not cached.pending_events, f"cached {type(cached).__name__} has unsaved events"
        replayed = app.repository.get(agg_id, version=cached.version)
        assert state_of(cached) == state_of(replayed), type(cached).__name__
        if latest:
            assert cached.version == app.repository.get(agg_id).version, type(cached).__name__


# ---- the state machine, on the in-memory store ------------------------------------------------

OUTCOMES: Counter[str] = Counter()


class SnapshottingLedger(VoucherLedger):
    """The ledger with snapshots every two events, so that loads start from snapshots."""

    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        FundingSource: 2,
        EnterpriseYear: 2,
        ProviderYear: 2,
    }


class LedgerMachine(RuleBasedStateMachine):
    ledger_class: ClassVar[type[VoucherLedger]] = VoucherLedger

    def __init__(self) -> None:
        super().__init__()
        self.harness: Harness | None = None

    @initialize(world=worlds())
    def open_the_world(self, world: World) -> None:
        app = self.ledger_class(Settings(database_url="memory://"), clock=lambda: TODAY)
        self.harness = Harness(app, world)
        self.harness.open_world()

    @property
    def h(self) -> Harness:
        assert self.harness is not None
        return self.harness

    def teardown(self) -> None:
        if self.harness is not None:
            app = self.harness.app
            OUTCOMES.update(self.harness.outcomes)
            if app.snapshots is not None:
                for source_id, _, _ in SOURCES:
                    taken = app.snapshots.get(FundingSource.create_id(source_id))
                    OUTCOMES["snapshots"] += len(list(taken))
            app.close()

    @rule(
        programme=st.integers(0, 2),
        holder_id=HOLDERS,
        face_value_fen=FACE_VALUES,
        over_max=RARELY,
        days=VALID_DAYS,
    )
    def issue(
        self, programme: int, holder_id: str, face_value_fen: int, over_max: bool, days: int
    ) -> None:
        self.h.issue(programme, holder_id, face_value_fen, over_max, days)

    @precondition(lambda self: self.h.model.vouchers)
    @rule(
        voucher=PICKS,
        provider_id=PAYEES,
        contract=CONTRACT_NUMBERS,
        invoice=INVOICE_NUMBERS,
        contract_amount_fen=CONTRACT_AMOUNTS,
        days=SERVICE_DAYS,
    )
    def redeem(
        self,
        voucher: int,
        provider_id: str,
        contract: int,
        invoice: int,
        contract_amount_fen: int,
        days: int,
    ) -> None:
        self.h.redeem(voucher, provider_id, contract, invoice, contract_amount_fen, days)

    @precondition(lambda self: self.h.model.vouchers)
    @rule(
        voucher=PICKS,
        provider_id=st.sampled_from(PROVIDERS),
        contract=CONTRACT_NUMBERS,
        contract_amount_fen=st.integers(1, 400),
    )
    def redeem_a_small_contract(
        self, voucher: int, provider_id: str, contract: int, contract_amount_fen: int
    ) -> None:
        """Small contracts leave the voucher active, so vouchers take several redemptions."""
        self.h.redeem(voucher, provider_id, contract, contract, contract_amount_fen, 0)

    @precondition(lambda self: self.h.model.vouchers)
    @rule(voucher=PICKS)
    def revoke(self, voucher: int) -> None:
        self.h.revoke(voucher)

    @rule(step_days=st.integers(0, 20))
    def expire(self, step_days: int) -> None:
        self.h.expire(step_days)

    @rule(days=st.integers(1, 30))
    def days_pass(self, days: int) -> None:
        self.h.pass_days(days)

    @precondition(lambda self: self.h.model.redemptions)
    @rule(redemption=PICKS, reason_code=st.sampled_from(REASON_CODES))
    def claw_back(self, redemption: int, reason_code: str) -> None:
        self.h.claw_back(redemption, reason_code)

    @precondition(lambda self: self.h.model.vouchers)
    @rule(first_provider=RARELY, repeat=RARELY)
    def freeze_or_unfreeze(self, first_provider: bool, repeat: bool) -> None:
        self.h.inspect(first_provider, repeat)

    @invariant()
    def the_money_invariants_hold(self) -> None:
        if self.harness is not None:
            self.harness.check()


class SnapshottingLedgerMachine(LedgerMachine):
    ledger_class = SnapshottingLedger


MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Every outcome the seeded workloads below must reach. (The machine's runs vary too much from run
# to run to demand each of them there: swarm testing may leave out a rule for many examples.)
EVERY_OUTCOME = (
    "issued",
    "redeemed",
    "revoked",
    "expired",
    "clawed-back",
    "frozen",
    "unfrozen",
    "insufficient-funds",
    "enterprise-cap-reached",
    "voucher-not-active",
    "voucher-expired",
    "duplicate-claim",
    "payee-frozen",
    "validation-error",
    "invalid-state",
    "not-found",
)


def run_machine(
    machine: type[LedgerMachine], max_examples: int, must_happen: Sequence[str]
) -> None:
    OUTCOMES.clear()
    run_state_machine_as_test(
        machine, settings=settings(MACHINE_SETTINGS, max_examples=max_examples)
    )
    missing = [o for o in must_happen if not OUTCOMES[o]]
    assert not missing, f"the random workloads never reached {missing}: {OUTCOMES}"


def test_random_workloads_keep_every_money_invariant_and_replay_to_the_cached_state() -> None:
    run_machine(LedgerMachine, max_examples=70, must_happen=("issued",))


def test_random_workloads_keep_the_invariants_when_loads_start_from_snapshots() -> None:
    run_machine(SnapshottingLedgerMachine, max_examples=30, must_happen=("issued", "snapshots"))


# ---- seeded workloads: long ones in memory; on SQLite and PostgreSQL, read by a second ledger --


def random_step(h: Harness, rng: random.Random) -> None:
    """One command with arguments drawn like the state machine's rules."""
    rare = rng.randrange(32) == 0
    kind = rng.choice(
        (
            "issue",
            "issue",
            "redeem",
            "redeem",
            "redeem",
            "revoke",
            "expire",
            "claw_back",
            "freeze",
            "time",
        )
    )
    # As PICKS: mostly even (among the active), now and then odd (among all), or -1 (unknown).
    index = -1 if rng.randrange(32) == 0 else rng.randint(0, 63) * 2 + (rng.randrange(4) == 0)
    if kind == "issue":
        h.issue(
            rng.randrange(3),
            PROVIDER if rare else rng.choice((ENTERPRISE, ENTERPRISE, ENTERPRISE_2)),
            rng.randint(1, 15_000),
            rng.randrange(32) == 0,
            -1 if rng.randrange(32) == 0 else rng.randint(0, EXPIRY_HORIZON_DAYS),
        )
    elif kind == "redeem":
        amount_fen = rng.randint(1, rng.choice((40, 400, 25_000)))
        h.redeem(
            index,
            ENTERPRISE if rare else rng.choice((PROVIDER, PROVIDER, PROVIDER, PROVIDER_2)),
            rng.randint(0, CONTRACT_POOL) if rng.randrange(3) == 0 else -1,
            rng.randint(0, INVOICE_POOL) if rng.randrange(3) == 0 else -1,
            amount_fen,
            rng.choice(SERVICE_DAYS_CHOICES),
        )
    elif kind == "revoke":
        h.revoke(index)
    elif kind == "expire":
        h.expire(rng.randint(0, 4))
    elif kind == "claw_back":
        h.claw_back(index, rng.choice(REASON_CODES))
    elif kind == "time":
        h.pass_days(rng.randint(1, 20))
    else:
        h.inspect(rare, rng.randrange(32) == 0)


def test_seeded_long_workloads_reach_every_refusal_and_keep_the_invariants() -> None:
    """Deterministic, unlike the machine: fixed seeds, so the outcomes reached are always the
    same; one ledger per seed, each on a fresh in-memory store."""
    outcomes: Counter[str] = Counter()
    for seed in range(6):
        rng = random.Random(seed)
        app = VoucherLedger(Settings(database_url="memory://"), clock=lambda: TODAY)
        try:
            h = Harness(app, random_world(rng))
            h.open_world()
            for step in range(1, 121):
                random_step(h, rng)
                if step % 10 == 0:
                    h.check()
        finally:
            app.close()
        outcomes.update(h.outcomes)
    missing = [o for o in EVERY_OUTCOME if not outcomes[o]]
    assert not missing, f"the seeded workloads never reached {missing}: {outcomes}"


@pytest.mark.parametrize("seed", [11, 17, 22])
def test_seeded_random_workloads_on_a_real_store_read_back_the_same_from_a_second_ledger(
    make_app: AppFactory, seed: int
) -> None:
    rng = random.Random(seed)
    world = random_world(rng)
    first = make_app()
    h = Harness(first, world)
    h.open_world()
    for step in range(1, 41):
        random_step(h, rng)
        if step % 4 == 0:
            h.check()

    second = make_app()
    second.today = first.today  # the harness's calendar

    assert read_ledger(second).comparable() == read_ledger(first).comparable()
    for agg_id in aggregate_ids(first):
        assert state_of(second.repository.get(agg_id)) == state_of(first.repository.get(agg_id))
    h.app = second
    h.check()

    # Then both ledgers write, in turns, like two processes; caches may lag but never lie.
    h.only_writer = False
    for turn in range(30):
        if turn % 3 == 0:
            h.app = first if h.app is second else second
        random_step(h, rng)
        h.check()
    for app in (first, second):
        check_cache_replays(app, latest=False)
    assert read_ledger(second).comparable() == read_ledger(first).comparable()
    assert h.outcomes["redeemed"] > 0, h.outcomes
    # The seeds are chosen so that stale caches did conflict and fell back to careful mode.
    assert first.writer.stats.fallbacks + second.writer.stats.fallbacks > 0


def test_a_clawback_reports_the_voucher_remaining_that_another_ledger_left(
    make_app: AppFactory,
) -> None:
    """A clawback only reads the voucher (for its answer), so no conflict at save time replaces
    a copy that another process made stale in this ledger's cache."""
    first = make_app()
    open_worked_example(first)
    voucher_id = issue(first)
    redemption, _ = redeem(first, voucher_id, amount_fen=1_000_000)  # first caches the voucher
    second = make_app()
    second.revoke_voucher(voucher_id, reason="withdrawn", actor=OFFICER)  # remaining 0 now

    clawed, _ = first.claw_back(redemption.id, reason_code="improper-invoice", actor=OFFICER)

    assert first.redemption(redemption.id).voucher_remaining_fen == 0
    assert clawed.voucher_remaining_fen == 0
