"""Decimal money text <-> integer minor units, exactly, by string and integer arithmetic only.

Bank files write money as decimal text in the currency's major unit (``1234.56`` yuan); the
ledger counts integer minor units (fen for CNY, cents for EUR, yen for JPY). A float never
touches an amount here: ``0.1 + 0.2`` is not ``0.3`` in binary floating point, and one fen lost
in a statement is a reconciliation that never closes.

Minor units follow ISO 4217. A well-formed code that the table below does not list gets two
decimals (the ISO default for most currencies) rather than a refusal: only CNY is ever matched
against payouts, and refusing a whole statement over, say, a GBP pocket would lose the CNY
lines beside it. A code with three or more decimals that is not listed would still be safe: its
amounts with three decimals are refused (``MoneyTextInvalid``), never silently rounded."""

from __future__ import annotations

import functools
import re

# ISO 4217 currencies whose minor unit is not 2 decimals (the exceptions; everything else is 2).
_ZERO_DECIMALS = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND"]
)
_ZERO_DECIMALS |= {"VUV", "XAF", "XOF", "XPF"}
_THREE_DECIMALS = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])
_FOUR_DECIMALS = frozenset(["CLF", "UYW"])

_CODE = re.compile(r"[A-Z]{3}")
# Plain decimal text as ISO 20022 writes it: digits, optionally a point and more digits.
_PLAIN = re.compile(r"(\d{1,18})(?:\.(\d{1,18}))?")
# Spreadsheet text: an optional sign, thousands separators in groups of three, decimals.
_GROUPED = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d{1,18})(?:\.(\d{1,18}))?")

MAX_AMOUNT_DIGITS = 18  # ISO 20022 amounts have at most 18 digits in all


class MoneyTextInvalid(ValueError):
    """Decimal text that is not an exact amount in the currency's minor unit."""


@functools.lru_cache(maxsize=512)  # a statement asks once per amount: 200,000 times
def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of ``currency`` (ISO 4217 alpha code): 2 for CNY, 0 for JPY, 3 for
    BHD; 2 for a well-formed code the table does not list. A malformed code is refused."""
    if not _CODE.fullmatch(currency):
        raise MoneyTextInvalid(f"currency {currency!r} is not an ISO 4217 code")
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    return 4 if currency in _FOUR_DECIMALS else 2


def _to_minor(whole: str, fraction: str | None, exponent: int, text: str) -> int:
    """``whole.fraction`` as an integer count of 10**-exponent units; more decimals than the
    currency has are refused, also trailing zeros (API_CONTRACT.md §4c)."""
    fraction = fraction or ""
    if len(fraction) > exponent:
        raise MoneyTextInvalid(f"{text!r} has more than {exponent} decimals")
    if len(whole.lstrip("0")) + exponent > MAX_AMOUNT_DIGITS:
        raise MoneyTextInvalid(f"{text!r} has more than {MAX_AMOUNT_DIGITS} digits")
    scale: int = 10**exponent
    return int(whole) * scale + int(fraction.ljust(exponent, "0") or "0")


_SCALES: tuple[int, ...] = (1, 10, 100, 1000, 10000)  # 10**decimals, as ISO 4217 has them


def decimal_text_to_minor(text: str, exponent: int) -> int:
    """ISO 20022 amount text (``1405.31``, ``200``, ``88667.8``) as non-negative minor units.

    No sign, no separators, no exponent notation; surrounding whitespace is allowed."""
    # ASCII digits, a point, at most ``exponent`` more digits, 18 digits in all: the text
    # of nearly every amount, read by str methods; anything else takes the full rules below.
    whole, point, fraction = text.partition(".")
    if (
        0 <= exponent < len(_SCALES)
        and whole.isascii()
        and whole.isdigit()
        and len(whole) + exponent <= MAX_AMOUNT_DIGITS
    ):
        if not point:
            return int(whole) * _SCALES[exponent]
        if fraction.isascii() and fraction.isdigit() and len(fraction) <= exponent:
            return int(whole + fraction) * _SCALES[exponent - len(fraction)]
    match = _PLAIN.fullmatch(text.strip())
    if match is None:
        raise MoneyTextInvalid(f"{text!r} is not a decimal amount")
    return _to_minor(match.group(1), match.group(2), exponent, text)


def grouped_text_to_minor(text: str, exponent: int) -> int:
    """Spreadsheet amount text (``-2,600.00``, ``+10000.00``, ``1234.56``) as *signed* minor
    units. Thousands separators must group by three (``1,2,3`` is refused)."""
    match = _GROUPED.fullmatch(text.strip())
    if match is None:
        raise MoneyTextInvalid(f"{text!r} is not a decimal amount")
    sign, whole, fraction = match.groups()
    value = _to_minor(whole.replace(",", ""), fraction, exponent, text)
    return -value if sign == "-" else value


def minor_to_decimal_text(amount: int, exponent: int) -> str:
    """Integer minor units as ISO 20022 decimal text: ``123456, 2`` -> ``1234.56``,
    ``5, 0`` -> ``5``. Only non-negative integers (``bool`` is refused)."""
    if type(amount) is not int or amount < 0:
        raise MoneyTextInvalid(f"an amount must be a non-negative int, got {amount!r}")
    if exponent == 0:
        return str(amount)
    scale: int = 10**exponent
    whole, fraction = divmod(amount, scale)
    return f"{whole}.{fraction:0{exponent}d}"
