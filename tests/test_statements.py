"""Bank statements in: every published camt.053 fixture and every Chinese bank CSV fixture
parses with the right lines, amounts in minor units, directions, reversals, batches and
balances (the numbers are those of ../shared/fixtures/*/SOURCES.md, checked against the
files); the project's own CSV layout and the corporate column sets; and every malformed file
is ``statement-invalid``. The fixtures are read where they lie, never copied here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import LedgerError
from treasury.money import (
    MoneyTextInvalid,
    decimal_text_to_minor,
    grouped_text_to_minor,
    minor_to_decimal_text,
    minor_unit_exponent,
)
from treasury.statements import ParsedStatement, Statement, StatementInvalid, parse_statement

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
CAMT = FIXTURES / "camt053"
BANK_CSV = FIXTURES / "bank_csv"
CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def camt(name: str) -> ParsedStatement:
    return parse_statement((CAMT / name).read_bytes(), "application/xml")


def bank_csv(name: str) -> ParsedStatement:
    return parse_statement((BANK_CSV / name).read_bytes(), "text/csv")


def only(parsed: ParsedStatement) -> Statement:
    assert len(parsed.statements) == 1
    return parsed.statements[0]


def own_csv(text: str) -> ParsedStatement:
    return parse_statement(text.encode("utf-8"), "text/csv")


# --- money text ---------------------------------------------------------------------------


def test_decimal_text_becomes_exact_minor_units_in_the_currency_s_unit() -> None:
    assert decimal_text_to_minor("1405.31", 2) == 140531
    assert decimal_text_to_minor("88667.8", 2) == 8866780
    assert decimal_text_to_minor("200", 2) == 20000
    assert decimal_text_to_minor("2700", minor_unit_exponent("JPY")) == 2700
    assert decimal_text_to_minor("1.234", minor_unit_exponent("KWD")) == 1234


@pytest.mark.parametrize("text", ["12.345", "1,2,3", "abc", "", "-1.00", "1e3", "0x10", "1.2.3"])
def test_decimal_text_that_is_not_an_exact_amount_is_refused(text: str) -> None:
    with pytest.raises(MoneyTextInvalid):
        decimal_text_to_minor(text, 2)


@pytest.mark.parametrize("text", ["12.345", "1,2,3", "abc", "1,23.00", "--1", "1.", ".5"])
def test_spreadsheet_text_that_is_not_an_exact_amount_is_refused(text: str) -> None:
    with pytest.raises(MoneyTextInvalid):
        grouped_text_to_minor(text, 2)


def test_spreadsheet_text_keeps_its_sign_and_thousands_separators() -> None:
    assert grouped_text_to_minor("-2,600.00", 2) == -260000
    assert grouped_text_to_minor("+10000.00", 2) == 1000000
    assert grouped_text_to_minor("1,234,567.8", 2) == 123456780


def test_minor_units_follow_iso_4217_and_unknown_codes_get_two_decimals() -> None:
    assert [minor_unit_exponent(c) for c in ("CNY", "EUR", "CHF", "SEK", "USD")] == [2] * 5
    assert [minor_unit_exponent(c) for c in ("JPY", "KRW", "BHD", "KWD")] == [0, 0, 3, 3]
    assert minor_unit_exponent("XYZ") == 2
    with pytest.raises(MoneyTextInvalid):
        minor_unit_exponent("yuan")


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from([0, 2, 3]))
def test_minor_units_round_trip_through_decimal_text_exactly(amount: int, exponent: int) -> None:
    text = minor_to_decimal_text(amount, exponent)

    assert decimal_text_to_minor(text, exponent) == amount
    assert grouped_text_to_minor(text, exponent) == amount


# --- camt.053: the nine published files -------------------------------------------------


@dataclass(frozen=True)
class Camt:
    """What SOURCES.md says one fixture holds (per statement where it has several)."""

    file: str
    format: str
    currency: str
    entries: tuple[int, ...]
    transactions: int
    credits: tuple[int, int]  # count, total in minor units
    debits: tuple[int, int]
    reversals: int
    batch_entries: int
    end_to_end_ids: int
    opening_fen: tuple[int, ...]
    closing_fen: tuple[int, ...]
    add_up: bool
    difference_fen: int
    explained_fen: int


CAMT_FILES = [
    Camt("oca-bank-statement-import__test-camt053.xml", "camt.053.001.02", "EUR", (3,), 4,
         (1, 140531), (2, 141830), 1, 1, 4, (1556827,), (1512112,), False, -43416, 0),
    Camt("genkgo-camt__camt053.v2.multi.statement.xml", "camt.053.001.02", "EUR", (1, 1), 2,
         (1, 885), (1, 700), 0, 0, 2, (1815, 2700), (2700, 2000), True, 0, 0),
    Camt("genkgo-camt__camt053.v8.xml", "camt.053.001.08", "EUR", (1,), 1,
         (1, 885), (0, 0), 0, 0, 1, (1815,), (-2700,), False, -5400, 0),
    Camt("moov-iso20022__FFFS_FI_camt_053_sample.xml", "camt.053.001.02", "EUR", (10,), 12,
         (6, 2307500), (4, 943017), 0, 7, 1, (1000000,), (2364483,), True, 0, 0),
    Camt("dvbern-iso20022__ISO_Business_Sample_camt.053.001.04.xml", "camt.053.001.04", "SEK",
         (3,), 2, (2, 13567850), (1, 20000000), 0, 1, 2, (50000000,), (43567850,), True, 0, 0),
    Camt("moov-iso20022__PostFinance_camt.053.001.04.xml", "camt.053.001.04", "CHF", (5,), 5,
         (4, 473372), (1, 7770), 0, 0, 0, (21199319,), (21511221,), False, -153700, -153700),
    Camt("dvbern-iso20022__PostFinance_camt.053.001.04_2016053100163801.xml", "camt.053.001.04",
         "CHF", (13,), 32, (5, 181056), (8, 127295), 2, 7, 5, (32215216,), (32268977,),
         True, 0, 0),
    Camt("subite-camt-to-coda__LT_camt.053.001.08_2024-04-11.xml", "camt.053.001.08", "EUR",
         (15, 0), 15, (3, 94050525), (12, 520968501), 0, 15, 0, (2146383035, 280155),
         (1719465059, 280155), True, 0, 0),
    Camt("subite-camt-to-coda__BE_camt.053.001.02_202412.xml", "camt.053.001.02", "EUR", (264,),
         264, (3, 10040000), (261, 14597401), 0, 0, 264, (8753912,), (4196511,), True, 0, 0),
]  # fmt: skip


def test_the_table_covers_every_camt053_fixture_in_the_shared_folder() -> None:
    assert {c.file for c in CAMT_FILES} == {p.name for p in CAMT.glob("*.xml")}


@pytest.mark.parametrize("expected", CAMT_FILES, ids=lambda c: c.file.split("__")[0])
def test_every_camt053_fixture_parses_as_its_sources_describe(expected: Camt) -> None:
    parsed = camt(expected.file)
    lines = parsed.lines

    assert parsed.format == expected.format
    assert tuple(len(s.lines) for s in parsed.statements) == expected.entries
    assert sum(len(line.transactions) for line in lines) == expected.transactions
    assert (
        sum(s.credit_count for s in parsed.statements),
        sum(s.credit_total_fen for s in parsed.statements),
    ) == expected.credits
    assert (
        sum(s.debit_count for s in parsed.statements),
        sum(s.debit_total_fen for s in parsed.statements),
    ) == expected.debits
    assert sum(line.reversal for line in lines) == expected.reversals
    assert sum(line.is_batch for line in lines) == expected.batch_entries
    e2e = [t.end_to_end_id for x in lines for t in x.transactions if t.end_to_end_id]
    assert len(e2e) == expected.end_to_end_ids
    assert {s.currency for s in parsed.statements} == {expected.currency}
    assert tuple(s.opening_balance_fen for s in parsed.statements) == expected.opening_fen
    assert tuple(s.closing_balance_fen for s in parsed.statements) == expected.closing_fen
    assert {s.balances_add_up for s in parsed.statements} == {expected.add_up}
    assert sum(s.difference_fen or 0 for s in parsed.statements) == expected.difference_fen
    assert sum(s.explained_difference_fen or 0 for s in parsed.statements) == expected.explained_fen


@pytest.mark.parametrize("expected", CAMT_FILES, ids=lambda c: c.file.split("__")[0])
def test_nothing_of_a_camt053_file_is_lost_every_entry_becomes_a_numbered_line(
    expected: Camt,
) -> None:
    data = (CAMT / expected.file).read_bytes()

    parsed = parse_statement(data, "application/xml")

    assert parsed.line_count == data.count(b"<Ntry>")
    assert [line.line for line in parsed.lines] == list(range(1, parsed.line_count + 1))
    assert len({line.key for line in parsed.lines}) == parsed.line_count


def test_the_oca_file_does_not_add_up_and_its_reversal_is_not_flipped() -> None:
    statement = only(camt("oca-bank-statement-import__test-camt053.xml"))
    reversal = statement.lines[1]

    assert statement.balances_add_up is False
    assert statement.difference_fen == -43416
    assert (reversal.reversal, reversal.credit_debit, reversal.amount_fen) == (True, "DBIT", 66405)
    assert [(b.number_of_transactions, b.total_fen) for b in reversal.batches] == [(2, 66405)]
    assert [t.amount_fen for t in reversal.transactions] == [56405, 10000]
    assert reversal.transactions[0].mandate_id == "NL22ZZZ524885430000-C0125.1"
    assert reversal.transactions[0].return_reason == "AC06"
    assert reversal.end_to_end_id == "TESTBANK/NL/20141229/01206408"


def test_genkgo_v8_has_a_debit_closing_balance_and_keeps_every_balance_with_its_currency() -> None:
    statement = only(camt("genkgo-camt__camt053.v8.xml"))

    assert [(b.type_code, b.amount_fen, b.currency) for b in statement.balances] == [
        ("OPBD", 1815, "EUR"),
        ("CLBD", -2700, "SEK"),
        ("OPAV", 3500, "CHF"),
        ("CLAV", -2700, "JPY"),
    ]
    assert statement.closing_balance_fen == -2700
    assert statement.balances_add_up is False
    assert statement.lines[0].end_to_end_id == "MUELL/FINP/RA12345"
    assert statement.lines[0].booking_date == dt.date(2014, 12, 31)  # from BookgDt/DtTm
    assert statement.lines[0].counterparty_name == "NAME NAME"  # Dbtr/Pty/Nm in .001.08


def test_postfinance_2020_explains_its_difference_by_the_credit_valued_after_closing() -> None:
    statement = only(camt("moov-iso20022__PostFinance_camt.053.001.04.xml"))
    late = [line for line in statement.lines if line.value_date == dt.date(2020, 11, 25)]

    assert statement.difference_fen == -153700
    assert statement.explained_difference_fen == -153700
    assert [(x.amount_fen, x.credit_debit) for x in late] == [(153700, "CRDT")]
    forward = [b.amount_fen for b in statement.balances if b.type_code == "FWAV"]
    assert forward == [21199319 + sum(x.signed_fen for x in statement.lines)]  # OPBD + all


def test_a_bank_reference_is_not_a_line_identity_two_lines_share_one() -> None:
    lines = only(camt("moov-iso20022__PostFinance_camt.053.001.04.xml")).lines
    shared = [line for line in lines if line.acct_svcr_ref == "07582000303KBMSU"]

    assert len(shared) == 2
    assert shared[0].key != shared[1].key


def test_the_same_file_gives_the_same_hash_and_line_keys_every_time() -> None:
    data = (CAMT / "dvbern-iso20022__PostFinance_camt.053.001.04_2016053100163801.xml").read_bytes()

    first, second = parse_statement(data, "application/xml"), parse_statement(data, "text/xml")

    assert first.file_sha256 == second.file_sha256 and len(first.file_sha256) == 64
    assert [x.key for x in first.lines] == [x.key for x in second.lines]


def test_postfinance_2016_reversals_are_refunds_booked_as_debits() -> None:
    lines = only(camt("dvbern-iso20022__PostFinance_camt.053.001.04_2016053100163801.xml")).lines

    reversals = [(x.amount_fen, x.credit_debit, x.end_to_end_id) for x in lines if x.reversal]

    assert reversals == [(600, "DBIT", "EndToEnd-2B6C-CHDDBB5"), (1553, "DBIT", "E2E-1-1-16030913")]


def test_the_counterparty_of_a_debit_is_its_creditor_and_notprovided_is_no_reference() -> None:
    statement = only(camt("subite-camt-to-coda__BE_camt.053.001.02_202412.xml"))
    first = statement.lines[0]

    assert statement.account == "BE68793230773034"
    assert (first.credit_debit, first.amount_fen) == ("DBIT", 750)
    assert (first.counterparty_name, first.counterparty_account) == (
        "Nova Holdings",
        "BE96444908270905",
    )
    assert first.end_to_end_id == "E2ETNFCXQJX16566916"
    assert first.transactions[0].instruction_id == "NOTPROVIDED"  # kept in the detail
    assert first.remittance_info == "Settlement SKRTEX9280"
    assert first.bank_transaction_code == "PMNT/ICDT/ISCT"
    assert (statement.from_date, statement.to_date) == (dt.date(2024, 12, 1), dt.date(2024, 12, 31))


def test_the_iso_sample_account_without_iban_is_its_other_id() -> None:
    statement = only(camt("dvbern-iso20022__ISO_Business_Sample_camt.053.001.04.xml"))

    assert statement.account == "50000000054910000003"
    assert statement.currency == "SEK"


def test_balances_without_credit_debit_indicator_are_read_as_credits_with_a_note() -> None:
    parsed = camt("subite-camt-to-coda__LT_camt.053.001.08_2024-04-11.xml")
    first, second = parsed.statements

    assert "balance OPBD has no CdtDbtInd: read as a credit" in first.notes
    assert second.lines == () and second.balances_add_up is True
    assert first.from_date == dt.date(2024, 4, 11)  # no FrToDt, no BookgDt: the balance date
    assert [line.batches[0].number_of_transactions for line in first.lines][:4] == [3, 4, 4, 134]


def test_lines_are_numbered_across_the_statements_of_one_message() -> None:
    parsed = camt("genkgo-camt__camt053.v2.multi.statement.xml")

    assert [[x.line for x in s.lines] for s in parsed.statements] == [[1], [2]]
    assert [s.statement_id for s in parsed.statements] == [
        "253EURNL26VAYB8060476890",
        "254EURNL26VAYB8060476890",
    ]


# --- camt.053: what is refused --------------------------------------------------------------


def minimal_camt(entry_amount: str = "8.85", currency: str = "EUR", ns: str = CAMT_NS) -> bytes:
    return f"""<?xml version="1.0"?><Document xmlns="{ns}"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2026-04-01T00:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S</Id><Acct><Id><IBAN>NL26VAYB8060476890</IBAN></Id></Acct>
