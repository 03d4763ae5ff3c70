"""The one cell escaper of every CSV the project writes: the API's ``?format=csv`` exports and
the audit report's CSV both go through ``csv_cell``.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and some
also after a leading tab or carriage return (CSV or formula injection, OWASP): an institution's
name ``=HYPERLINK(...)`` would become a link in an auditor's workbook. Such text gets a leading
apostrophe, which makes the spreadsheet show the text instead of running it. Numbers are
written as numbers, so ``-1`` fen stays the number -1; only text is ever changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """``value`` as it should reach ``csv.writer``: ``None`` and numbers unchanged, anything
    else as text, with an apostrophe in front when it starts like a formula."""
    if value is None or isinstance(value, int | float):  # bool is an int: True stays True
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_row(values: Iterable[object]) -> list[object]:
    """Every value of a row through ``csv_cell``."""
    return [csv_cell(value) for value in values]


def csv_rows(rows: Iterable[Mapping[str, object]], fields: Sequence[str]) -> list[list[object]]:
    """The ``fields`` of each row, in that order (absent ones empty), escaped."""
    return [csv_row(row.get(field) for field in fields) for row in rows]
