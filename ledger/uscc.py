"""Unified social credit code (统一社会信用代码), GB 32100-2015: 18 characters, the last a check
character computed modulo 31 over a 31-character alphabet without I, O, S, V, Z."""

from __future__ import annotations

from typing import Any

from ledger.errors import ValidationError

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, 16, 17, 20, 29, ...
_VALID: set[str] = set()
_VALID_MAX = 1_000_000


def check_character(first17: str) -> str:
    """The check character for the first 17 characters of a code."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def check_uscc(value: Any, field: str = "id") -> str:
    """Return ``value`` if it is a well-formed USCC with a correct check character."""
    if isinstance(value, str) and value in _VALID:
        return value
    if not isinstance(value, str) or len(value) != 18:
        raise ValidationError(f"{field} must be an 18-character unified social credit code")
    if any(c not in _VALUE for c in value):
        raise ValidationError(f"{field} contains characters outside GB 32100-2015's alphabet")
    if not value[2:8].isdigit():
        raise ValidationError(f"{field} has an administrative division code that is not 6 digits")
    if check_character(value[:17]) != value[17]:
        raise ValidationError(f"{field} has a wrong check character")
    if len(_VALID) < _VALID_MAX:  # the same providers come back all day: remember them
        _VALID.add(value)
    return value


def make_uscc(first17: str) -> str:
    """Complete 17 characters into a valid code (for demo data and tests)."""
    return first17 + check_character(first17)