<Ntry><Amt Ccy="{currency}">{entry_amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd></Ntry>
</Stmt></BkToCstmrStmt></Document>""".encode()


def test_a_minimal_statement_without_balances_parses_with_no_balance_check() -> None:
    statement = only(parse_statement(minimal_camt(), "application/xml"))

    assert (statement.lines[0].amount_fen, statement.balances_add_up) == (885, None)
    assert statement.from_date == dt.date(2026, 4, 1)  # the message's creation date


BOMB = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt>
<Id>&lol3;</Id></Stmt></BkToCstmrStmt></Document>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt>
<Id>&x;</Id></Stmt></BkToCstmrStmt></Document>"""
BE_FILE = CAMT / "subite-camt-to-coda__BE_camt.053.001.02_202412.xml"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BE_FILE.read_bytes()[:200_000], id="truncated"),
        pytest.param(minimal_camt()[:-20], id="truncated-at-the-end"),
        pytest.param(BOMB, id="entity-bomb"),
        pytest.param(XXE, id="external-entity"),
        pytest.param(
            minimal_camt(ns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02"), id="camt054"
        ),
        pytest.param(
            minimal_camt(ns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"), id="pain001"
        ),
        pytest.param(minimal_camt().replace(b"Document", b"Dokument"), id="wrong-root"),
        pytest.param(b"<Document><BkToCstmrStmt/></Document>", id="no-namespace"),
        pytest.param(minimal_camt(entry_amount="8.855"), id="three-decimals-in-eur"),
        pytest.param(minimal_camt(entry_amount="27.5", currency="JPY"), id="decimals-in-jpy"),
        pytest.param(minimal_camt(entry_amount="-8.85"), id="negative-amount"),
        pytest.param(minimal_camt(entry_amount="8,85"), id="comma-amount"),
        pytest.param(minimal_camt().replace(b"CRDT", b"CREDIT"), id="bad-indicator"),
        pytest.param(minimal_camt().replace(b"<Stmt><Id>S</Id>", b"<Stmt>"), id="no-statement-id"),
        pytest.param(b"<Document xmlns='" + CAMT_NS.encode() + b"'/>", id="no-statement"),
        pytest.param(b"not xml at all", id="not-xml"),
    ],
)
def test_an_unreadable_camt053_file_is_statement_invalid(data: bytes) -> None:
    with pytest.raises(StatementInvalid):
        parse_statement(data, "application/xml")


