"""Payment files of approved payouts: ISO 20022 pain.001.001.09 (CustomerCreditTransfer-
Initiation, what banks take) and the CSV of API_CONTRACT.md §4c.

One group header, one payment information block (one debtor account, one requested
execution date, one currency), one credit transfer per payout. Amounts are written from
integer minor units as decimal text (``123456`` fen -> ``1234.56``), never through a float;
``NbOfTxs`` and ``CtrlSum`` are counted from the same integers, so the file adds up exactly.
Every value is checked against the schema's limits before a byte is written (the test
validates the output against the published XSD): a value that does not fit is
``ValidationError`` naming the payment, never truncated."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from audit.csv_cells import csv_row
from ledger.errors import ValidationError
from treasury.money import MoneyTextInvalid, minor_to_decimal_text, minor_unit_exponent

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
CSV_COLUMNS = ("end_to_end_id", "payee_id", "payee_name", "bank_account", "amount_fen", "currency")
MAX_PAYMENTS = 100_000  # NbOfTxs is Max15NumericText; a bank portal takes far fewer
MAX_AMOUNT_FEN = 10**15  # the ledger's ceiling for one amount (ledger.money)

_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
# XML 1.0 refuses these code points outright; lxml would raise deep inside the writer.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Payment:
    """One approved payout to pay. ``bank_account`` is the creditor's account (an IBAN when
    it looks like one, else a domestic account number); ``amount_fen`` is positive, in the
    minor unit of ``currency``; ``end_to_end_id`` (at most 35 characters) travels with the
    money and comes back on the bank line."""

    end_to_end_id: str
    payee_id: str
    payee_name: str
    bank_account: str
    amount_fen: int
    currency: str = "CNY"
    remittance_info: str | None = None


def _text(value: str, limit: int, what: str) -> str:
    """``value`` if it is 1..``limit`` characters of XML-safe text (ISO MaxNNText)."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"{what} must be 1 to {limit} characters, got {value!r}")
    if _NOT_XML.search(value):
        raise ValidationError(f"{what} holds a control character XML cannot carry")
    return value


def is_iban(account: str) -> bool:
    """An IBAN by shape and ISO 7064 mod-97 check digits (a Chinese account never is)."""
    compact = account.replace(" ", "").upper()
    if not _IBAN.fullmatch(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _check_payment(payment: Payment, currency: str) -> None:
    where = f"payment {payment.end_to_end_id!r}"
    _text(payment.end_to_end_id, 35, f"{where}: end_to_end_id")
    _text(payment.payee_id, 35, f"{where}: payee_id")
    _text(payment.payee_name, 140, f"{where}: payee_name")
    _text(payment.bank_account, 34, f"{where}: bank_account")
    if payment.remittance_info is not None:
        _text(payment.remittance_info, 140, f"{where}: remittance_info")
    if type(payment.amount_fen) is not int or not 0 < payment.amount_fen <= MAX_AMOUNT_FEN:
        raise ValidationError(
            f"{where}: amount_fen must be a positive int, got {payment.amount_fen!r}"
        )
    if payment.currency != currency:
        raise ValidationError(f"{where}: one file, one currency ({currency})")


def _check_payments(payments: Sequence[Payment]) -> str:
    """The file's one currency, after checking every payment and the file's limits."""
    if not payments:
        raise ValidationError("a payment file holds at least one payment")
    if len(payments) > MAX_PAYMENTS:
        raise ValidationError(f"a payment file holds at most {MAX_PAYMENTS} payments")
    currency = payments[0].currency
    try:
        minor_unit_exponent(currency)
    except MoneyTextInvalid as error:
        raise ValidationError(str(error)) from None
    for payment in payments:
        _check_payment(payment, currency)
    references = [payment.end_to_end_id for payment in payments]
    if len(set(references)) != len(references):
        raise ValidationError("every end_to_end_id in a payment file is unique")
    return currency


class _Builder:
    """Appends pain.001 elements in the schema's order."""

    def __init__(self) -> None:
        self.root = etree.Element(f"{{{NAMESPACE}}}Document", nsmap={None: NAMESPACE})

    @staticmethod
    def add(
        parent: etree._Element, name: str, text: str | None = None, **attrib: str
    ) -> etree._Element:
        element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}", attrib)
        if text is not None:
            element.text = text
        return element

    def path(self, parent: etree._Element, names: str, text: str) -> etree._Element:
        """``a/b/c`` as nested elements, ``text`` in the last."""
        *outer, last = names.split("/")
        for name in outer:
            parent = self.add(parent, name)
        return self.add(parent, last, text)

    def account(self, parent: etree._Element, name: str, account: str) -> None:
        """``<name><Id><IBAN>`` for an IBAN, else ``<name><Id><Othr><Id>``."""
        if is_iban(account):
            self.path(parent, f"{name}/Id/IBAN", account.replace(" ", "").upper())
        else:
            self.path(parent, f"{name}/Id/Othr/Id", account)

    def agent(self, parent: etree._Element, name: str, bic_or_id: str) -> None:
        """``<name><FinInstnId><BICFI>`` for a BIC, else ``<Othr><Id>`` (e.g. a CNAPS code)."""
        if _BIC.fullmatch(bic_or_id):
            self.path(parent, f"{name}/FinInstnId/BICFI", bic_or_id)
        else:
            self.path(parent, f"{name}/FinInstnId/Othr/Id", bic_or_id)


