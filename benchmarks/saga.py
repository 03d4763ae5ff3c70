"""A small simulation of cross-region redemption (通用通兑) between ledgers partitioned by
jurisdiction (docs/SCALING.md): a voucher and its enterprise's cap live in the voucher's region,
a provider's cap and its contracts in the provider's region. A claim on a voucher of the
provider's own region is one local transaction, as today; a claim across regions is a saga:

1. ``reserve`` in the voucher's region: the amount leaves the voucher's remaining face value
   and the enterprise's cap, held under the reservation's id;
2. ``confirm`` in the provider's region: one claim per contract, the provider's cap; the outcome
   (accepted or refused) is stored under the reservation's id, so a repeat answers the same;
3. ``settle`` in the voucher's region: accepted holds become spent, refused ones are released.

A coordinator may stall or die after any step and messages may arrive twice. A sweeper in the
voucher's region takes reservations held longer than a timeout and asks the provider's region
to ``decide``: a reservation it never saw is stored there as aborted (presumed abort, with a
tombstone, so a late ``confirm`` of it is refused), then the voucher's region settles it.
Every step is one local, idempotent transaction: nothing spans two partitions.

    python -m benchmarks.saga [--claims 100000] [--regions 4] [--cross 0.2] [--stall 0.05]

Prints what happened and checks, once everything has settled, that no voucher, enterprise cap
or provider cap was overspent, that each contract has one claim, and that every fen spent in a
voucher's region is a claim accepted in the provider's region and the other way round.
``--no-tombstone`` runs the protocol without the tombstone: the checks then find the claims a
late confirm created after their money was released."""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field

RESERVED, SPENT, RELEASED = "reserved", "spent", "released"
ACCEPTED, REFUSED, ABORTED = "accepted", "refused", "aborted"


@dataclass
class Hold:
    voucher: str
    enterprise: str
    amount_fen: int
    there: int  # the provider's region, which the sweeper asks
    since: int  # the tick it was reserved
    state: str = RESERVED


@dataclass
class Partition:
    """One region's ledger: what it owns, and the sagas' records in it."""

    name: str
    remaining_fen: dict[str, int] = field(default_factory=dict)  # voucher -> fen left
    enterprise_left_fen: dict[str, int] = field(default_factory=dict)
    provider_left_fen: dict[str, int] = field(default_factory=dict)
    contracts: dict[tuple[str, str], str] = field(default_factory=dict)  # -> claim id
    claims_fen: dict[str, int] = field(default_factory=dict)  # accepted claims here: id -> fen
    spent_fen: dict[str, int] = field(default_factory=dict)  # voucher -> fen spent
    holds: dict[str, Hold] = field(default_factory=dict)  # reservations of its vouchers
    open: dict[str, Hold] = field(default_factory=dict)  # those not settled yet
    outcomes: dict[str, str] = field(default_factory=dict)  # reservation -> decided here
    transactions: int = 0

    # ---- a claim within the region: today's one transaction ----------------------------
    def redeem(self, claim: Claim) -> str:
        self.transactions += 1
        if not self._fits(claim) or not self._claimable(claim):
            return REFUSED
        self._take(claim)
        self.spent_fen[claim.voucher] = self.spent_fen.get(claim.voucher, 0) + claim.amount_fen
        self._accept(claim)
        return ACCEPTED

    # ---- the saga's steps -----------------------------------------------------------------
    def reserve(self, claim: Claim, tick: int) -> str:
        self.transactions += 1
        if claim.id in self.holds:  # sent twice
            return ACCEPTED if self.holds[claim.id].state != RELEASED else REFUSED
        if not self._fits(claim):
            return REFUSED
        self._take(claim)
        hold = Hold(claim.voucher, claim.enterprise, claim.amount_fen, claim.there, tick)
        self.holds[claim.id] = self.open[claim.id] = hold
        return ACCEPTED

    def confirm(self, claim: Claim) -> str:
        self.transactions += 1
        if claim.id in self.outcomes:  # sent twice, or decided by the sweeper first
            return self.outcomes[claim.id]
        outcome = ACCEPTED if self._claimable(claim) else REFUSED
        if outcome == ACCEPTED:
            self._accept(claim)
        self.outcomes[claim.id] = outcome
        return outcome

    def decide(self, claim_id: str, tombstone: bool) -> str:
        """The sweeper's question: the outcome, or (never seen) aborted from now on."""
        self.transactions += 1
        if claim_id in self.outcomes:
            return self.outcomes[claim_id]
        if tombstone:
            self.outcomes[claim_id] = ABORTED
        return ABORTED

    def settle(self, claim_id: str, outcome: str) -> None:
        self.transactions += 1
        hold = self.holds[claim_id]
        if hold.state != RESERVED:  # settled already: a repeat changes nothing
            return
        del self.open[claim_id]
        if outcome == ACCEPTED:
            hold.state = SPENT
            self.spent_fen[hold.voucher] = self.spent_fen.get(hold.voucher, 0) + hold.amount_fen
        else:
            hold.state = RELEASED
            self.remaining_fen[hold.voucher] += hold.amount_fen
            self.enterprise_left_fen[hold.enterprise] += hold.amount_fen

    # ---- checks inside one region ---------------------------------------------------------
    def _fits(self, claim: Claim) -> bool:
        return (
            self.remaining_fen[claim.voucher] >= claim.amount_fen
            and self.enterprise_left_fen[claim.enterprise] >= claim.amount_fen
        )

    def _claimable(self, claim: Claim) -> bool:
        return (claim.provider, claim.contract_no) not in self.contracts and self.provider_left_fen[
            claim.provider
        ] >= claim.amount_fen

    def _take(self, claim: Claim) -> None:
        self.remaining_fen[claim.voucher] -= claim.amount_fen
        self.enterprise_left_fen[claim.enterprise] -= claim.amount_fen

    def _accept(self, claim: Claim) -> None:
        self.contracts[(claim.provider, claim.contract_no)] = claim.id
        self.provider_left_fen[claim.provider] -= claim.amount_fen
        self.claims_fen[claim.id] = claim.amount_fen


