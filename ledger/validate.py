"""Checks of plain input values; each failure is a ``ValidationError`` naming the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ledger.errors import NotFound, ValidationError

MAX_TEXT_LEN = 200
MIN_FISCAL_YEAR, MAX_FISCAL_YEAR = 2000, 2100


def check_text(value: Any, field: str, *, max_len: int = MAX_TEXT_LEN) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(f"{field} must be at most {max_len} characters")
    if any(ord(c) < 32 for c in value):
        raise ValidationError(f"{field} must not contain control characters")
    return value


def check_optional_text(value: Any, field: str, *, max_len: int = MAX_TEXT_LEN) -> str | None:
    return None if value is None else check_text(value, field, max_len=max_len)


def check_choice(value: Any, field: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValidationError(f"{field} must be one of {', '.join(choices)}")
    return str(value)


def check_fiscal_year(value: Any, field: str = "fiscal_year") -> int:
    if type(value) is not int or not MIN_FISCAL_YEAR <= value <= MAX_FISCAL_YEAR:
        raise ValidationError(
            f"{field} must be an integer year {MIN_FISCAL_YEAR}..{MAX_FISCAL_YEAR}"
        )
    return value


MAX_INT_DIGITS = 18


def check_int_text(value: Any, field: str, lowest: int, highest: int) -> int:
    """A whole number written in ASCII digits (a query parameter, a path segment) within
    [lowest, highest]."""
    text = str(value)
    if text.isascii() and text.isdigit() and len(text) <= MAX_INT_DIGITS:
        number = int(text)
        if lowest <= number <= highest:
            return number
    raise ValidationError(f"{field} must be a whole number from {lowest} to {highest}")


def check_date(value: Any, field: str) -> dt.date:
    """A ``datetime.date`` or a ``YYYY-MM-DD`` string."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a date YYYY-MM-DD")


def check_uuid(value: Any, what: str) -> UUID:
    """An id the ledger issued; a malformed one cannot exist, so it is simply not found."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} {str(value)[:64]!r} not found") from None
