"""ISO 20022 camt.053 (BankToCustomerStatement) with lxml, any ``camt.053.001.NN`` version.

Elements are found by local name under the namespace the root declares, so .001.02, .001.04
and .001.08 (and the versions between) go through the same code; another root or namespace
is refused. A first look at the root reads the namespace and refuses a DOCTYPE (camt.053 never
has one; entity tricks need one); then ``iterparse`` hands over each ``<Ntry>`` once it is
complete, the entry is read and cleared, so a 100,000-entry file never becomes a 100,000-entry
tree. The statement header (Id, Acct, Bal) precedes its entries in every version, so it is
complete when the first entry arrives. The parser is locked down: no network, no DTD, no
entity expansion, no huge-tree mode.

What is read is data: each ``_Shape`` lists the paths (local names) wanted below an element,
and one walk over the element's children collects them. On this 2-core machine an XPath per
field (``local-name()`` or prefixed) costs two to four times the whole walk.

Field choices (what the matcher relies on):
- the counterparty of a line is the debtor of a credit entry and the creditor of a debit
  entry (``Nm`` or, from .001.08 on, ``Pty/Nm``; account ``IBAN`` or ``Othr/Id``);
- ``end_to_end_id`` of a line is the first EndToEndId of its TxDtls other than NOTPROVIDED;
- a balance without CdtDbtInd (schema-invalid, seen in real Lithuanian exports) is read as a
  credit, with a note on the statement;
- a reversal keeps the entry's own CdtDbtInd: that already is the booking direction;
- the period is FrToDt, else the booking dates of the lines, else the balance dates, else the
  statement's (or message's) creation date."""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from lxml import etree

from treasury.money import MoneyTextInvalid, decimal_text_to_minor, minor_unit_exponent
from treasury.statements import (
    MAX_LINES,
    MAX_STATEMENTS,
    MAX_TRANSACTIONS,
    NOT_PROVIDED,
    Balance,
    Batch,
    CreditDebit,
    LineKeys,
    ParsedStatement,
    Statement,
    StatementInvalid,
    StatementLine,
    TransactionDetail,
    file_sha256,
    make_statement,
)

