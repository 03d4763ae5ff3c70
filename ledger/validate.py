"""Checks of plain input values; each failure is a ``ValidationError`` naming the field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ledger.errors import NotFound, ValidationError

MAX_TEXT_LEN = 200
MIN_FISCAL_YEAR, MAX_FISCAL_YEAR = 2000, 2100

# What no name, key or reference may hold, because it hides or reorders what a reader of a
# report or an export sees: C0 and C1 controls and DEL, the soft hyphen, bidirectional marks,
# embeddings, overrides and isolates (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069),
# zero-width and other invisible format characters (U+180E, U+200B-U+200D, U+2060-U+206F,
# U+FEFF, U+FFF9-U+FFFB), line and paragraph separators (U+2028, U+2029) and lone surrogates.
FORBIDDEN_TEXT_RANGES = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x061C, 0x061C),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
)
# The same as a regular-expression class body, in \uXXXX escapes that Python and ECMA-262 (the
# OpenAPI document's pattern) read alike.
FORBIDDEN_TEXT_CLASS = "".join(
    f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}"
    for low, high in FORBIDDEN_TEXT_RANGES
)
_FORBIDDEN_TEXT = re.compile(f"[{FORBIDDEN_TEXT_CLASS}]")


def check_text(value: Any, field: str, *, max_len: int = MAX_TEXT_LEN) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(f"{field} must be at most {max_len} characters")
    bad = _FORBIDDEN_TEXT.search(value)
    if bad is not None:
        raise ValidationError(
            f"{field} must not contain U+{ord(bad.group()):04X} (control, format, separator or "
            "surrogate characters hide or reorder what a reader sees)"
        )
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


def check_bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise ValidationError(f"{field} must be true or false")
    return value


def check_int(value: Any, field: str, lowest: int, highest: int) -> int:
    """A JSON integer (not a boolean, not a float) within [lowest, highest]."""
    if type(value) is not int or not lowest <= value <= highest:
        raise ValidationError(f"{field} must be a whole number from {lowest} to {highest}")
    return value
