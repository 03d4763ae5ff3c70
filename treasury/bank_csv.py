"""Bank statements as CSV: the project's own layout, and the export layouts of Chinese banks
listed in ``treasury.csv_layouts`` (found from the header row, after any preamble rows).

The project's own layout (``text/csv``, UTF-8; quoted as the README quotes it)::

    # account=6222020200001234567
    # currency=CNY
    # opening_balance=10000.00
    booking_date,value_date,amount,currency,credit_debit,end_to_end_id,counterparty_account,counterparty_name,reference,reversal
    2026-04-01,2026-04-01,1234.56,CNY,DBIT,PO-7F3A9C,6222000011112222,某某科技服务有限公司,BK0001,false
    2026-04-01,,50.00,CNY,CRDT,,,退款,BK0002,
    # closing_balance=8815.44

- One header row; columns in any order. Required: ``booking_date`` (YYYY-MM-DD; also
  YYYYMMDD or YYYY/MM/DD), ``amount`` (decimal yuan text, unsigned, at most two decimals:
  ``1234.56``, ``1,234.56``; never a float) and ``credit_debit`` (``CRDT`` money in, ``DBIT``
  money out; 贷/借 also read). Optional: ``value_date``, ``currency`` (ISO code, default the
  ``# currency`` row or CNY), ``end_to_end_id`` (the reference the payment file gave the
  bank), ``counterparty_account``, ``counterparty_name``, ``reference`` (the bank's own
  reference), ``reversal`` (``true``/``false``, empty is false) and ``balance`` (the running
  balance after the line, signed). Any other column is refused (a typo would lose a field).
- Rows starting with ``#`` carry ``key=value`` settings, before or after the lines:
  ``account``, ``currency``, ``opening_balance`` and ``closing_balance`` (signed decimal
  yuan; a debit balance is negative), ``statement_id``, ``from_date``, ``to_date``. A ``#``
  row without ``=`` is a comment. Empty rows are ignored. One account and one currency per
  file. A spreadsheet saves this as it is ("CSV UTF-8"); cells it pads with spaces are
  trimmed, a cell of dashes is empty.

Bank exports: decoded as UTF-8 (with or without BOM), else GB18030 (GBK exports). Preamble
rows before the header (``卡号: 1234****9876``, ``账号:``, ``币种:``) give the account and
currency when no column does; rows after the last dated line (``人民币合计``) are trailer
rows. Both are kept verbatim in ``ParsedStatement.skipped_rows``. Lines are grouped into one
statement per (own account, currency). Cells no column mapping reads are kept in
``additional_info`` as ``header=value``. Bank CSVs carry no opening or closing balance: when
every line has a running balance they are derived from it (opening = oldest balance − oldest
amount, closing = newest balance, the file's order told by the balances themselves), and
``balances_add_up`` says whether every consecutive pair of running balances agrees with the
amount between them; with no or masked balances (``xx,yyyy.zz``) it is ``None``. A line's
identity (``key``) is built from (account, transaction id, date, time, amount, counterparty
account, balance), as most banks give no unique transaction id."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time

from treasury.csv_layouts import OWN, CsvLayout, find_layout, header_key
from treasury.money import MoneyTextInvalid, grouped_text_to_minor, minor_unit_exponent
from treasury.statements import (
    MAX_LINES,
    MAX_STATEMENTS,
    Balance,
    CreditDebit,
    LineKeys,
    ParsedStatement,
    Statement,
    StatementInvalid,
    StatementLine,
    file_sha256,
    make_statement,
)

MAX_PREAMBLE_ROWS = 40  # the header row is among the first rows
MAX_COLUMNS = 256
MAX_EXTRA_ROWS = 1_000  # preamble, trailer, comment and empty rows

_PLACEHOLDER = re.compile(r"-+|—+")  # ICBC "-", ABC "--", BOC "-------------------"
_MASKED = re.compile(r"[xyz*#]+[xyz*#,.]*", re.IGNORECASE)  # ICBC "xx,yyyy.zz"
_DATE = re.compile(r"(\d{4})(?:[-/.年](\d{1,2})[-/.月](\d{1,2})日?|(\d{2})(\d{2}))")
_TIME = re.compile(r"(\d{1,2}):?(\d{2}):?(\d{2})?(?:\.\d+)?")
_TRAILING_ACCOUNT = re.compile(r"(.*?)\s*([0-9*]{6,})")
_KEY_VALUE = re.compile(r"([^:=]{1,24})[:=](.*)")
_CREDIT_FLAGS = ["crdt", "c", "cr", "贷", "贷方", "贷cr", "收", "收入", "入", "来账"]
_DEBIT_FLAGS = ["dbit", "d", "dr", "借", "借方", "借dr", "支", "支出", "出", "付", "往账"]
_FLAGS: dict[str, CreditDebit] = {
    **dict.fromkeys(_CREDIT_FLAGS, "CRDT"),
    **dict.fromkeys(_DEBIT_FLAGS, "DBIT"),
}
_BOOLEANS = {"": False, "false": False, "0": False, "no": False, "true": True, "1": True}
_CURRENCIES = {
    **dict.fromkeys(["人民币", "人民币元", "rmb", "cny", "本币"], "CNY"),
    **dict.fromkeys(["美元", "usd"], "USD"),
    **dict.fromkeys(["港币", "港元", "hkd"], "HKD"),
    **dict.fromkeys(["欧元", "eur"], "EUR"),
    **dict.fromkeys(["日元", "jpy"], "JPY"),
    **dict.fromkeys(["英镑", "gbp"], "GBP"),
}  # fmt: skip
_ACCOUNT_KEYS = {"卡号", "账号", "帐号", "银行账号", "账户", "账户号", "本方账号", "account"}
_CURRENCY_KEYS = {"币种", "币别", "货币", "currency"}
_OWN_SETTINGS = {
    "account", "currency", "opening_balance", "closing_balance", "statement_id",
    "from_date", "to_date",
}  # fmt: skip


def _decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped), else GB18030, the superset of GBK that Chinese banks use."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise StatementInvalid("a CSV statement is UTF-8 or GB18030 text")


def _rows(text: str, max_rows: int) -> list[list[str]]:
    """The CSV rows, every cell stripped (ICBC pads cells with spaces and a TAB)."""
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if len(row) > MAX_COLUMNS:
                raise StatementInvalid(f"row {len(rows) + 1} has over {MAX_COLUMNS} columns")
            rows.append([cell.strip() for cell in row])
            if len(rows) > max_rows:
                raise StatementInvalid(f"a CSV statement has at most {max_rows} rows")
    except csv.Error as error:
        raise StatementInvalid(f"not a readable CSV file: {error}") from None
    return rows


def _row_text(row: Sequence[str]) -> str:
    """A row as CSV text again (cells trimmed), for ``skipped_rows``."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def _value(cell: str) -> str:
    """A data cell with placeholders (``-``, ``--``, ``---``) as empty."""
    return "" if _PLACEHOLDER.fullmatch(cell) else cell