@pytest.mark.parametrize("data", [b"", b"  \r\n\t "])
def test_an_empty_body_is_statement_invalid(data: bytes) -> None:
    for content_type in ("application/xml", "text/csv", ""):
        with pytest.raises(StatementInvalid):
            parse_statement(data, content_type)


def test_statement_invalid_is_a_ledger_error_with_its_slug_and_status() -> None:
    with pytest.raises(StatementInvalid) as caught:
        parse_statement(b"", "text/csv")

    assert isinstance(caught.value, LedgerError)
    assert (caught.value.slug, caught.value.http_status) == ("statement-invalid", 422)
    assert caught.value.title == "Bank statement cannot be read"


def test_a_file_over_the_size_or_line_limit_is_statement_invalid() -> None:
    data = BE_FILE.read_bytes()

    with pytest.raises(StatementInvalid, match="bytes"):
        parse_statement(data, "application/xml", max_bytes=len(data) - 1)
    with pytest.raises(StatementInvalid, match="entries"):
        parse_statement(data, "application/xml", max_lines=263)


def test_the_content_type_picks_the_parser_and_an_unknown_one_is_refused() -> None:
    data = minimal_camt()

    assert parse_statement(data, "application/xml; charset=utf-8").format == "camt.053.001.02"
    assert parse_statement(data, "application/octet-stream").format == "camt.053.001.02"
    with pytest.raises(StatementInvalid, match="content type"):
        parse_statement(data, "application/json")
    with pytest.raises(StatementInvalid):
        parse_statement(data, "text/csv")


