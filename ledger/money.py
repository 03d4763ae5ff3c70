"""Money is an integer number of fen; rates are integer basis points (DESIGN.md §2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.errors import ValidationError

MAX_AMOUNT_FEN = 10**15
BP_WHOLE = 10_000


def check_fen(value: Any, field: str, *, positive: bool = False) -> int:
    """Return ``value`` if it is an integer amount of fen in 0..10^15 (1.. if ``positive``).

    Booleans, floats, strings and anything else are refused: a float near money is a bug."""
    if type(value) is not int:
        raise ValidationError(
            f"{field} must be an integer number of fen, got {type(value).__name__}"
        )
    low = 1 if positive else 0
    if not low <= value <= MAX_AMOUNT_FEN:
        raise ValidationError(
            f"{field} must be between {low} and {MAX_AMOUNT_FEN} fen, got {value}"
        )
    return value


def check_bp(value: Any, field: str) -> int:
    """Return ``value`` if it is an integer rate in basis points, 0..10000."""
    if type(value) is not int:
        raise ValidationError(f"{field} must be an integer number of basis points")
    if not 0 <= value <= BP_WHOLE:
        raise ValidationError(f"{field} must be between 0 and {BP_WHOLE} bp, got {value}")
    return value


def apply_bp(amount_fen: int, rate_bp: int) -> int:
    """``amount_fen`` × ``rate_bp`` / 10000, rounded down to the fen."""
    assert amount_fen >= 0 and rate_bp >= 0
    return amount_fen * rate_bp // BP_WHOLE


def split_largest_remainder(total_fen: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_fen`` in proportion to ``weights`` so the parts add up exactly.

    Each part gets the floor of its exact share; the left-over fen go one each to the largest
    fractional remainders, ties to the weight listed first (DESIGN.md §2)."""
    assert total_fen >= 0 and all(w >= 0 for w in weights)
    weight_sum = sum(weights)
    if weight_sum == 0:
        assert total_fen == 0, "cannot split a positive amount over zero weights"
        return [0] * len(weights)
    parts = [total_fen * w // weight_sum for w in weights]
    remainders = [total_fen * w % weight_sum for w in weights]
    leftover = total_fen - sum(parts)
    assert 0 <= leftover < max(1, len(weights))
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        parts[i] += 1
    assert sum(parts) == total_fen
    return parts


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals and thousands separators, by integer arithmetic only."""
    if type(fen) is not int:
        raise TypeError(f"money must be an integer number of fen, got {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"