@dataclass(frozen=True)
class Claim:
    id: str
    voucher: str
    enterprise: str
    home: int  # the voucher's region
    provider: str
    there: int  # the provider's region
    contract_no: str
    amount_fen: int


@dataclass
class Saga:
    claim: Claim
    step: int = 0  # 0: reserve, 1: confirm, 2: settle, 3: done
    outcome: str = ""
    wake: int = 0  # the tick a stalled coordinator goes on


@dataclass
class World:
    regions: list[Partition]
    faces_fen: dict[str, tuple[int, int]]  # voucher -> (region, face value)
    enterprise_caps_fen: dict[str, tuple[int, int]]
    provider_caps_fen: dict[str, tuple[int, int]]


@dataclass
class Figures:
    claims: int = 0
    cross: int = 0
    accepted: int = 0
    refused: int = 0
    swept: int = 0
    late_confirms: int = 0
    duplicates: int = 0
    max_held_fen: int = 0
    violations: list[str] = field(default_factory=list)


def build(rng: random.Random, regions: int, vouchers: int, providers: int) -> World:
    """Vouchers of 50,000 yuan face value, enterprises with a 200,000 yuan yearly cap (two
    vouchers each), providers with a cap of 10,000,000 yuan of contracts a year (what the 5%
    post-subsidy's 500,000 yuan cap allows, seeds/003_0b34bd42ca6e5c30.txt)."""
    world = World([Partition(f"region-{r}") for r in range(regions)], {}, {}, {})
    for v in range(vouchers):
        region = v % regions
        voucher, enterprise = f"v{v}", f"e{v // 2}"
        world.faces_fen[voucher] = (region, 5_000_000)
        world.regions[region].remaining_fen[voucher] = 5_000_000
        world.enterprise_caps_fen[enterprise] = (region, 20_000_000)
        world.regions[region].enterprise_left_fen[enterprise] = 20_000_000
    for p in range(providers):
        region, provider = p % regions, f"p{p}"
        world.provider_caps_fen[provider] = (region, 1_000_000_000)
        world.regions[region].provider_left_fen[provider] = 1_000_000_000
    return world