# --- CSV: the six bank export fixtures -------------------------------------------------------


def direction_totals(statement: Statement) -> tuple[int, int, int, int]:
    return (
        statement.credit_count,
        statement.credit_total_fen,
        statement.debit_count,
        statement.debit_total_fen,
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_icbc_exports_skip_preamble_and_trailer_and_have_no_balance_check(version: str) -> None:
    parsed = bank_csv(f"deb-sig__icbc_debit_{version}.csv")
    statement = only(parsed)
    first = statement.lines[0]

    assert parsed.format == f"csv:icbc-debit-{version}"
    assert direction_totals(statement) == (5, 284174, 6, 424108)
    assert (first.booking_date, first.amount_fen, first.credit_debit) == (
        dt.date(2023, 5, 2),
        1340,
        "DBIT",
    )
    assert first.counterparty_name == "深圳市财付通支付科技有限公司"
    assert statement.account == "1234****9876"  # from the 卡号 preamble row
    assert (statement.currency, statement.balances_add_up) == ("CNY", None)
    assert statement.opening_balance_fen is None and statement.closing_balance_fen is None
    assert parsed.skipped_rows[0] == "明细查询文件下载"
    assert parsed.skipped_rows[-1].startswith("人民币合计")


def test_cmb_signed_amounts_with_thousands_separators_and_hand_made_balances() -> None:
    statement = only(bank_csv("deb-sig__cmb_debit.csv"))
    first, second = statement.lines[:2]

    assert direction_totals(statement) == (1, 123400, 4, 201314)
    assert (first.amount_fen, first.credit_debit, first.balance_after_fen) == (
        123400,
        "CRDT",
        127166,
    )
    assert (second.amount_fen, second.credit_debit) == (100000, "DBIT")
    assert (second.counterparty_name, second.counterparty_account) == ("张三", "66666666666666")
    assert (statement.opening_balance_fen, statement.closing_balance_fen) == (3766, 121824)
    assert statement.balances_add_up is False


def test_abc_compact_dates_explicit_plus_signs_and_a_zero_line_are_kept() -> None:
    statement = only(bank_csv("deb-sig__abc_debit.csv"))
    lines = statement.lines

    assert direction_totals(statement) == (3, 1000001, 2, 1235589)
    assert (lines[0].booking_date, lines[0].booking_time) == (
        dt.date(2024, 1, 1),
        dt.time(12, 34, 56),
    )
    assert (lines[0].amount_fen, lines[0].credit_debit, lines[0].transaction_id) == (
        1000000,
        "CRDT",
        "369396693",
    )
    assert lines[2].counterparty_account == "12341234123412341"
    assert (lines[4].amount_fen, lines[4].credit_debit) == (0, "CRDT")
    assert lines[3].transaction_id == lines[4].transaction_id == "0000000000"
    assert lines[3].key != lines[4].key
    assert statement.balances_add_up is False


def test_boc_running_balances_all_agree_so_the_derived_balances_add_up() -> None:
    parsed = bank_csv("deb-sig__boc_debit.csv")
    statement = only(parsed)

    assert len(statement.lines) == 17
    assert direction_totals(statement) == (4, 982100, 13, 939430)
    assert statement.balances_add_up is True
    assert (statement.opening_balance_fen, statement.closing_balance_fen) == (281358, 324028)
    assert all(b.derived for b in statement.balances)
    assert "16 of 16 pairs agree" in statement.notes[0]
    assert statement.account == "3167"  # 借记卡号
    assert statement.lines[7].amount_fen == 260000  # "-2,600.00"
    assert statement.lines[0].counterparty_account == "6226******5669"
    assert parsed.skipped_rows == ("中国银行交易流水明细单",)


def test_bocom_direction_comes_from_the_debit_credit_flag_column() -> None:
    statement = only(bank_csv("deb-sig__bocom_debit.csv"))

    assert [(x.credit_debit, x.amount_fen) for x in statement.lines] == [
        ("CRDT", 123),
        ("DBIT", 321),
        ("CRDT", 2),
        ("CRDT", 1000),
        ("DBIT", 1000),
        ("DBIT", 10079),
    ]
    assert statement.balances_add_up is False
    assert "0 of 5 pairs agree" in statement.notes[0]


def test_a_gb18030_export_reads_the_same_as_its_utf8_original() -> None:
    data = (BANK_CSV / "deb-sig__boc_debit.csv").read_bytes()

    gbk = parse_statement(data.decode("utf-8").encode("gb18030"), "text/csv")

    assert [x.key for x in gbk.lines] == [x.key for x in bank_csv("deb-sig__boc_debit.csv").lines]
    assert only(gbk).balances_add_up is True


# --- CSV: the project's own layout -----------------------------------------------------------

OWN_HEADER = (
    "booking_date,value_date,amount,currency,credit_debit,end_to_end_id,"
    "counterparty_account,counterparty_name,reference,reversal"
)
OWN_FILE = f"""# account=6222020200001234567
# opening_balance=10000.00
{OWN_HEADER}
2026-04-01,2026-04-02,1234.56,CNY,DBIT,PO-7F3A9C,6222000011112222,某某科技服务有限公司,BK0001,false
2026-04-01,,50.00,CNY,CRDT,,,退款,BK0002,
2026-04-03,,"1,000.00",CNY,DBIT,PO-7F3A9C,6222000011112222,某某科技服务有限公司,BK0003,true
# closing_balance=7815.44
"""


def test_the_own_layout_reads_every_column_and_its_balance_rows() -> None:
    parsed = own_csv(OWN_FILE)
    statement = only(parsed)
    first, _, reversal = statement.lines

    assert parsed.format == "csv:voucher-ledger"
    assert statement.account == "6222020200001234567"
    assert (statement.opening_balance_fen, statement.closing_balance_fen) == (1000000, 781544)
    assert statement.balances_add_up is True
    assert (first.booking_date, first.value_date) == (dt.date(2026, 4, 1), dt.date(2026, 4, 2))
    assert (first.amount_fen, first.credit_debit, first.end_to_end_id) == (
        123456,
        "DBIT",
        "PO-7F3A9C",
    )
    assert (first.counterparty_account, first.acct_svcr_ref) == ("6222000011112222", "BK0001")
    assert (reversal.reversal, reversal.amount_fen) == (True, 100000)


def test_an_own_layout_file_whose_closing_balance_is_wrong_is_kept_and_flagged() -> None:
    statement = only(own_csv(OWN_FILE.replace("7815.44", "7815.45")))

    assert statement.balances_add_up is False
    assert statement.difference_fen == 1
    assert len(statement.lines) == 3


@pytest.mark.parametrize("amount", ["12.345", '"1,2,3"', "abc", "-12.00", "", "12,34"])
def test_an_own_layout_file_with_a_bad_amount_is_statement_invalid(amount: str) -> None:
    text = f"{OWN_HEADER}\n2026-04-01,,{amount},CNY,DBIT,,,,,\n"

    with pytest.raises(StatementInvalid):
        own_csv(text)


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("2026-13-01,,1.00,CNY,DBIT,,,,,", "month 13"),
        ("2026-04-01,,1.00,CNY,OUT,,,,,", "unknown direction"),
        ("2026-04-01,,1.00,CNY,DBIT,,,,,maybe", "reversal not a boolean"),
        ("2026-04-01,,1.00,yuan,DBIT,,,,,", "unknown currency"),
    ],
)
def test_an_own_layout_row_that_cannot_be_read_is_statement_invalid(row: str, why: str) -> None:
    text = f"{OWN_HEADER}\n2026-04-02,,1.00,CNY,DBIT,,,,,\n{row}\n2026-04-03,,1.00,CNY,DBIT,,,,,\n"

    with pytest.raises(StatementInvalid):
        own_csv(text)