def _is_comment(row: Sequence[str]) -> bool:
    return bool(row) and row[0].startswith("#")


def _parse_date(text: str, where: str) -> tuple[date, time | None]:
    """``2024-01-02``, ``20240102``, ``2024/1/2``, ``2024年1月2日``, with an optional time
    after a space or ``T``: the date and the time (or None)."""
    day_part, _, time_part = text.replace("T", " ").partition(" ")
    match = _DATE.fullmatch(day_part)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, compact_month, compact_day = match.groups()
        found = date(int(year), int(month or compact_month), int(day or compact_day))
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a date") from None
    return found, _parse_time(time_part.strip(), where) if time_part.strip() else None


def _parse_time(text: str, where: str) -> time | None:
    """``13:15:12``, ``131512``, ``13:15`` or empty."""
    if not text:
        return None
    match = _TIME.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        hour, minute, second = match.groups()
        return time(int(hour), int(minute), int(second or 0))
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a time") from None


def _currency(text: str, where: str) -> str:
    code = _CURRENCIES.get(text.strip().lower())
    if code is None and re.fullmatch(r"[A-Z]{3}", text.strip()):
        code = text.strip()
    if code is None:
        raise StatementInvalid(f"{where}: currency {text!r} is unknown")
    return code


def _money(text: str, currency: str, where: str) -> int:
    """Signed minor units of decimal text (``-2,600.00``); anything else is refused."""
    try:
        return grouped_text_to_minor(text, minor_unit_exponent(currency))
    except MoneyTextInvalid as error:
        raise StatementInvalid(f"{where}: {error}") from None


@dataclass(slots=True)
class _Context:
    """What the rows around the lines say: settings of ``#`` rows, preamble key-values,
    the rows that are not lines (kept verbatim)."""

    settings: dict[str, str]
    skipped: list[str]


def _setting(row: Sequence[str], context: _Context, layout: CsvLayout | None) -> None:
    """A ``# key=value`` row (the project's layout), or a comment."""
    text = ",".join(cell for cell in row if cell).lstrip("#").strip()
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep:
        context.skipped.append(_row_text(row))
        return
    if layout is OWN and key not in _OWN_SETTINGS:
        raise StatementInvalid(f"unknown setting row {key!r}; known: {sorted(_OWN_SETTINGS)}")
    context.settings[key] = value.strip()