def claims(rng: random.Random, world: World, count: int, cross: float) -> list[Claim]:
    """``count`` claims; a share ``cross`` of them by a provider of another region. A few
    hot providers take most claims (a fifth of them four in five), and one claim in 50 repeats
    a contract number."""
    regions = len(world.regions)
    by_region: list[list[str]] = [[] for _ in range(regions)]
    for provider, (region, _) in world.provider_caps_fen.items():
        by_region[region].append(provider)
    vouchers = list(world.faces_fen)
    made: list[Claim] = []
    for n in range(count):
        voucher = rng.choice(vouchers)
        home = world.faces_fen[voucher][0]
        there = home
        if regions > 1 and rng.random() < cross:
            there = rng.choice([r for r in range(regions) if r != home])
        pool = by_region[there]
        hot = max(1, len(pool) // 5)  # a fifth of the providers take four claims in five
        provider = rng.choice(pool[:hot] if rng.random() < 0.8 else pool[hot:] or pool)
        contract = f"c{rng.randrange(n)}" if n and rng.random() < 0.02 else f"c{n}"
        enterprise = f"e{int(voucher[1:]) // 2}"
        amount = rng.randrange(100_000, 2_000_000)
        made.append(Claim(f"k{n}", voucher, enterprise, home, provider, there, contract, amount))
    return made


def run(
    world: World,
    todo: list[Claim],
    rng: random.Random,
    *,
    in_flight: int = 64,
    stall: float = 0.05,
    duplicate: float = 0.05,
    timeout: int = 200,
    tombstone: bool = True,
) -> Figures:
    """Advance up to ``in_flight`` claims at once, one step of one at random per tick; a
    coordinator stalls after a step with probability ``stall`` (for up to 3 timeouts, so the
    sweeper often settles its claim first) and repeats a step with probability ``duplicate``.
    The sweeper runs every 50 ticks."""
    figures = Figures(claims=len(todo))
    queue, tick = list(reversed(todo)), 0
    active: list[Saga] = []
    while queue or active:
        tick += 1
        while queue and len(active) < in_flight:
            active.append(Saga(queue.pop()))
        ready = [s for s in active if s.wake <= tick]
        if ready:
            saga = rng.choice(ready)
            _advance(world, saga, tick, figures, tombstone)
            if rng.random() < duplicate and saga.step in (1, 2, 3):
                figures.duplicates += 1
                _repeat(world, saga, tick)
            if saga.step == 3:
                active.remove(saga)
            elif rng.random() < stall:
                saga.wake = tick + rng.randrange(1, 3 * timeout)
        if tick % 50 == 0 or not ready:
            _sweep(world, tick, timeout, figures, tombstone)
            if not ready:
                tick = min(s.wake for s in active) - 1 if active else tick
        if tick % 50 == 0:
            held = sum(h.amount_fen for r in world.regions for h in r.open.values())
            figures.max_held_fen = max(figures.max_held_fen, held)
        if tick % 1000 == 0:
            _check_now(world, figures)
    _sweep(world, tick + timeout + 1, timeout, figures, tombstone)
    _check_now(world, figures)
    check(world, figures)
    return figures


def _advance(world: World, saga: Saga, tick: int, figures: Figures, tombstone: bool) -> None:
    claim = saga.claim
    home, there = world.regions[claim.home], world.regions[claim.there]
    if claim.home == claim.there:
        saga.outcome, saga.step = home.redeem(claim), 3
        _count(figures, saga.outcome)
        return
    if saga.step == 0:
        figures.cross += 1
        saga.outcome = home.reserve(claim, tick)
        saga.step = 1 if saga.outcome == ACCEPTED else 3
        if saga.step == 3:
            _count(figures, REFUSED)
    elif saga.step == 1:
        if home.holds[claim.id].state != RESERVED:
            figures.late_confirms += 1  # the sweeper settled it while this one stalled
        saga.outcome = there.confirm(claim)
        saga.step = 2
    elif saga.step == 2:
        home.settle(claim.id, saga.outcome)
        saga.step = 3
        _count(figures, saga.outcome)


def _repeat(world: World, saga: Saga, tick: int) -> None:
    """The step just taken, sent again (a retry after a lost answer)."""
    claim = saga.claim
    if claim.home == claim.there:
        return  # today's idempotency keys answer the first outcome; not what is simulated
    if saga.step == 1:
        world.regions[claim.home].reserve(claim, tick)
    elif saga.step == 2:
        world.regions[claim.there].confirm(claim)
    elif saga.step == 3 and claim.id in world.regions[claim.home].holds:
        world.regions[claim.home].settle(claim.id, saga.outcome)


def _sweep(world: World, tick: int, timeout: int, figures: Figures, tombstone: bool) -> None:
    for region in world.regions:
        stale = [(c, h) for c, h in region.open.items() if tick - h.since > timeout]
        for claim_id, hold in stale:
            region.settle(claim_id, world.regions[hold.there].decide(claim_id, tombstone))
            figures.swept += 1


def _count(figures: Figures, outcome: str) -> None:
    if outcome == ACCEPTED:
        figures.accepted += 1
    else:
        figures.refused += 1


def _check_now(world: World, figures: Figures) -> None:
    """What must hold at every instant: nothing below zero anywhere."""
    for region in world.regions:
        for what in (region.remaining_fen, region.enterprise_left_fen, region.provider_left_fen):
            negative = [k for k, v in what.items() if v < 0]
            if negative:
                figures.violations.append(f"{region.name}: below zero: {negative[:3]}")


def check(world: World, figures: Figures) -> None:
    """Once every saga has settled: caps and face values held, one claim per contract, and
    every fen spent in a voucher's region is a claim accepted in the provider's region."""
    spent: dict[str, int] = {}
    for region in world.regions:
        for voucher, fen in region.spent_fen.items():
            spent[voucher] = spent.get(voucher, 0) + fen
        held = [c for c, h in region.holds.items() if h.state == RESERVED]
        if held:
            figures.violations.append(f"{region.name}: {len(held)} holds never settled")
    for voucher, (home, face) in world.faces_fen.items():
        remaining = world.regions[home].remaining_fen[voucher]
        if remaining + spent.get(voucher, 0) != face:
            figures.violations.append(f"{voucher}: remaining + spent != face value")
    accepted = {c: fen for r in world.regions for c, fen in r.claims_fen.items()}
    spent_claims = {
        c: h.amount_fen for r in world.regions for c, h in r.holds.items() if h.state == SPENT
    }
    cross_ids = {c for r in world.regions for c in r.holds}
    local = {c: f for c, f in accepted.items() if c not in cross_ids}
    cross_accepted = {c: f for c, f in accepted.items() if c in cross_ids}
    if cross_accepted != spent_claims:
        without_money = len(set(cross_accepted) - set(spent_claims))
        without_claim = len(set(spent_claims) - set(cross_accepted))
        figures.violations.append(
            f"{without_money} claims accepted whose money was released, "
            f"{without_claim} holds spent without a claim"
        )
    if sum(spent.values()) != sum(local.values()) + sum(spent_claims.values()):
        figures.violations.append("fen spent != fen of accepted claims")
    for kind, caps in (
        ("enterprise", world.enterprise_caps_fen),
        ("provider", world.provider_caps_fen),
    ):
        for who, (home, cap) in caps.items():
            left = getattr(world.regions[home], f"{kind}_left_fen")[who]
            if not 0 <= left <= cap:
                figures.violations.append(f"{kind} {who}: cap left {left} outside 0..{cap}")
    contracts = [k for r in world.regions for k in r.contracts]
    if len(contracts) != len(set(contracts)):
        figures.violations.append("a contract has two claims")


def simulate(
    claims_n: int,
    regions: int,
    cross: float,
    seed: int = 1,
    **options: object,
) -> tuple[World, Figures]:
    rng = random.Random(seed)
    world = build(
        rng, regions, vouchers=max(10, claims_n // 4), providers=max(regions * 10, claims_n // 50)
    )
    todo = claims(rng, world, claims_n, cross)
    return world, run(world, todo, rng, **options)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--cross", type=float, default=0.2, help="share of cross-region claims")
    parser.add_argument("--stall", type=float, default=0.05)
    parser.add_argument("--duplicate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-tombstone", dest="tombstone", action="store_false")
    args = parser.parse_args()
    started = time.perf_counter()
    world, f = simulate(
        args.claims,
        args.regions,
        args.cross,
        args.seed,
        stall=args.stall,
        duplicate=args.duplicate,
        tombstone=args.tombstone,
    )
    took = time.perf_counter() - started
    transactions = sum(r.transactions for r in world.regions)
    per_region = [r.transactions for r in world.regions]
    print(
        f"{f.claims:,} claims over {args.regions} regions, {f.cross:,} across regions "
        f"({f.cross / f.claims:.1%}); accepted {f.accepted:,}, refused {f.refused:,}"
    )
    print(
        f"local transactions: {transactions:,} ({transactions / f.claims:.2f} a claim; "
        f"per region {', '.join(f'{t:,}' for t in per_region)}); repeats sent {f.duplicates:,}"
    )
    print(
        f"swept by the timeout: {f.swept:,}; confirms arriving after their hold was settled: "
        f"{f.late_confirms:,}; most fen held in flight at once: {f.max_held_fen / 100:,.2f} yuan"
    )
    print(f"simulated in {took:.1f} s; tombstone {'on' if args.tombstone else 'OFF'}")
    if f.violations:
        for v in f.violations[:10]:
            print(f"  VIOLATION: {v}")
        return 1
    print("  every check held: no overspend, one claim per contract, every fen spent is a claim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