def _transfer(builder: _Builder, parent: etree._Element, payment: Payment, exponent: int) -> None:
    transfer = builder.add(parent, "CdtTrfTxInf")
    builder.path(transfer, "PmtId/EndToEndId", payment.end_to_end_id)
    amount = builder.add(transfer, "Amt")
    text = minor_to_decimal_text(payment.amount_fen, exponent)
    builder.add(amount, "InstdAmt", text, Ccy=payment.currency)
    creditor = builder.add(transfer, "Cdtr")
    builder.add(creditor, "Nm", payment.payee_name)
    builder.path(creditor, "Id/OrgId/Othr/Id", payment.payee_id)
    builder.account(transfer, "CdtrAcct", payment.bank_account)
    remittance = payment.remittance_info or payment.end_to_end_id
    builder.path(transfer, "RmtInf/Ustrd", remittance)


def payment_file_pain001(
    payments: Sequence[Payment],
    *,
    debtor_name: str,
    debtor_account: str,
    debtor_agent_bic_or_id: str,
    message_id: str,
    created_at: datetime,
    requested_execution_date: date,
) -> bytes:
    """pain.001.001.09 XML (UTF-8, with declaration) paying every payment from
    ``debtor_account`` at the bank ``debtor_agent_bic_or_id`` (a BIC, else its national id)
    on ``requested_execution_date``. ``message_id`` (≤ 35) is also the PmtInfId; a bank
    refuses a message id it has seen, so give each file a new one. ``CtrlSum`` is the exact
    sum of the amounts in the currency's major unit."""
    currency = _check_payments(payments)
    exponent = minor_unit_exponent(currency)
    _text(debtor_name, 140, "debtor_name")
    _text(debtor_account, 34, "debtor_account")
    _text(debtor_agent_bic_or_id, 35, "debtor_agent_bic_or_id")
    _text(message_id, 35, "message_id")
    count = str(len(payments))
    total = minor_to_decimal_text(sum(p.amount_fen for p in payments), exponent)
    builder = _Builder()
    initiation = builder.add(builder.root, "CstmrCdtTrfInitn")
    header = builder.add(initiation, "GrpHdr")
    builder.add(header, "MsgId", message_id)
    builder.add(header, "CreDtTm", created_at.isoformat(timespec="seconds"))
    builder.add(header, "NbOfTxs", count)
    builder.add(header, "CtrlSum", total)
    builder.path(header, "InitgPty/Nm", debtor_name)
    info = builder.add(initiation, "PmtInf")
    builder.add(info, "PmtInfId", message_id)
    builder.add(info, "PmtMtd", "TRF")
    builder.add(info, "NbOfTxs", count)
    builder.add(info, "CtrlSum", total)
    builder.path(info, "ReqdExctnDt/Dt", requested_execution_date.isoformat())
    builder.path(info, "Dbtr/Nm", debtor_name)
    builder.account(info, "DbtrAcct", debtor_account)
    builder.agent(info, "DbtrAgt", debtor_agent_bic_or_id)
    for payment in payments:
        _transfer(builder, info, payment, exponent)
    return etree.tostring(builder.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def payment_file_csv(payments: Sequence[Payment]) -> bytes:
    """The payment file as CSV (UTF-8, CRLF, header row): ``end_to_end_id, payee_id,
    payee_name, bank_account, amount_fen, currency``; ``amount_fen`` an integer. Every cell
    goes through the project's one escaper (``audit.csv_cells``): a payee called
    ``=HYPERLINK(...)`` reaches the spreadsheet as text. An empty list gives the header."""
    if len(payments) > MAX_PAYMENTS:
        raise ValidationError(f"a payment file holds at most {MAX_PAYMENTS} payments")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_row(CSV_COLUMNS))
    for p in payments:
        row = (p.end_to_end_id, p.payee_id, p.payee_name, p.bank_account, p.amount_fen, p.currency)
        writer.writerow(csv_row(row))
    return out.getvalue().encode("utf-8")