def _preamble(row: Sequence[str], context: _Context) -> None:
    """A row before the header: ``卡号: 1234****9876`` gives the account, ``币种: 人民币`` the
    currency (the value may also stand in the next cell)."""
    context.skipped.append(_row_text(row))
    for index, cell in enumerate(row):
        match = _KEY_VALUE.fullmatch(cell.replace("：", ":"))
        key = header_key(match.group(1) if match else cell)
        value = match.group(2).strip() if match else ""
        if not value and index + 1 < len(row) and key in _ACCOUNT_KEYS | _CURRENCY_KEYS:
            value = row[index + 1]
        if key in _ACCOUNT_KEYS and value:
            context.settings.setdefault("account", value)
        elif key in _CURRENCY_KEYS and value:
            context.settings.setdefault("currency", value)


def _find_header(rows: list[list[str]], context: _Context) -> tuple[int, CsvLayout]:
    for index, row in enumerate(rows[:MAX_PREAMBLE_ROWS]):
        layout = find_layout(row)
        if layout is not None:
            return index, layout
        if _is_comment(row):
            _setting(row, context, OWN)
        elif any(row):
            _preamble(row, context)
    raise StatementInvalid(
        "no known header row in the first rows: use the README's layout "
        "(booking_date,amount,credit_debit,...) or a supported bank export"
    )


class _Row:
    """One data row; ``columns`` maps the layout's column names to cell positions."""

    __slots__ = ("cells", "columns", "where")

    def __init__(self, cells: list[str], columns: dict[str, int], where: str) -> None:
        self.cells, self.columns, self.where = cells, columns, where

    def get(self, column: str | None) -> str:
        """The cell of ``column`` (a layout's column name), placeholders as empty."""
        index = self.columns.get(column) if column else None
        if index is None or index >= len(self.cells):
            return ""
        return _value(self.cells[index])

    def first(self, columns: Sequence[str]) -> str:
        return next((v for v in map(self.get, columns) if v), "")


def _split_counterparty(text: str) -> tuple[str | None, str | None]:
    """``张三 66666666666666`` or ``国网电力有限公司99999999999999`` -> (name, account): a trailing
    run of at least six digits (or ``*`` of a masked number) is the account."""
    match = _TRAILING_ACCOUNT.fullmatch(text)
    if match is None:
        return text or None, None
    return match.group(1).strip() or None, match.group(2)


