"""Column mappings of the CSV statement layouts ``treasury.bank_csv`` reads: the project's own
layout and the export layouts of Chinese banks (bank_csv/SOURCES.md in the shared fixtures).

A layout is data: the header cells that identify it (``signature``), which column holds the
booking date, the amount (two columns, a signed amount, or an amount plus a 借贷 flag), the
running balance, the counterparty, the bank's transaction id. Header cells are compared after
``header_key`` (no whitespace, ASCII parentheses and colon, lower case), so ``日 志 号``,
``借方发生额（支取）`` and ``借方发生额(支取)`` are the same column. When several layouts match
a header row, the one with the longest signature wins (ICBC v2 over v1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SPACE = re.compile(r"\s+")
_FULL_WIDTH = str.maketrans({"（": "(", "）": ")", "：": ":", "\u3000": " "})


def header_key(cell: str) -> str:
    """A header cell as compared: ``借方发生额（支取） `` -> ``借方发生额(支取)``."""
    return _SPACE.sub("", cell.translate(_FULL_WIDTH)).lower()


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """One CSV column set. Column names are as the bank writes them; every field naming a
    column is optional except ``date``. The amount is read from ``credit``/``debit`` (first
    non-empty of each, at most one side non-zero), else ``amount`` with the direction from
    the first ``flags`` column present, else ``amount`` signed (negative is a debit)."""

    name: str
    bank: str
    signature: tuple[str, ...]
    date: str
    time: str | None = None
    value_date: str | None = None
    credit: tuple[str, ...] = ()
    debit: tuple[str, ...] = ()
    amount: str | None = None
    flags: tuple[str, ...] = ()
    currency: str | None = None
    balance: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    counterparty_combined: str | None = None  # "张三 6222..." in one cell (CMB, ABC)
    transaction_id: str | None = None
    end_to_end_id: str | None = None
    bank_reference: str | None = None
    reversal: str | None = None
    own_account: str | None = None
    strict_columns: bool = False  # the project's layout: an unknown column is refused
    keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        assert self.date in self.signature, self.name
        assert (self.credit and self.debit) or self.amount, self.name
        object.__setattr__(self, "keys", frozenset(map(header_key, self.signature)))

    def column_names(self) -> list[str]:
        """Every column this layout reads, as the bank names it."""
        single = (
            self.date, self.time, self.value_date, self.amount, self.currency, self.balance,
            self.counterparty_name, self.counterparty_account, self.counterparty_combined,
            self.transaction_id, self.end_to_end_id, self.bank_reference, self.reversal,
            self.own_account,
        )  # fmt: skip
        return [n for n in single if n] + [*self.credit, *self.debit, *self.flags]


OWN = CsvLayout(
    name="voucher-ledger",
    bank="the project's own layout (README, treasury.bank_csv)",
    signature=("booking_date", "amount", "credit_debit"),
    date="booking_date",
    value_date="value_date",
    amount="amount",
    flags=("credit_debit",),
    currency="currency",
    balance="balance",
    counterparty_name="counterparty_name",
    counterparty_account="counterparty_account",
    end_to_end_id="end_to_end_id",
    bank_reference="reference",
    reversal="reversal",
    strict_columns=True,
)

_ICBC_V1 = ("交易日期", "摘要", "交易场所", "记账金额(收入)", "记账金额(支出)", "余额", "对方户名")

PERSONAL = (
    CsvLayout(
        name="icbc-debit-v1",
        bank="ICBC 工商银行 明细查询文件下载 (older, personal)",
        signature=_ICBC_V1,
        date="交易日期",
        credit=("记账金额(收入)", "交易金额(收入)"),
        debit=("记账金额(支出)", "交易金额(支出)"),
        currency="记账币种",
        balance="余额",
        counterparty_name="对方户名",
    ),
    CsvLayout(
        name="icbc-debit-v2",
        bank="ICBC 工商银行 明细查询文件下载 (personal)",
        signature=(*_ICBC_V1, "交易详情", "对方账户"),
        date="交易日期",
        credit=("记账金额(收入)", "交易金额(收入)"),
        debit=("记账金额(支出)", "交易金额(支出)"),
        currency="记账币种",
        balance="余额",
        counterparty_name="对方户名",
        counterparty_account="对方账户",
    ),
    CsvLayout(
        name="cmb-debit",
        bank="CMB 招商银行 (personal)",
        signature=("记账日期", "货币", "交易金额", "联机余额", "交易摘要", "对手信息"),
        date="记账日期",
        amount="交易金额",
        currency="货币",
        balance="联机余额",
        counterparty_combined="对手信息",
    ),
    CsvLayout(
        name="abc-debit",
        bank="ABC 农业银行 (personal)",
        signature=(
            "交易日期",
            "交易时间",
            "交易摘要",
            "交易金额",
            "本次余额",
            "对手信息",
            "日志号",
        ),
        date="交易日期",
        time="交易时间",
        amount="交易金额",
        balance="本次余额",
        counterparty_combined="对手信息",
        transaction_id="日志号",
    ),
    CsvLayout(
        name="boc-debit",
        bank="BOC 中国银行 交易流水明细单 (personal)",
        signature=("记账日期", "记账时间", "币别", "金额", "余额", "对方账户名", "对方卡号/账号"),
        date="记账日期",
        time="记账时间",
        amount="金额",
        currency="币别",
        balance="余额",
        counterparty_name="对方账户名",
        counterparty_account="对方卡号/账号",
        own_account="借记卡号",
    ),
    CsvLayout(
        name="bocom-debit",
        bank="BOCOM 交通银行 (personal)",
        signature=("交易日期", "交易时间", "借贷", "交易金额", "余额", "对方账号", "对方户名"),
        date="交易日期",
        time="交易时间",
        amount="交易金额",
        flags=("借贷",),
        balance="余额",
        counterparty_name="对方户名",
        counterparty_account="对方账号",
    ),
)

CORPORATE = (
    CsvLayout(
        name="icbc01",
        bank="ICBC 工商银行 corporate (转出/转入)",
        signature=("交易时间", "本方账号", "对方单位", "对方账号", "转出金额", "转入金额", "余额"),
        date="交易时间",
        credit=("转入金额",),
        debit=("转出金额",),
        balance="余额",
        counterparty_name="对方单位",
        counterparty_account="对方账号",
        own_account="本方账号",
    ),
    CsvLayout(
        name="icbc02",
        bank="ICBC 工商银行 corporate (借方/贷方发生额)",
        signature=("日期", "对方户名", "对方账号", "借方发生额", "贷方发生额", "余额"),
        date="日期",
        credit=("贷方发生额",),
        debit=("借方发生额",),
        balance="余额",
        counterparty_name="对方户名",
        counterparty_account="对方账号",
    ),
    CsvLayout(
        name="icbc03",
        bank="ICBC 工商银行 corporate (借贷标志 + 发生额)",
        signature=("交易时间", "本方账号", "对方单位", "对方账号", "借贷标志", "发生额", "余额"),
        date="交易时间",
        amount="发生额",
        flags=("借贷标志",),
        balance="余额",
        counterparty_name="对方单位",
        counterparty_account="对方账号",
        own_account="本方账号",
    ),
    CsvLayout(
        name="ccb01",
        bank="CCB 建设银行 corporate (发生额/元, 借贷方向 if present, else signed)",
        signature=(
            *("账户明细编号-交易流水号", "交易时间", "本方账号", "对方户名", "对方账号"),
            *("发生额/元", "余额/元"),
        ),
        date="交易时间",
        amount="发生额/元",
        flags=("借贷方向", "借贷标志", "借贷"),
        balance="余额/元",
        counterparty_name="对方户名",
        counterparty_account="对方账号",
        transaction_id="账户明细编号-交易流水号",
        own_account="本方账号",
    ),
    CsvLayout(
        name="ccb02",
        bank="CCB 建设银行 / CDB 国家开发银行 corporate (借方/贷方发生额)",
        signature=(
            *("账户明细编号-交易流水号", "交易时间", "账号", "对方户名", "对方账号"),
            *("借方发生额(支取)", "贷方发生额(收入)", "余额"),
        ),
        date="交易时间",
        credit=("贷方发生额(收入)",),
        debit=("借方发生额(支取)",),
        balance="余额",
        counterparty_name="对方户名",
        counterparty_account="对方账号",
        transaction_id="账户明细编号-交易流水号",
        own_account="账号",
    ),
    CsvLayout(
        name="cmb01",
        bank="CMB 招商银行 corporate",
        signature=(
            *("流水号", "交易日", "交易时间", "收(付)方名称", "收(付)方账号"),
            *("借方金额", "贷方金额", "余额"),
        ),
        date="交易日",
        time="交易时间",
        credit=("贷方金额",),
        debit=("借方金额",),
        balance="余额",
        counterparty_name="收(付)方名称",
        counterparty_account="收(付)方账号",
        transaction_id="流水号",
    ),
)

LAYOUTS = (OWN, *PERSONAL, *CORPORATE)


def find_layout(cells: list[str]) -> CsvLayout | None:
    """The layout whose signature the row holds (the longest when several do), or None."""
    keys = {header_key(cell) for cell in cells if cell}
    matches = [layout for layout in LAYOUTS if layout.keys <= keys]
    return max(matches, key=lambda layout: len(layout.keys), default=None)