def test_an_unknown_column_or_setting_in_the_own_layout_is_refused() -> None:
    with pytest.raises(StatementInvalid, match="unknown columns"):
        own_csv("booking_date,amount,credit_debit,end_to_endid\n2026-04-01,1.00,DBIT,PO-1\n")
    with pytest.raises(StatementInvalid, match="unknown setting"):
        own_csv("# openingbalance=1.00\nbooking_date,amount,credit_debit\n2026-04-01,1.00,DBIT\n")


def test_two_currencies_in_one_own_layout_file_are_refused() -> None:
    text = (
        "booking_date,amount,currency,credit_debit\n"
        "2026-04-01,1.00,CNY,DBIT\n"
        "2026-04-01,1,JPY,DBIT\n"
    )

    with pytest.raises(StatementInvalid, match="one currency"):
        own_csv(text)


def test_identical_lines_without_a_balance_stay_two_lines_with_stable_keys() -> None:
    text = "booking_date,amount,credit_debit\n2026-04-01,9.90,DBIT\n2026-04-01,9.90,DBIT\n"

    first, again = own_csv(text), own_csv(text)

    assert len({x.key for x in first.lines}) == 2
    assert [x.key for x in first.lines] == [x.key for x in again.lines]
    assert only(first).balances_add_up is None