class _Reading:
    """Turns the data rows of one file into lines, through its layout and header row."""

    def __init__(self, layout: CsvLayout, header: list[str], context: _Context) -> None:
        self.layout = layout
        positions: dict[str, int] = {}
        for index, cell in enumerate(header):
            if cell:
                positions.setdefault(header_key(cell), index)
        names = layout.column_names()
        self.columns = {
            name: positions[header_key(name)] for name in names if header_key(name) in positions
        }
        mapped = {header_key(name) for name in names}
        unknown = [cell for cell in header if cell and header_key(cell) not in mapped]
        if layout.strict_columns and unknown:
            raise StatementInvalid(f"unknown columns {unknown}: see the README's CSV layout")
        self.extra = [(cell, positions[header_key(cell)]) for cell in unknown]
        self.flag = next((f for f in layout.flags if f in self.columns), None)
        self.settings = context.settings
        self.masked = False

    def _direction(self, row: _Row, amount: int) -> tuple[int, CreditDebit]:
        """(unsigned amount, direction) of an ``amount`` column, signed or with a flag."""
        if self.flag is None:
            return abs(amount), "DBIT" if amount < 0 else "CRDT"
        flag = row.get(self.flag)
        direction = _FLAGS.get(header_key(flag))
        if direction is None or amount < 0:
            raise StatementInvalid(f"{row.where}: {flag!r} {amount} is not CRDT/DBIT + amount")
        return amount, direction

    def _amount(self, row: _Row, currency: str) -> tuple[int, CreditDebit]:
        layout = self.layout
        if not layout.credit:
            text = row.get(layout.amount)
            if not text:
                raise StatementInvalid(f"{row.where}: the amount is empty")
            return self._direction(row, _money(text, currency, row.where))
        credit, debit = row.first(layout.credit), row.first(layout.debit)
        sides = [
            (_money(t, currency, row.where), d) for t, d in ((credit, "CRDT"), (debit, "DBIT")) if t
        ]
        if any(amount < 0 for amount, _ in sides):
            raise StatementInvalid(f"{row.where}: a negative amount in a debit/credit column")
        nonzero = [(amount, d) for amount, d in sides if amount] or sides[:1]
        if len(nonzero) != 1:
            raise StatementInvalid(f"{row.where}: exactly one of credit and debit is filled")
        amount, direction = nonzero[0]
        return amount, "CRDT" if direction == "CRDT" else "DBIT"

    def _balance(self, row: _Row, currency: str) -> int | None:
        text = row.get(self.layout.balance)
        if _MASKED.fullmatch(text):
            self.masked = True
            return None
        return _money(text, currency, row.where) if text else None

    def _counterparty(self, row: _Row) -> tuple[str | None, str | None]:
        layout = self.layout
        if layout.counterparty_combined:
            return _split_counterparty(row.get(layout.counterparty_combined))
        return row.get(layout.counterparty_name) or None, row.get(
            layout.counterparty_account
        ) or None

    def _reversal(self, row: _Row) -> bool:
        text = row.get(self.layout.reversal).lower()
        if text not in _BOOLEANS:
            raise StatementInvalid(f"{row.where}: reversal {text!r} is not true or false")
        return _BOOLEANS[text]

    def _extra(self, row: _Row) -> str | None:
        pairs = [(name, row.cells[i]) for name, i in self.extra if i < len(row.cells)]
        return (
            "; ".join(f"{name}={_value(value)}" for name, value in pairs if _value(value)) or None
        )

    def line(self, cells: list[str], number: int, where: str, keys: LineKeys) -> StatementLine:
        layout, row = self.layout, _Row(cells, self.columns, where)
        booked, booked_at = _parse_date(row.get(layout.date), where)
        booked_at = _parse_time(row.get(layout.time), where) or booked_at
        value_text = row.get(layout.value_date)
        currency_text = row.get(layout.currency) or self.settings.get("currency") or "CNY"
        currency = _currency(currency_text, where)
        amount, direction = self._amount(row, currency)
        balance = self._balance(row, currency)
        name, account = self._counterparty(row)
        own = row.get(layout.own_account) or self.settings.get("account") or None
        tx_id = row.get(layout.transaction_id) or None
        signed = amount if direction == "CRDT" else -amount
        return StatementLine(
            line=number,
            key=keys.next((own, currency, tx_id, booked, booked_at, signed, account, balance)),
            booking_date=booked,
            value_date=_parse_date(value_text, where)[0] if value_text else None,
            amount_fen=amount,
            currency=currency,
            credit_debit=direction,
            reversal=self._reversal(row),
            status=None,
            acct_svcr_ref=row.get(layout.bank_reference) or None,
            entry_ref=None,
            bank_transaction_code=None,
            batches=(),
            transactions=(),
            end_to_end_id=row.get(layout.end_to_end_id) or None,
            counterparty_account=account,
            counterparty_name=name,
            remittance_info=None,
            additional_info=self._extra(row),
            booking_time=booked_at,
            balance_after_fen=balance,
            transaction_id=tx_id,
            own_account=own,
        )


def _running_balances(
    lines: Sequence[StatementLine], currency: str
) -> tuple[list[Balance], bool | None, str | None]:
    """Opening and closing balances derived from the running balances, whether every pair
    of consecutive balances agrees with the amount between them, and a note. The file's
    order (oldest or newest first) is the one more pairs agree with; on a tie, the dates."""
    after = [line.balance_after_fen for line in lines if line.balance_after_fen is not None]
    if not lines or len(after) != len(lines):
        return [], None, None
    n = len(lines)
    up = sum(1 for k in range(1, n) if after[k] == after[k - 1] + lines[k].signed_fen)
    down = sum(1 for k in range(n - 1) if after[k] == after[k + 1] + lines[k].signed_fen)
    dates_down = (lines[0].booking_date or date.min) > (lines[-1].booking_date or date.min)
    newest_first = down > up or (down == up and dates_down)
    oldest, newest = (lines[-1], lines[0]) if newest_first else (lines[0], lines[-1])
    oldest_after, newest_after = (after[-1], after[0]) if newest_first else (after[0], after[-1])
    opening = oldest_after - oldest.signed_fen
    balances = [
        Balance("OPBD", opening, currency, oldest.booking_date, derived=True),
        Balance("CLBD", newest_after, currency, newest.booking_date, derived=True),
    ]
    agree = max(up, down)
    order = "newest first" if newest_first else "oldest first"
    note = f"balances derived from the running balance ({order}); {agree} of {n - 1} pairs agree"
    return balances, agree == n - 1, note


