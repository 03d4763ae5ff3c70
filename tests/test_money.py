"""Money rules of DESIGN.md §2: integer fen, basis points rounding down, largest remainder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import ValidationError
from ledger.money import MAX_AMOUNT_FEN, apply_bp, check_bp, check_fen, split_largest_remainder


def test_a_rate_rounds_down_to_the_fen() -> None:
    assert apply_bp(1_000_000, 9000) == 900_000
    assert apply_bp(999, 500) == 49  # 49.95 fen -> 49
    assert apply_bp(1, 9999) == 0


def test_the_worked_reservation_splits_2000000_into_1333333_and_666667() -> None:
    assert split_largest_remainder(2_000_000, [6000, 3000]) == [1_333_333, 666_667]


def test_the_worked_subsidy_splits_by_remaining_reservation() -> None:
    assert split_largest_remainder(900_000, [1_333_333, 666_667]) == [600_000, 300_000]


def test_ties_go_to_the_source_listed_first() -> None:
    assert split_largest_remainder(1, [1, 1]) == [1, 0]
    assert split_largest_remainder(5, [1, 1, 1, 1]) == [2, 1, 1, 1]


def test_a_zero_amount_over_zero_weights_is_all_zeros() -> None:
    assert split_largest_remainder(0, [0, 0]) == [0, 0]


@given(
    total=st.integers(min_value=0, max_value=MAX_AMOUNT_FEN),
    weights=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=8).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_parts_always_add_up_exactly_and_stay_within_one_fen_of_the_exact_share(
    total: int, weights: list[int]
) -> None:
    parts = split_largest_remainder(total, weights)

    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert total * weight // weight_sum <= part <= total * weight // weight_sum + 1
        assert part >= 0


@pytest.mark.parametrize(
    "bad",
    [-1, 1.0, 0.5, "100", True, False, None, MAX_AMOUNT_FEN + 1, 10**30, [100], {"fen": 1}],
)
def test_an_amount_that_is_not_an_integer_in_range_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        check_fen(bad, "amount_fen")
    assert refused.value.slug == "validation-error"
    assert "amount_fen" in refused.value.detail


def test_the_largest_amount_is_accepted() -> None:
    assert check_fen(MAX_AMOUNT_FEN, "amount_fen") == MAX_AMOUNT_FEN


@pytest.mark.parametrize("bad", [-1, 10_001, 1.5, "6000", True])
def test_a_rate_outside_0_to_10000_bp_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        check_bp(bad, "share_bp")