def test_a_utf8_bom_and_spreadsheet_padding_are_accepted() -> None:
    text = '\ufeffbooking_date , amount ,credit_debit\r\n 2026/4/1 ,"  1,234.50\t", DBIT \r\n,,\r\n'

    statement = only(own_csv(text))

    assert [(x.booking_date, x.amount_fen) for x in statement.lines] == [
        (dt.date(2026, 4, 1), 123450)
    ]


def test_a_csv_without_a_known_header_row_is_statement_invalid() -> None:
    with pytest.raises(StatementInvalid, match="no known header"):
        own_csv("date,sum\n2026-04-01,1.00\n")


def test_undecodable_bytes_and_nul_characters_are_statement_invalid() -> None:
    with pytest.raises(StatementInvalid):
        parse_statement(b"booking_date,amount,credit_debit\n\xff\xfe\xfa,1.00,DBIT\n", "text/csv")
    with pytest.raises(StatementInvalid):
        own_csv("booking_date,amount,credit_debit\n2026-04-01,1.00\x00,DBIT\n")


# --- CSV: corporate (对公) column sets, synthetic samples -------------------------------------


def test_icbc01_reads_transfer_out_and_in_columns_and_the_own_account() -> None:
    text = """交易时间,本方账号,对方单位,对方账号,摘要,附言,用途,转出金额,转入金额,余额
2026-04-01 09:30:00,1602000000000000001,某某科技服务有限公司,6222000011112222,付款,,补贴,"1,234.56",,"98,765.44"
2026-04-01 10:00:00,1602000000000000001,省财政厅,1000000000000000001,拨款,,,,"100,000.00","198,765.44"
"""  # noqa: E501
    parsed = own_csv(text)
    statement = only(parsed)

    assert parsed.format == "csv:icbc01"
    assert statement.account == "1602000000000000001"
    assert [(x.credit_debit, x.amount_fen, x.booking_time) for x in statement.lines] == [
        ("DBIT", 123456, dt.time(9, 30)),
        ("CRDT", 10000000, dt.time(10, 0)),
    ]
    assert statement.balances_add_up is True
    assert (statement.opening_balance_fen, statement.closing_balance_fen) == (10000000, 19876544)