def _settings_balances(settings: dict[str, str], currency: str) -> list[Balance]:
    """``# opening_balance`` / ``# closing_balance`` rows (signed decimal yuan)."""
    balances = []
    for key, code in (("opening_balance", "OPBD"), ("closing_balance", "CLBD")):
        if settings.get(key):
            balances.append(Balance(code, _money(settings[key], currency, key), currency, None))
    return balances


def _statement(
    lines: Sequence[StatementLine],
    account: str | None,
    currency: str,
    statement_id: str,
    reading: _Reading,
) -> Statement:
    settings = reading.settings
    balances = _settings_balances(settings, currency) if reading.layout is OWN else []
    consistent: bool | None = None
    notes = ["running balances are masked: no balance check"] if reading.masked else []
    if not balances:
        balances, consistent, note = _running_balances(lines, currency)
        notes += [note] if note else []
    booked = [line.booking_date for line in lines if line.booking_date is not None]
    from_text, to_text = settings.get("from_date"), settings.get("to_date")
    return make_statement(
        statement_id=statement_id,
        account=account,
        currency=currency,
        from_date=_parse_date(from_text, "from_date")[0]
        if from_text
        else min(booked, default=None),
        to_date=_parse_date(to_text, "to_date")[0] if to_text else max(booked, default=None),
        balances=balances,
        lines=lines,
        notes=notes,
        running_balances_consistent=consistent,
    )


def _statements(lines: list[StatementLine], reading: _Reading, sha: str) -> list[Statement]:
    """One statement per (own account, currency), in the order they first appear."""
    settings = reading.settings
    groups: dict[tuple[str | None, str], list[StatementLine]] = {}
    for line in lines:
        groups.setdefault((line.own_account, line.currency), []).append(line)
    if not groups:  # no line: still the statement the settings describe
        currency = _currency(settings.get("currency") or "CNY", "currency")
        groups[(settings.get("account"), currency)] = []
    if len(groups) > MAX_STATEMENTS or (reading.layout is OWN and len(groups) > 1):
        raise StatementInvalid("one account and one currency per file in the README's layout")
    base = settings.get("statement_id") or f"csv:{reading.layout.name}:{sha[:16]}"
    return [
        _statement(group, account, currency, base if len(groups) == 1 else f"{base}:{n}", reading)
        for n, ((account, currency), group) in enumerate(groups.items(), start=1)
    ]


def _is_dated(cells: list[str], reading: _Reading) -> bool:
    text = _Row(cells, reading.columns, "").get(reading.layout.date)
    try:
        _parse_date(text, "")
    except StatementInvalid:
        return False
    return True


def _lines(
    body: list[list[str]], first_row: int, reading: _Reading, context: _Context, max_lines: int
) -> list[StatementLine]:
    """The data rows after the header as lines; rows after the last dated row are a trailer,
    kept verbatim; a row before it that is not a line is refused."""
    content = [i for i, cells in enumerate(body) if any(cells) and not _is_comment(cells)]
    last = max((i for i in content if _is_dated(body[i], reading)), default=-1)
    keys, lines = LineKeys(), list[StatementLine]()
    for index, cells in enumerate(body):
        if _is_comment(cells):
            _setting(cells, context, reading.layout)
        elif index > last and any(cells):
            context.skipped.append(_row_text(cells))
        elif any(cells):
            if len(lines) >= max_lines:
                raise StatementInvalid(f"more than {max_lines} lines in one file")
            where = f"row {first_row + index}"
            lines.append(reading.line(cells, len(lines) + 1, where, keys))
    return lines


def parse_csv(data: bytes, *, max_lines: int = MAX_LINES) -> ParsedStatement:
    """A CSV statement in the project's layout or a known bank export (module docstring).
    Raises ``StatementInvalid`` for undecodable text, no known header row, a bad date, an
    amount that is not exact decimal text (``12.345``, ``1,2,3``, ``abc``), or over
    ``max_lines`` lines."""
    rows = _rows(_decode(data), max_lines + MAX_EXTRA_ROWS)
    context = _Context(settings={}, skipped=[])
    header_index, layout = _find_header(rows, context)
    reading = _Reading(layout, rows[header_index], context)
    body = rows[header_index + 1 :]
    lines = _lines(body, header_index + 2, reading, context, max_lines)
    sha = file_sha256(data)
    return ParsedStatement(
        file_sha256=sha,
        format=f"csv:{layout.name}",
        statements=tuple(_statements(lines, reading, sha)),
        skipped_rows=tuple(context.skipped),
    )