_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:(camt\.053\.001\.\d{2})")
_DIRECTIONS: dict[str, CreditDebit] = {"CRDT": "CRDT", "DBIT": "DBIT"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Element = etree._Element
Texts = dict[str, str]
Elements = dict[str, Element]
Many = dict[str, list[Element]]


_TEXT, _ELEMENT, _MANY, _BRANCH = range(4)


@dataclass(slots=True)
class _Node:
    """One step of a walk: the path so far (``key``), what to keep of the element there,
    and the steps below it by qualified tag."""

    key: str
    kind: int = _BRANCH
    below: dict[str, _Node] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Shape:
    """The paths read below one element, as local names: ``texts`` keeps the (stripped,
    non-empty) text of the first element at a path, ``elements`` the first element (for its
    attributes: amounts), ``many`` every element."""

    texts: tuple[str, ...]
    elements: tuple[str, ...] = ()
    many: tuple[str, ...] = ()

    def steps(self, prefix: str) -> dict[str, _Node]:
        """The paths as a tree keyed by qualified tag (``prefix`` is ``{namespace}``), so a
        walk looks each child up once and skips everything not asked for."""
        root = _Node(key="")
        for kind, paths in ((_TEXT, self.texts), (_ELEMENT, self.elements), (_MANY, self.many)):
            for path in paths:
                node = root
                for name in path.split("/"):
                    key = f"{node.key}/{name}" if node.key else name
                    node = node.below.setdefault(prefix + name, _Node(key=key))
                node.kind = kind
        return root.below


@dataclass(frozen=True, slots=True)
class _Read:
    """What one walk found (see ``_Shape``)."""

    texts: Texts
    elements: Elements
    many: Many


_HEADER = _Shape(
    (
        "Id",
        "CreDtTm",
        "FrToDt/FrDtTm",
        "FrToDt/ToDtTm",
        "Acct/Ccy",
        "Acct/Id/IBAN",
        "Acct/Id/Othr/Id",
    ),
    many=("Bal",),
)
_BALANCE = _Shape(
    ("Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry", "CdtDbtInd", "Dt/Dt", "Dt/DtTm"),
    elements=("Amt",),
)
_ENTRY = _Shape(
    (
        *("CdtDbtInd", "RvslInd", "Sts", "Sts/Cd", "Sts/Prtry", "AcctSvcrRef", "NtryRef"),
        *("BookgDt/Dt", "BookgDt/DtTm", "ValDt/Dt", "ValDt/DtTm", "AddtlNtryInf"),
        *("BkTxCd/Domn/Cd", "BkTxCd/Domn/Fmly/Cd", "BkTxCd/Domn/Fmly/SubFmlyCd"),
        "BkTxCd/Prtry/Cd",
    ),
    elements=("Amt",),
    many=("NtryDtls/Btch", "NtryDtls/TxDtls"),
)
_BATCH = _Shape(("NbOfTxs", "CdtDbtInd"), elements=("TtlAmt",))
_PARTY = tuple(f"{p}/{leaf}" for p in ("Dbtr", "Cdtr") for leaf in ("Nm", "Pty/Nm"))
_PARTY_ACCOUNT = tuple(
    f"{p}Acct/Id/{leaf}" for p in ("Dbtr", "Cdtr") for leaf in ("IBAN", "Othr/Id")
)
_TRANSACTION = _Shape(
    (
        *(f"Refs/{ref}" for ref in ("EndToEndId", "InstrId", "MndtId", "TxId", "AcctSvcrRef")),
        *("CdtDbtInd", "RmtInf/Strd/CdtrRefInf/Ref", "RtrInf/Rsn/Cd"),
        *(f"RltdPties/{path}" for path in (*_PARTY, *_PARTY_ACCOUNT)),
    ),
    elements=("Amt", "AmtDtls/TxAmt/Amt", "AmtDtls/InstdAmt/Amt"),
    many=("RmtInf/Ustrd",),
)
_GROUP_HEADER = _Shape(("BkToCstmrStmt/GrpHdr/MsgId", "BkToCstmrStmt/GrpHdr/CreDtTm"))


def _parser_stream(
    data: bytes, events: tuple[Literal["start", "end"], ...], tags: Sequence[str] | None
) -> etree.iterparse[tuple[str, Element]]:
    """The one locked-down parser configuration."""
    return etree.iterparse(
        io.BytesIO(data),
        events=events,
        tag=tags,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


class _Tags:
    """Tags under one document's namespace, and the walks of each ``_Shape`` there."""

    def __init__(self, namespace: str) -> None:
        self.prefix = "{" + namespace + "}"
        self._steps: dict[_Shape, dict[str, _Node]] = {}

    def tag(self, name: str) -> str:
        return self.prefix + name

    def read(self, element: Element, shape: _Shape) -> _Read:
        """The texts and elements at ``shape``'s paths below ``element``, in one walk.

        Breadth first over a list, not by recursion (a call per level costs more than the
        lookups); the elements of one path are all at one depth, so they keep document
        order. One dict lookup per child: this is the hot path of a 100,000-line import."""
        steps = self._steps.get(shape)
        if steps is None:
            steps = self._steps[shape] = shape.steps(self.prefix)
        found = _Read(texts={}, elements={}, many={})
        queue: list[tuple[Element, dict[str, _Node]]] = [(element, steps)]
        for parent, below in queue:
            for child in parent:
                node = below.get(child.tag)  # type: ignore[arg-type]  # str for elements
                if node is None:
                    continue
                if node.kind != _BRANCH:
                    _keep(found, child, node)
                if node.below:
                    queue.append((child, node.below))
        return found


def _keep(found: _Read, child: Element, node: _Node) -> None:
    if node.kind == _TEXT:
        text = child.text
        if text and (text := text.strip()) and node.key not in found.texts:
            found.texts[node.key] = text
    elif node.kind == _ELEMENT:
        found.elements.setdefault(node.key, child)
    else:
        found.many.setdefault(node.key, []).append(child)


@functools.lru_cache(maxsize=4096)  # the lines of a statement share a handful of dates
def _iso_date(text: str) -> date:
    return date.fromisoformat(text[:10])


def _date(text: str | None, where: str) -> date | None:
    """The calendar date written in an ISODate or ISODateTime."""
    if text is None:
        return None
    try:
        return _iso_date(text)
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a date") from None


def _date_at(texts: Texts, path: str, where: str) -> date | None:
    """A date choice at ``path``: ``path/Dt`` or ``path/DtTm``."""
    return _date(texts.get(path + "/Dt") or texts.get(path + "/DtTm"), where)


def _amount(element: Element | None, where: str) -> tuple[int, str]:
    """An ``<Amt Ccy="...">`` (or ``<TtlAmt>``) as (minor units, currency)."""
    if element is None or element.text is None:
        raise StatementInvalid(f"{where}: the amount is missing")
    currency = (element.get("Ccy") or "").strip()
    try:
        return decimal_text_to_minor(element.text, minor_unit_exponent(currency)), currency
    except MoneyTextInvalid as error:
        raise StatementInvalid(f"{where}: {error}") from None


def _direction(text: str | None, where: str) -> CreditDebit:
    direction = _DIRECTIONS.get(text or "")
    if direction is None:
        raise StatementInvalid(f"{where}: CdtDbtInd {text!r} is neither CRDT nor DBIT")
    return direction


def _optional_direction(text: str | None, where: str) -> CreditDebit | None:
    return None if text is None else _direction(text, where)


def _reversal(text: str | None, where: str) -> bool:
    value = _BOOLEANS.get((text or "false").lower())
    if value is None:
        raise StatementInvalid(f"{where}: RvslInd {text!r} is not a boolean")
    return value


def _line_references(
    transactions: Sequence[TransactionDetail],
) -> tuple[str | None, str | None, str | None, str | None]:
    """A line's end-to-end id (the first that is not NOTPROVIDED), counterparty account and
    name, and remittance text: the first each of its transactions gives."""
    end_to_end = account = name = remittance = None
    for t in transactions:
        if end_to_end is None and t.end_to_end_id and t.end_to_end_id != NOT_PROVIDED:
            end_to_end = t.end_to_end_id
        account = account or t.counterparty_account
        name = name or t.counterparty_name
        remittance = remittance or t.remittance_info
    return end_to_end, account, name, remittance


def _balance(tags: _Tags, element: Element, where: str, notes: list[str]) -> Balance:
    found = tags.read(element, _BALANCE)
    texts = found.texts
    code = texts.get("Tp/CdOrPrtry/Cd") or texts.get("Tp/CdOrPrtry/Prtry") or ""
    where = f"{where}, balance {code}"
    amount, currency = _amount(found.elements.get("Amt"), where)
    indicator = texts.get("CdtDbtInd")
    if indicator is None:
        notes.append(f"balance {code} has no CdtDbtInd: read as a credit")
    elif _direction(indicator, where) == "DBIT":
        amount = -amount
    when = _date_at(texts, "Dt", where)
    return Balance(type_code=code, amount_fen=amount, currency=currency, date=when)


@dataclass(slots=True)
class _Header:
    """What a ``<Stmt>`` says before its entries."""

    statement_id: str
    account: str | None
    currency: str
    from_date: date | None
    to_date: date | None
    created: date | None
    balances: list[Balance]
    notes: list[str]


def _header(
    tags: _Tags, statement: Element, entry: Element | None, created: date | None
) -> _Header:
    found = tags.read(statement, _HEADER)
    texts = found.texts
    statement_id = texts.get("Id")
    if statement_id is None:
        raise StatementInvalid("a <Stmt> has no <Id>")
    where = f"statement {statement_id}"
    notes: list[str] = []
    balances = [_balance(tags, b, where, notes) for b in found.many.get("Bal", ())]
    entry_amount = None if entry is None else next(entry.iterchildren(tags.tag("Amt")), None)
    currency = (
        texts.get("Acct/Ccy")
        or next((b.currency for b in balances), None)
        or (None if entry_amount is None else entry_amount.get("Ccy"))
    )
    if currency is None:
        currency = "XXX"  # ISO 4217 "no currency": a statement without any amount
        notes.append("no currency anywhere in the statement: XXX")
    return _Header(
        statement_id=statement_id,
        account=texts.get("Acct/Id/IBAN") or texts.get("Acct/Id/Othr/Id"),
        currency=currency,
        from_date=_date(texts.get("FrToDt/FrDtTm"), where),
        to_date=_date(texts.get("FrToDt/ToDtTm"), where),
        created=_date(texts.get("CreDtTm"), where) or created,
        balances=balances,
        notes=notes,
    )


def _batch(tags: _Tags, element: Element, where: str) -> Batch:
    found = tags.read(element, _BATCH)
    count = found.texts.get("NbOfTxs")
    if count is not None and not count.isdigit():
        raise StatementInvalid(f"{where}: NbOfTxs {count!r} is not a number")
    total = found.elements.get("TtlAmt")
    total_fen, currency = (None, None) if total is None else _amount(total, where)
    return Batch(
        number_of_transactions=None if count is None else int(count),
        total_fen=total_fen,
        currency=currency,
        credit_debit=_optional_direction(found.texts.get("CdtDbtInd"), where),
    )


def _transaction_amount(elements: Elements, where: str) -> tuple[int | None, str | None]:
    """TxDtls/Amt (from .001.04 on), else AmtDtls/TxAmt/Amt, else AmtDtls/InstdAmt/Amt."""
    for path in ("Amt", "AmtDtls/TxAmt/Amt", "AmtDtls/InstdAmt/Amt"):
        amount = elements.get(path)
        if amount is not None:
            return _amount(amount, where)
    return None, None


def _transaction(
    tags: _Tags, element: Element, entry: CreditDebit, where: str
) -> TransactionDetail:
    found = tags.read(element, _TRANSACTION)
    texts = found.texts
    amount_fen, currency = _transaction_amount(found.elements, where)
    party = "RltdPties/" + ("Dbtr" if entry == "CRDT" else "Cdtr")
    unstructured = [t for t in map(_text, found.many.get("RmtInf/Ustrd", ())) if t]
    return TransactionDetail(
        end_to_end_id=texts.get("Refs/EndToEndId"),
        instruction_id=texts.get("Refs/InstrId"),
        mandate_id=texts.get("Refs/MndtId"),
        transaction_id=texts.get("Refs/TxId"),
        acct_svcr_ref=texts.get("Refs/AcctSvcrRef"),
        amount_fen=amount_fen,
        currency=currency,
        credit_debit=_optional_direction(texts.get("CdtDbtInd"), where),
        counterparty_name=texts.get(party + "/Nm") or texts.get(party + "/Pty/Nm"),
        counterparty_account=(
            texts.get(party + "Acct/Id/IBAN") or texts.get(party + "Acct/Id/Othr/Id")
        ),
        remittance_info="\n".join(unstructured) or None,
        creditor_reference=texts.get("RmtInf/Strd/CdtrRefInf/Ref"),
        return_reason=texts.get("RtrInf/Rsn/Cd"),
    )


def _bank_transaction_code(texts: Texts) -> str | None:
    """``Domn/Cd``, ``Fmly/Cd`` and ``SubFmlyCd`` as ``PMNT/RCDT/ESCT``, else ``Prtry/Cd``."""
    domain = texts.get("BkTxCd/Domn/Cd")
    family = texts.get("BkTxCd/Domn/Fmly/Cd")
    sub_family = texts.get("BkTxCd/Domn/Fmly/SubFmlyCd")
    if domain or family or sub_family:
        return f"{domain or ''}/{family or ''}/{sub_family or ''}"
    return texts.get("BkTxCd/Prtry/Cd")


def _entry(
    tags: _Tags, element: Element, line: int, header: _Header, keys: LineKeys
) -> StatementLine:
    where = f"statement {header.statement_id}, line {line}"
    found = tags.read(element, _ENTRY)
    texts = found.texts
    amount_fen, currency = _amount(found.elements.get("Amt"), where)
    direction = _direction(texts.get("CdtDbtInd"), where)
    many = found.many
    batches = tuple([_batch(tags, b, where) for b in many.get("NtryDtls/Btch", ())])
    transactions = tuple(
        [_transaction(tags, t, direction, where) for t in many.get("NtryDtls/TxDtls", ())]
    )
    end_to_end, account, name, remittance = _line_references(transactions)
    booked = _date_at(texts, "BookgDt", where)
    valued = _date_at(texts, "ValDt", where)
    reversal = _reversal(texts.get("RvslInd"), where)
    bank_ref, entry_ref = texts.get("AcctSvcrRef"), texts.get("NtryRef")
    tx_refs = ",".join([t.transaction_id or t.acct_svcr_ref or "" for t in transactions])
    material = (header.account, currency, bank_ref, entry_ref, booked, valued, direction)
    return StatementLine(
        line=line,
        key=keys.next((*material, amount_fen, reversal, end_to_end, tx_refs)),
        booking_date=booked,
        value_date=valued,
        amount_fen=amount_fen,
        currency=currency,
        credit_debit=direction,
        reversal=reversal,
        status=texts.get("Sts") or texts.get("Sts/Cd") or texts.get("Sts/Prtry"),
        acct_svcr_ref=bank_ref,
        entry_ref=entry_ref,
        bank_transaction_code=_bank_transaction_code(texts),
        batches=batches,
        transactions=transactions,
        end_to_end_id=end_to_end,
        counterparty_account=account,
        counterparty_name=name,
        remittance_info=remittance,
        additional_info=texts.get("AddtlNtryInf"),
        own_account=header.account,
    )


def _close(header: _Header, lines: Sequence[StatementLine]) -> Statement:
    booked = [line.booking_date for line in lines if line.booking_date is not None]
    dated = {b.type_code: b.date for b in header.balances if b.date is not None}
    from_date = header.from_date or (min(booked) if booked else None)
    to_date = header.to_date or (max(booked) if booked else None)
    return make_statement(
        statement_id=header.statement_id,
        account=header.account,
        currency=header.currency,
        from_date=from_date or dated.get("OPBD") or dated.get("PRCD") or header.created,
        to_date=to_date or dated.get("CLBD") or header.created,
        balances=header.balances,
        lines=lines,
        notes=header.notes,
    )


class _Reader:
    """Collects statements from the stream of completed ``<Ntry>`` and ``<Stmt>`` elements."""

    def __init__(self, tags: _Tags, max_lines: int) -> None:
        self.tags = tags
        self.max_lines = max_lines
        self.keys = LineKeys()
        self.message_id: str | None = None
        self.created: date | None = None
        self.statements: list[Statement] = []
        self.current: Element | None = None
        self.header: _Header | None = None
        self.lines: list[StatementLine] = []
        self.line_count = 0
        self.transaction_count = 0

    def group_header(self, element: Element) -> None:
        """MsgId and CreDtTm of GrpHdr (complete before the first statement arrives)."""
        texts = self.tags.read(element.getroottree().getroot(), _GROUP_HEADER).texts
        self.message_id = texts.get("BkToCstmrStmt/GrpHdr/MsgId")
        self.created = _date(texts.get("BkToCstmrStmt/GrpHdr/CreDtTm"), "GrpHdr")

    def _open(self, statement: Element, first_entry: Element | None) -> _Header:
        parent = statement.getparent()
        if statement.tag != self.tags.tag("Stmt") or parent is None:
            raise StatementInvalid("an <Ntry> outside a <Stmt>")
        if parent.tag != self.tags.tag("BkToCstmrStmt") or parent.getparent() is None:
            raise StatementInvalid("a <Stmt> outside Document/BkToCstmrStmt")
        if len(self.statements) >= MAX_STATEMENTS:
            raise StatementInvalid(f"more than {MAX_STATEMENTS} statements in one message")
        self.current, self.lines = statement, []
        self.header = _header(self.tags, statement, first_entry, self.created)
        return self.header

    def entry(self, element: Element) -> None:
        parent = element.getparent()
        if parent is None:
            raise StatementInvalid("an <Ntry> outside a <Stmt>")
        header = self.header if parent is self.current else None
        header = header or self._open(parent, element)
        self.line_count += 1
        if self.line_count > self.max_lines:
            raise StatementInvalid(f"more than {self.max_lines} entries in one file")
        line = _entry(self.tags, element, self.line_count, header, self.keys)
        self.transaction_count += len(line.transactions)
        if self.transaction_count > MAX_TRANSACTIONS:
            raise StatementInvalid(f"more than {MAX_TRANSACTIONS} TxDtls in one file")
        self.lines.append(line)
        _release(element, parent)

    def statement(self, element: Element) -> None:
        header = self.header if element is self.current else None
        header = header or self._open(element, None)
        self.statements.append(_close(header, self.lines))
        self.current, self.header, self.lines = None, None, []
        element.clear()


def _release(entry: Element, statement: Element) -> None:
    """Free a read entry, and the one before it (lxml may still hold the current one)."""
    entry.clear()
    previous = entry.getprevious()
    if previous is not None and previous.tag == entry.tag:
        statement.remove(previous)


def _sniff(data: bytes) -> tuple[str, _Tags]:
    """The format (``camt.053.001.NN``) and the tags of its namespace, from the root element
    alone; a DOCTYPE, another root or another namespace is refused before anything is read."""
    try:
        _event, root = next(iter(_parser_stream(data, ("start",), None)))
    except (etree.XMLSyntaxError, StopIteration) as error:
        raise StatementInvalid(f"not well-formed XML: {error}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise StatementInvalid("a camt.053 document has no DOCTYPE (DTDs and entities refused)")
    name = etree.QName(root)
    match = _NAMESPACE.fullmatch(name.namespace or "")
    if name.localname != "Document" or match is None:
        raise StatementInvalid(f"not a camt.053 document: root {root.tag!r}")
    return match.group(1), _Tags(name.namespace or "")


def parse_camt053(data: bytes, *, max_lines: int = MAX_LINES) -> ParsedStatement:
    """Every statement, balance, entry and TxDtls of a camt.053 message (see the module
    docstring for the field choices). Raises ``StatementInvalid`` for XML that is not
    well-formed or is truncated, another root or namespace, a DOCTYPE, a missing or inexact
    amount (more decimals than the currency has), or more than ``max_lines`` entries."""
    format_name, tags = _sniff(data)
    reader = _Reader(tags, max_lines)
    entry_tag = tags.tag("Ntry")
    stream = _parser_stream(data, ("end",), (entry_tag, tags.tag("Stmt")))
    try:
        for count, (_event, element) in enumerate(stream):
            if count == 0:
                reader.group_header(element)
            if element.tag == entry_tag:
                reader.entry(element)
            else:
                reader.statement(element)
    except etree.XMLSyntaxError as error:
        raise StatementInvalid(f"not well-formed XML: {error}") from None
    if not reader.statements:
        raise StatementInvalid("a camt.053 document holds at least one <Stmt>")
    return ParsedStatement(
        file_sha256=file_sha256(data),
        format=format_name,
        statements=tuple(reader.statements),
        message_id=reader.message_id,
    )