def test_icbc02_reads_debit_and_credit_columns_after_its_account_preamble() -> None:
    text = """户名: 某某科技局,账号: 1602000000000000002
日期,对方户名,对方账号,摘要,借方发生额,贷方发生额,余额
2026-04-02,某某科技服务有限公司,6222000011112222,付款,500.00,,9500.00
2026-04-03,某某科技服务有限公司,6222000011112222,退回,,500.00,10000.00
"""
    parsed = own_csv(text)
    statement = only(parsed)

    assert parsed.format == "csv:icbc02"
    assert statement.account == "1602000000000000002"
    assert [(x.credit_debit, x.amount_fen) for x in statement.lines] == [
        ("DBIT", 50000),
        ("CRDT", 50000),
    ]
    assert statement.balances_add_up is True
    assert parsed.skipped_rows == ("户名: 某某科技局,账号: 1602000000000000002",)


def test_icbc03_reads_an_amount_with_a_debit_credit_flag() -> None:
    text = """交易时间,本方账号,对方单位,对方账号,摘要,附言,用途,借贷标志,发生额,余额
2026-04-01 09:30:00,1602000000000000003,某某科技服务有限公司,6222000011112222,付款,,,借,200.00,800.00
2026-04-01 09:31:00,1602000000000000003,某某科技服务有限公司,6222000011112222,退回,,,贷,200.00,1000.00
"""  # noqa: E501
    statement = only(own_csv(text))

    assert [(x.credit_debit, x.amount_fen) for x in statement.lines] == [
        ("DBIT", 20000),
        ("CRDT", 20000),
    ]
    assert statement.balances_add_up is True


@pytest.mark.parametrize("flagged", [True, False], ids=["with-借贷方向", "signed"])
def test_ccb01_reads_its_amount_with_a_flag_column_or_by_its_sign(flagged: bool) -> None:
    flag_header = ",借贷方向" if flagged else ""
    rows = (
        [("借方", "300.00"), ("贷方", "1,000.00")]
        if flagged
        else [("", "-300.00"), ("", "1,000.00")]
    )
    body = "\n".join(
        f"CCB-2026-{n},2026-04-0{n} 10:00:00,某某科技局,1100000000000000004,某某公司,"
        f'6222000011112222,摘要,备注,"{amount}",{balance}' + (f",{flag}" if flagged else "")
        for n, ((flag, amount), balance) in enumerate(
            zip(rows, ["700.00", "1700.00"], strict=True), 1
        )
    )
    header = (
        "账户明细编号-交易流水号,交易时间,本方账户名称,本方账号,对方户名,对方账号,"
        "摘要,备注,发生额/元,余额/元"
    )
    parsed = own_csv(f"{header}{flag_header}\n{body}\n")
    statement = only(parsed)

    assert parsed.format == "csv:ccb01"
    assert [(x.credit_debit, x.amount_fen, x.transaction_id) for x in statement.lines] == [
        ("DBIT", 30000, "CCB-2026-1"),
        ("CRDT", 100000, "CCB-2026-2"),
    ]
    assert statement.account == "1100000000000000004"
    assert statement.balances_add_up is True


def test_ccb02_reads_full_width_parenthesised_debit_and_credit_columns() -> None:
    text = """账户明细编号-交易流水号,交易时间,账户名称,账号,对方户名,对方账号,摘要,备注,借方发生额（支取）,贷方发生额（收入）,余额
CCB-1,20260401 101500,某某科技局,1100000000000000005,某某公司,6222000011112222,付款,,88.80,,911.20
"""  # noqa: E501
    parsed = own_csv(text)
    line = only(parsed).lines[0]

    assert parsed.format == "csv:ccb02"
    assert (line.credit_debit, line.amount_fen, line.booking_time) == (
        "DBIT",
        8880,
        dt.time(10, 15),
    )
    assert (line.transaction_id, line.own_account) == ("CCB-1", "1100000000000000005")


def test_cmb01_reads_its_company_preamble_and_debit_credit_columns() -> None:
    text = """公司名称,某某科技局
银行账号,755900000000001
账号名称,基本户
流水号,交易日,交易时间,收(付)方名称,收(付)方账号,交易类型,业务摘要,其它摘要,用途,借方金额,贷方金额,余额
CMB0001,2026-04-01,09:15:01,某某科技服务有限公司,6222000011112222,转账,付款,,补贴,"2,000.00",,"18,000.00"
CMB0002,2026-04-01,09:16:01,某某科技服务有限公司,6222000011112222,转账,付款,,补贴,"2,000.00",,"16,000.00"
"""
    parsed = own_csv(text)
    statement = only(parsed)

    assert parsed.format == "csv:cmb01"
    assert statement.account == "755900000000001"
    assert [x.transaction_id for x in statement.lines] == ["CMB0001", "CMB0002"]
    assert direction_totals(statement) == (0, 0, 2, 400000)
    assert (statement.opening_balance_fen, statement.balances_add_up) == (2000000, True)
    assert len(parsed.skipped_rows) == 3


