"""The cross-region saga of docs/SCALING.md, simulated (benchmarks/saga.py): with stalled
coordinators, repeated messages and the sweeper settling holds under them, no voucher or cap is
overspent and every fen spent is an accepted claim; without the tombstone the checks find the
claims a late confirm accepted after their money was released, so they are not vacuous."""

from __future__ import annotations

import pytest

from benchmarks.saga import simulate


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_saga_overspends_nothing_under_stalls_and_repeats(seed: int) -> None:
    world, figures = simulate(5_000, 3, 0.3, seed, stall=0.1, duplicate=0.1)
    assert figures.violations == []
    # The hard paths were taken: claims across regions, holds swept, confirms arriving late.
    assert figures.cross > 1_000 and figures.swept > 0 and figures.late_confirms > 0
    assert figures.accepted + figures.refused == figures.claims
    assert all(not region.open for region in world.regions)


def test_without_the_tombstone_a_late_confirm_accepts_a_claim_whose_money_was_released() -> None:
    _, figures = simulate(5_000, 3, 0.3, 1, stall=0.1, duplicate=0.1, tombstone=False)
    assert any("claims accepted whose money was released" in v for v in figures.violations)