def test_a_corporate_export_with_two_own_accounts_becomes_two_statements() -> None:
    text = """交易时间,本方账号,对方单位,对方账号,摘要,附言,用途,转出金额,转入金额,余额
2026-04-01,A-1,X,1,,,,1.00,,9.00
2026-04-01,B-2,X,1,,,,2.00,,8.00
"""
    parsed = own_csv(text)

    assert [(s.account, len(s.lines)) for s in parsed.statements] == [("A-1", 1), ("B-2", 1)]
    assert [x.line for x in parsed.lines] == [1, 2]


def test_both_a_debit_and_a_credit_on_one_row_is_statement_invalid() -> None:
    text = (
        "日期,对方户名,对方账号,摘要,借方发生额,贷方发生额,余额\n2026-04-02,X,1,,5.00,6.00,1.00\n"
    )

    with pytest.raises(StatementInvalid, match="exactly one"):
        own_csv(text)


# --- camt.053: the streaming reader, and what the fast paths keep exactly ---------------------


@pytest.mark.parametrize("expected", CAMT_FILES, ids=lambda c: c.file.split("__")[0])
def test_iter_statement_lines_yields_exactly_the_lines_parse_statement_gives(
    expected: Camt,
) -> None:
    from treasury import iter_statement_lines

    data = (CAMT / expected.file).read_bytes()

    assert list(iter_statement_lines(data)) == list(parse_statement(data, "application/xml").lines)


def test_iter_statement_lines_refuses_a_file_before_its_first_line() -> None:
    from treasury import iter_statement_lines

    camt054 = minimal_camt(ns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02")
    for data in (b"", b" \n", XXE, camt054, b"not xml at all"):
        with pytest.raises(StatementInvalid):
            iter_statement_lines(data)  # raises on the call, not on the first next()
    with pytest.raises(StatementInvalid, match="bytes"):
        iter_statement_lines(minimal_camt(), max_bytes=10)
    lines = iter_statement_lines(minimal_camt(entry_amount="8.855"))
    with pytest.raises(StatementInvalid, match="decimals"):
        list(lines)


@pytest.mark.parametrize("expected", CAMT_FILES, ids=lambda c: c.file.split("__")[0])
def test_indentation_between_elements_changes_nothing_that_is_read(expected: Camt) -> None:
    import re

    data = (CAMT / expected.file).read_bytes()
    compact = re.sub(rb">\s+<", b"><", data)  # also empties whitespace-only elements

    assert compact != data
    indented, flat = parse_statement(data, "application/xml"), parse_statement(compact, "text/xml")
    assert flat.statements == indented.statements
    assert (flat.format, flat.message_id) == (indented.format, indented.message_id)


@pytest.mark.parametrize("count", ["²", "x", "-1", "1.0", "1 2"])
def test_a_batch_count_that_is_not_a_whole_number_is_statement_invalid(count: str) -> None:
    details = f"<NtryDtls><Btch><NbOfTxs>{count}</NbOfTxs></Btch></NtryDtls></Ntry>"
    data = minimal_camt().replace(b"</Ntry>", details.encode())

    with pytest.raises(StatementInvalid, match="NbOfTxs"):
        parse_statement(data, "application/xml")


def _minor_units_by_the_grammar(text: str, exponent: int) -> int | None:
    """ISO 20022 amount text as the money module's rules state it (None: refused)."""
    import re

    match = re.fullmatch(r"(\d{1,18})(?:\.(\d{1,18}))?", text.strip())
    if match is None:
        return None
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent or len(whole.lstrip("0")) + exponent > 18:
        return None
    return int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")


@given(
    st.one_of(
        st.from_regex(r"\d{1,20}(\.\d{0,6})?", fullmatch=True),
        st.text(alphabet="0123456789.,+-e \t\n\u00a0\u0661\u00b2", max_size=24),
    ),
    st.sampled_from([0, 1, 2, 3, 4, 5]),
)
def test_decimal_text_is_read_by_the_same_rules_on_every_path(text: str, exponent: int) -> None:
    expected = _minor_units_by_the_grammar(text, exponent)

    if expected is None:
        with pytest.raises(MoneyTextInvalid):
            decimal_text_to_minor(text, exponent)
    else:
        assert decimal_text_to_minor(text, exponent) == expected


def test_the_benchmark_statement_parses_and_adds_up_indented_or_compact() -> None:
    from benchmarks.parse_statements import synthetic_camt053

    indented, compact = (
        only(parse_statement(synthetic_camt053(120, batch_every=7, compact=c), ""))
        for c in (False, True)
    )

    for statement in (indented, compact):
        assert len(statement.lines) == 120 and statement.balances_add_up is True
        assert sum(line.is_batch for line in statement.lines) == 120 // 7
        assert all(x.end_to_end_id and x.counterparty_account for x in statement.lines)
    assert compact.lines == indented.lines
