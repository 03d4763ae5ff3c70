"""ISO 20022 camt.053 (BankToCustomerStatement) with lxml, any ``camt.053.001.NN`` version.

Elements are found by local name under the namespace the root declares, so .001.02, .001.04
and .001.08 (and the versions between) go through the same code; another root or namespace
is refused. A first look at the root reads the namespace and refuses a DOCTYPE (camt.053 never
has one; entity tricks need one); then ``iterparse`` hands over each ``<Ntry>`` once it is
complete, the entry is read and cleared, so a 100,000-entry file never becomes a 100,000-entry
tree. The statement header (Id, Acct, Bal) precedes its entries in every version, so it is
complete when the first entry arrives. The parser is locked down: no network, no DTD, no
entity expansion, no huge-tree mode. Whitespace-only text between elements is dropped while
parsing (``remove_blank_text``): every text read here is stripped anyway, and indented files
parse markedly faster without those nodes.

What is read is data: each ``_Shape`` lists the paths (local names) wanted below an element,
in slot order, and one walk over the element's children (``_walk``) fills a list with one slot
a path, which the reader unpacks into names; a text slot holds the first stripped non-empty
text of all the elements at its path, in document order. What a walk costs is mostly lxml
making a proxy and a ``tag`` string for each child it looks at, so it descends only where a
wanted path goes (the counterparty's branch of ``RltdPties``; ``AmtDtls`` only when a TxDtls
has no ``Amt``). Measured on this 2-core machine and not taken: an XPath per field costs two
to four times the walk, one XPath ``concat()`` of an entry's own fields three times; XSLT over
the whole tree is no faster and needs the whole tree; ``objectify.ObjectPath`` lookups are
about twice as fast but see only the first element at each step (a second ``RmtInf/Strd``,
or a duplicated element after an empty one, would read differently).
``benchmarks/parse_statements.py`` measures the whole parse.

Field choices (what the matcher relies on):
- the counterparty of a line is the debtor of a credit entry and the creditor of a debit
  entry (``Nm`` or, from .001.08 on, ``Pty/Nm``; account ``IBAN`` or ``Othr/Id``);
- ``end_to_end_id`` of a line is the first EndToEndId of its TxDtls other than NOTPROVIDED;
- a balance without CdtDbtInd (schema-invalid, seen in real Lithuanian exports) is read as a
  credit, with a note on the statement;
- a reversal keeps the entry's own CdtDbtInd: that already is the booking direction;
- the period is FrToDt, else the booking dates of the lines, else the balance dates, else the
  statement's (or message's) creation date.

``iter_statement_lines`` yields the same lines (numbers and keys included) one at a time for
an import that stores them as it goes, holding none of them; ``parse_camt053`` is built on the
same reader and keeps them in their statements."""

from __future__ import annotations

import dataclasses
import functools
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from lxml import etree

from treasury.money import MoneyTextInvalid, decimal_text_to_minor, minor_unit_exponent
from treasury.statements import (
    MAX_LINES,
    MAX_STATEMENT_BYTES,
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
    check_statement_bytes,
    file_sha256,
    line_digest,
    make_statement,
)

_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:(camt\.053\.001\.\d{2})")
_DIRECTIONS: dict[str, CreditDebit] = {"CRDT": "CRDT", "DBIT": "DBIT"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Element = etree._Element

# What a walk keeps at a path: the first stripped non-empty text, the first element (for its
# attributes: amounts), every element, or every stripped non-empty text; or nothing (a path
# only passed through on the way to a deeper one).
_TEXT, _FIRST, _ALL, _TEXTS, _BRANCH = range(5)
_Step = tuple[int, int, "dict[str, _Step] | None"]  # slot, what to keep, the steps below
_Steps = dict[str, _Step]  # by qualified tag


@dataclass(frozen=True, slots=True)
class _Shape:
    """The paths read below one element, as local names, each with what to keep of it; a
    walk returns a list with one slot per path, in this order."""

    paths: tuple[tuple[str, int], ...]

    def steps(self, prefix: str) -> _Steps:
        """The paths as a tree keyed by qualified tag (``prefix`` is ``{namespace}``), so a
        walk looks each child up once and skips everything not asked for."""
        root: dict[str, Any] = {}
        for slot, (path, kind) in enumerate(self.paths):
            *branches, leaf = path.split("/")
            level = root
            for name in branches:
                node = level.setdefault(prefix + name, [-1, _BRANCH, None])
                if node[2] is None:
                    node[2] = {}
                level = node[2]
            node = level.setdefault(prefix + leaf, [-1, _BRANCH, None])
            if node[1] != _BRANCH:
                raise ValueError(f"path {path!r} twice in one shape")
            node[0], node[1] = slot, kind
        return _frozen(root)


def _frozen(level: dict[str, Any]) -> _Steps:
    return {
        tag: (slot, kind, None if below is None else _frozen(below))
        for tag, (slot, kind, below) in level.items()
    }


def _walk(element: Element, steps: _Steps, size: int) -> list[Any]:
    """The slots of a ``_Shape`` (``size`` of them) below ``element``, in one walk.

    Breadth first over a list; the elements of one path are all at one depth, so they keep
    document order. One dict lookup per child: this is the hot path of a 100,000-line import
    (recursion, a flat ``iter()`` with ``getparent()`` for the context, or element classes
    by tag measure no faster: lxml's proxy and tag string for each child dominate)."""
    found: list[Any] = [None] * size
    queue: list[tuple[Element, _Steps]] = [(element, steps)]
    for parent, below in queue:
        for child in parent[:]:  # a slice: one call, where iterating makes an iterator
            step = below.get(child.tag)  # type: ignore[arg-type]  # str for elements
            if step is None:
                continue
            slot, kind, deeper = step
            if kind == _TEXT:
                if found[slot] is None:
                    text = child.text
                    if text and (text := text.strip()):
                        found[slot] = text
            elif kind == _FIRST:
                if found[slot] is None:
                    found[slot] = child
            elif kind == _ALL:
                if found[slot] is None:
                    found[slot] = [child]
                else:
                    found[slot].append(child)
            elif kind == _TEXTS:
                text = child.text
                if text and (text := text.strip()):
                    if found[slot] is None:
                        found[slot] = [text]
                    else:
                        found[slot].append(text)
            if deeper is not None:
                queue.append((child, deeper))
    return found


# The shapes read; each reader unpacks a walk's list in this order.
_GROUP_HEADER = _Shape(
    (("BkToCstmrStmt/GrpHdr/MsgId", _TEXT), ("BkToCstmrStmt/GrpHdr/CreDtTm", _TEXT))
)
_HEADER = _Shape(
    (
        *((path, _TEXT) for path in ("Id", "CreDtTm", "FrToDt/FrDtTm", "FrToDt/ToDtTm")),
        *((path, _TEXT) for path in ("Acct/Ccy", "Acct/Id/IBAN", "Acct/Id/Othr/Id")),
        ("Bal", _ALL),
    )
)
_BALANCE = _Shape(
    (
        *((path, _TEXT) for path in ("Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry", "CdtDbtInd")),
        *((path, _TEXT) for path in ("Dt/Dt", "Dt/DtTm")),
        ("Amt", _FIRST),
    )
)
_ENTRY = _Shape(
    (
        ("Amt", _FIRST),
        *((path, _TEXT) for path in ("CdtDbtInd", "RvslInd", "Sts", "Sts/Cd", "Sts/Prtry")),
        *((path, _TEXT) for path in ("AcctSvcrRef", "NtryRef", "AddtlNtryInf")),
        *((path, _TEXT) for path in ("BookgDt/Dt", "BookgDt/DtTm", "ValDt/Dt", "ValDt/DtTm")),
        ("BkTxCd/Domn/Cd", _TEXT),
        ("BkTxCd/Domn/Fmly/Cd", _TEXT),
        ("BkTxCd/Domn/Fmly/SubFmlyCd", _TEXT),
        ("BkTxCd/Prtry/Cd", _TEXT),
        ("NtryDtls/Btch", _ALL),
        ("NtryDtls/TxDtls", _ALL),
    )
)
_BATCH = _Shape((("NbOfTxs", _TEXT), ("CdtDbtInd", _TEXT), ("TtlAmt", _FIRST)))


def _transaction_shape(party: str) -> _Shape:
    """A TxDtls whose counterparty is ``party`` (``Dbtr`` of a credit entry, else ``Cdtr``):
    the other party's branch of RltdPties is not walked. ``AmtDtls`` is kept, not walked:
    it is read (``_AMOUNT_DETAILS``) only when the TxDtls has no ``Amt``."""
    return _Shape(
        (
            ("Amt", _FIRST),
            ("AmtDtls", _ALL),
            *((f"Refs/{ref}", _TEXT) for ref in ("EndToEndId", "InstrId", "MndtId", "TxId")),
            ("Refs/AcctSvcrRef", _TEXT),
            ("CdtDbtInd", _TEXT),
            ("RmtInf/Ustrd", _TEXTS),
            ("RmtInf/Strd/CdtrRefInf/Ref", _TEXT),
            ("RtrInf/Rsn/Cd", _TEXT),
            (f"RltdPties/{party}/Nm", _TEXT),
            (f"RltdPties/{party}/Pty/Nm", _TEXT),
            (f"RltdPties/{party}Acct/Id/IBAN", _TEXT),
            (f"RltdPties/{party}Acct/Id/Othr/Id", _TEXT),
        )
    )


_CREDIT_TRANSACTION = _transaction_shape("Dbtr")
_DEBIT_TRANSACTION = _transaction_shape("Cdtr")
_AMOUNT_DETAILS = _Shape((("TxAmt/Amt", _FIRST), ("InstdAmt/Amt", _FIRST)))


class _Bad(Exception):
    """A field that cannot be read; the reader adds where it is (``StatementInvalid``)."""


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
        remove_blank_text=True,
    )


class _Tags:
    """Tags under one document's namespace, and the walks of each ``_Shape`` there."""

    def __init__(self, namespace: str) -> None:
        self.prefix = "{" + namespace + "}"
        self.entry = self.tag("Ntry")
        self.amount = self.tag("Amt")
        self._steps: dict[_Shape, tuple[_Steps, int]] = {}

    def tag(self, name: str) -> str:
        return self.prefix + name

    def steps(self, shape: _Shape) -> tuple[_Steps, int]:
        steps = self._steps.get(shape)
        if steps is None:
            steps = self._steps[shape] = (shape.steps(self.prefix), len(shape.paths))
        return steps

    def read(self, element: Element, shape: _Shape) -> list[Any]:
        return _walk(element, *self.steps(shape))


@functools.lru_cache(maxsize=4096)  # the lines of a statement share a handful of dates
def _iso_date(text: str) -> tuple[date, str]:
    """The calendar date written in an ISODate or ISODateTime, and ``str()`` of it."""
    day = date.fromisoformat(text[:10])
    return day, str(day)


_NO_DAY: tuple[None, str] = (None, "None")


def _day_and_text(text: str | None) -> tuple[date | None, str]:
    """The date of ``text`` (``None`` for none) and the text a line key makes of it."""
    if text is None:
        return _NO_DAY
    try:
        return _iso_date(text)
    except ValueError:
        raise _Bad(f"{text!r} is not a date") from None


def _day(text: str | None) -> date | None:
    return _day_and_text(text)[0]


def _date(text: str | None, where: str) -> date | None:
    try:
        return _day(text)
    except _Bad as bad:
        raise StatementInvalid(f"{where}: {bad}") from None


# Amt's Ccy attribute as written -> (currency, decimals); only plain three-letter codes
# are kept, so the table stays small whatever a file holds.
_UNITS: dict[str | None, tuple[str, int]] = {}


def _money(element: Element | None) -> tuple[int, str]:
    """An ``<Amt Ccy="...">`` (or ``<TtlAmt>``) as (minor units, currency)."""
    if element is None or (text := element.text) is None:
        raise _Bad("the amount is missing")
    written = element.get("Ccy")
    try:
        unit = _UNITS.get(written)
        if unit is None:
            currency = (written or "").strip()
            unit = currency, minor_unit_exponent(currency)
            if written == currency:
                _UNITS[written] = unit
        return decimal_text_to_minor(text, unit[1]), unit[0]
    except MoneyTextInvalid as error:
        raise _Bad(str(error)) from None


def _amount(element: Element | None, where: str) -> tuple[int, str]:
    try:
        return _money(element)
    except _Bad as bad:
        raise StatementInvalid(f"{where}: {bad}") from None


def _direction(text: str | None) -> CreditDebit:
    direction = _DIRECTIONS.get(text or "")
    if direction is None:
        raise _Bad(f"CdtDbtInd {text!r} is neither CRDT nor DBIT")
    return direction


def _reversal(text: str | None) -> bool:
    value = _BOOLEANS.get((text or "false").lower())
    if value is None:
        raise _Bad(f"RvslInd {text!r} is not a boolean")
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
    code, proprietary, indicator, day, moment, amount_element = tags.read(element, _BALANCE)
    code = code or proprietary or ""
    where = f"{where}, balance {code}"
    amount, currency = _amount(amount_element, where)
    try:
        if indicator is None:
            notes.append(f"balance {code} has no CdtDbtInd: read as a credit")
        elif _direction(indicator) == "DBIT":
            amount = -amount
        when = _day(day or moment)
    except _Bad as bad:
        raise StatementInvalid(f"{where}: {bad}") from None
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
    statement_id, created_at, from_at, to_at, currency, iban, other_id, balance_elements = (
        tags.read(statement, _HEADER)
    )
    if statement_id is None:
        raise StatementInvalid("a <Stmt> has no <Id>")
    where = f"statement {statement_id}"
    notes: list[str] = []
    balances = [_balance(tags, b, where, notes) for b in balance_elements or ()]
    entry_amount = None if entry is None else next(entry.iterchildren(tags.amount), None)
    currency = (
        currency
        or next((b.currency for b in balances), None)
        or (None if entry_amount is None else entry_amount.get("Ccy"))
    )
    if currency is None:
        currency = "XXX"  # ISO 4217 "no currency": a statement without any amount
        notes.append("no currency anywhere in the statement: XXX")
    return _Header(
        statement_id=statement_id,
        account=iban or other_id,
        currency=currency,
        from_date=_date(from_at, where),
        to_date=_date(to_at, where),
        created=_date(created_at, where) or created,
        balances=balances,
        notes=notes,
    )


def _batch(tags: _Tags, element: Element) -> Batch:
    count, indicator, total = tags.read(element, _BATCH)
    if count is not None and not count.isdecimal():  # what int() reads
        raise _Bad(f"NbOfTxs {count!r} is not a number")
    total_fen, currency = (None, None) if total is None else _money(total)
    return Batch(
        number_of_transactions=None if count is None else int(count),
        total_fen=total_fen,
        currency=currency,
        credit_debit=None if indicator is None else _direction(indicator),
    )


def _detail_amount(tags: _Tags, details: list[Element]) -> Element | None:
    """AmtDtls/TxAmt/Amt, else AmtDtls/InstdAmt/Amt (each the first in the document)."""
    steps, size = tags.steps(_AMOUNT_DETAILS)
    instructed = None
    for element in details:
        transaction, instructed_here = _walk(element, steps, size)
        if transaction is not None:
            return transaction  # type: ignore[no-any-return]
        if instructed is None:  # an element's truth is its number of children
            instructed = instructed_here
    return instructed


def _transaction(tags: _Tags, element: Element, steps: _Steps, size: int) -> TransactionDetail:
    """One TxDtls: its amount is TxDtls/Amt (from .001.04 on), else the AmtDtls one."""
    (
        amount_element,
        details,
        end_to_end,
        instruction,
        mandate,
        transaction_id,
        acct_svcr_ref,
        indicator,
        unstructured,
        creditor_ref,
        return_reason,
        name,
        party_name,
        iban,
        other_id,
    ) = _walk(element, steps, size)
    if amount_element is None and details is not None:
        amount_element = _detail_amount(tags, details)
    amount_fen, currency = (None, None) if amount_element is None else _money(amount_element)
    return TransactionDetail(
        end_to_end_id=end_to_end,
        instruction_id=instruction,
        mandate_id=mandate,
        transaction_id=transaction_id,
        acct_svcr_ref=acct_svcr_ref,
        amount_fen=amount_fen,
        currency=currency,
        credit_debit=None if indicator is None else _direction(indicator),
        counterparty_name=name or party_name,
        counterparty_account=iban or other_id,
        remittance_info=None if unstructured is None else "\n".join(unstructured),
        creditor_reference=creditor_ref,
        return_reason=return_reason,
    )


class _Reader:
    """Reads the stream of completed ``<Ntry>`` and ``<Stmt>`` elements into lines, and
    statements when ``keep`` (else the lines are only counted)."""

    def __init__(
        self,
        tags: _Tags,
        max_lines: int,
        *,
        keep: bool = True,
        share: tuple[int, int, int] | None = None,
    ) -> None:
        self.tags = tags
        self.max_lines = max_lines
        self.keep = keep
        # A reader of one share (start, stop, n) reads the entries whose number (0-based, in
        # file order) modulo n is in [start, stop), and keeps each statement's header with
        # them (``parts``), unclosed; its lines' keys are their digests, which
        # ``merge_shares`` makes keys in file order.
        self.share = share
        self.key_of = LineKeys().of_text if share is None else line_digest
        self.parts: list[tuple[_Header, list[StatementLine]]] = []
        self.message_id: str | None = None
        self.created: date | None = None
        self.statements: list[Statement] = []
        self.statement_count = 0
        self.current: Element | None = None
        self.header: _Header | None = None
        self.lines: list[StatementLine] = []
        self.line_count = 0
        self.transaction_count = 0
        self.entry_steps = tags.steps(_ENTRY)
        self.transaction_steps = {
            "CRDT": tags.steps(_CREDIT_TRANSACTION),
            "DBIT": tags.steps(_DEBIT_TRANSACTION),
        }

    def group_header(self, element: Element) -> None:
        """MsgId and CreDtTm of GrpHdr (complete before the first statement arrives)."""
        message_id, created = self.tags.read(element.getroottree().getroot(), _GROUP_HEADER)
        self.message_id = message_id
        self.created = _date(created, "GrpHdr")

    def _open(self, statement: Element, first_entry: Element | None) -> _Header:
        parent = statement.getparent()
        if statement.tag != self.tags.tag("Stmt") or parent is None:
            raise StatementInvalid("an <Ntry> outside a <Stmt>")
        if parent.tag != self.tags.tag("BkToCstmrStmt") or parent.getparent() is None:
            raise StatementInvalid("a <Stmt> outside Document/BkToCstmrStmt")
        if self.statement_count >= MAX_STATEMENTS:
            raise StatementInvalid(f"more than {MAX_STATEMENTS} statements in one message")
        self.current, self.lines = statement, []
        self.header = _header(self.tags, statement, first_entry, self.created)
        return self.header

    def entry(self, element: Element) -> StatementLine | None:
        """The line of one ``<Ntry>``; ``None`` for an entry of another share."""
        parent = element.getparent()
        if parent is None:
            raise StatementInvalid("an <Ntry> outside a <Stmt>")
        header = self.header if parent is self.current else None
        header = header or self._open(parent, element)
        self.line_count += 1
        if self.line_count > self.max_lines:
            raise StatementInvalid(f"more than {self.max_lines} entries in one file")
        if self.share is not None:
            start, stop, n = self.share
            if not start <= (self.line_count - 1) % n < stop:
                _release(element, parent, self.tags.entry)
                return None
        try:
            line = self._line(element, self.line_count, header)
        except _Bad as bad:
            where = f"statement {header.statement_id}, line {self.line_count}"
            raise StatementInvalid(f"{where}: {bad}") from None
        self.transaction_count += len(line.transactions)
        if self.transaction_count > MAX_TRANSACTIONS:
            raise StatementInvalid(f"more than {MAX_TRANSACTIONS} TxDtls in one file")
        if self.keep:
            self.lines.append(line)
        _release(element, parent, self.tags.entry)
        return line

    def _line(self, element: Element, line: int, header: _Header) -> StatementLine:
        """One ``<Ntry>``; a field that cannot be read raises ``_Bad``."""
        (
            amount_element,
            indicator,
            reversal_text,
            status,
            status_code,
            status_other,
            bank_ref,
            entry_ref,
            additional,
            booked_day,
            booked_at,
            valued_day,
            valued_at,
            domain,
            family,
            sub_family,
            proprietary_code,
            batch_elements,
            tx_elements,
        ) = _walk(element, *self.entry_steps)
        amount_fen, currency = _money(amount_element)
        direction = _direction(indicator)
        tags = self.tags
        batches = () if batch_elements is None else tuple([_batch(tags, b) for b in batch_elements])
        if tx_elements is None:
            transactions: tuple[TransactionDetail, ...] = ()
            end_to_end = account = name = remittance = None
            tx_refs = ""
        else:
            steps, size = self.transaction_steps[direction]
            transactions = tuple([_transaction(tags, t, steps, size) for t in tx_elements])
            end_to_end, account, name, remittance = _line_references(transactions)
            tx_refs = ",".join([t.transaction_id or t.acct_svcr_ref or "" for t in transactions])
        booked, booked_text = _day_and_text(booked_day or booked_at)
        valued, valued_text = _day_and_text(valued_day or valued_at)
        reversal = _reversal(reversal_text)
        own = header.account
        if domain or family or sub_family:
            code = f"{domain or ''}/{family or ''}/{sub_family or ''}"
        else:
            code = proprietary_code  # PMNT/RCDT/ESCT, else the bank's own code
        key = self.key_of(  # the text LineKeys.next makes of the same fields
            f"{own}\x1f{currency}\x1f{bank_ref}\x1f{entry_ref}\x1f{booked_text}\x1f{valued_text}"
            f"\x1f{direction}\x1f{amount_fen}\x1f{reversal}\x1f{end_to_end}\x1f{tx_refs}"
        )
        return StatementLine(
            line=line,
            key=key,
            booking_date=booked,
            value_date=valued,
            amount_fen=amount_fen,
            currency=currency,
            credit_debit=direction,
            reversal=reversal,
            status=status or status_code or status_other,
            acct_svcr_ref=bank_ref,
            entry_ref=entry_ref,
            bank_transaction_code=code,
            batches=batches,
            transactions=transactions,
            end_to_end_id=end_to_end,
            counterparty_account=account,
            counterparty_name=name,
            remittance_info=remittance,
            additional_info=additional,
            own_account=own,
        )

    def statement(self, element: Element) -> None:
        header = self.header if element is self.current else None
        header = header or self._open(element, None)
        self.statement_count += 1
        if self.share is not None:
            self.parts.append((header, self.lines))
        elif self.keep:
            self.statements.append(_close(header, self.lines))
        self.current, self.header, self.lines = None, None, []
        element.clear()


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


def _release(entry: Element, statement: Element, entry_tag: str) -> None:
    """Free a read entry, and the one before it (lxml may still hold the current one)."""
    entry.clear()
    previous = entry.getprevious()
    if previous is not None and previous.tag == entry_tag:
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


def _read(data: bytes, reader: _Reader) -> Iterator[StatementLine]:
    """Every entry of the document as a line, in file order, with the statements closed
    on ``reader`` as their ends arrive."""
    tags = reader.tags
    entry_tag = tags.entry
    stream = _parser_stream(data, ("end",), (entry_tag, tags.tag("Stmt")))
    try:
        for count, (_event, element) in enumerate(stream):
            if count == 0:
                reader.group_header(element)
            if element.tag == entry_tag:
                line = reader.entry(element)
                if line is not None:
                    yield line
            else:
                reader.statement(element)
    except etree.XMLSyntaxError as error:
        raise StatementInvalid(f"not well-formed XML: {error}") from None
    if not reader.statement_count:
        raise StatementInvalid("a camt.053 document holds at least one <Stmt>")


def parse_camt053(data: bytes, *, max_lines: int = MAX_LINES) -> ParsedStatement:
    """Every statement, balance, entry and TxDtls of a camt.053 message (see the module
    docstring for the field choices). Raises ``StatementInvalid`` for XML that is not
    well-formed or is truncated, another root or namespace, a DOCTYPE, a missing or inexact
    amount (more decimals than the currency has), or more than ``max_lines`` entries."""
    format_name, tags = _sniff(data)
    reader = _Reader(tags, max_lines)
    for _line in _read(data, reader):
        pass
    return ParsedStatement(
        file_sha256=file_sha256(data),
        format=format_name,
        statements=tuple(reader.statements),
        message_id=reader.message_id,
    )


def iter_statement_lines(
    data: bytes, *, max_bytes: int = MAX_STATEMENT_BYTES, max_lines: int = MAX_LINES
) -> Iterator[StatementLine]:
    """The lines ``parse_statement`` gives for a camt.053 file (the same numbers, keys and
    fields), one at a time in file order, keeping none: for an import that stores lines as
    it reads them, in flat memory. The statements, their balances and checks are not built
    (``parse_statement`` has them). An empty, oversized or non-camt.053 file is refused
    here, before the first line; a file that turns out unreadable further on raises
    ``StatementInvalid`` from the iteration, after the lines before the fault were yielded,
    so a caller that must store all or nothing stores them in one transaction."""
    check_statement_bytes(data, max_bytes)
    _format_name, tags = _sniff(data)
    return _read(data, _Reader(tags, max_lines, keep=False))


# ---- a file read in shares, by several processes (treasury/parallel_parse.py) ----------------
Part = tuple[_Header, list[StatementLine]]  # one statement's header and the lines of one share


@dataclass(frozen=True, slots=True)
class Share:
    """What the reader of one share found: every statement's header with that share's lines
    (keys not yet made: digests), and the numbers that are checked over the whole file."""

    format: str
    message_id: str | None
    parts: list[Part]
    transaction_count: int


def parse_camt053_share(
    data: bytes, share: tuple[int, int, int], *, max_lines: int = MAX_LINES
) -> Share:
    """The entries of share ``share`` = (start, stop, n) of a camt.053 file: those whose
    number (0-based, in file order) modulo n is in [start, stop), read as ``parse_camt053``
    reads them. Every share parses the
    whole document (the XML, the statements' headers, the count of entries), and reads only
    its own entries into lines, which is most of the cost."""
    format_name, tags = _sniff(data)
    reader = _Reader(tags, max_lines, share=share)
    for _line in _read(data, reader):
        pass
    return Share(format_name, reader.message_id, reader.parts, reader.transaction_count)


def merge_shares(data: bytes, shares: Sequence[Share]) -> ParsedStatement:
    """The ``ParsedStatement`` of the file the shares were read from (every share of it, from
    the same bytes): each statement's lines in file order, keyed in file order. Raises
    ``StatementInvalid`` when the file has more TxDtls than one import reads."""
    if sum(s.transaction_count for s in shares) > MAX_TRANSACTIONS:
        raise StatementInvalid(f"more than {MAX_TRANSACTIONS} TxDtls in one file")
    keys = LineKeys()
    statements = []
    for parts in zip(*(s.parts for s in shares), strict=True):
        lines = sorted(
            [line for _header, share_lines in parts for line in share_lines], key=_number
        )
        for i, line in enumerate(lines):
            key = keys.of_digest(line.key)
            if key != line.key:  # a line identical to one before it: rare
                lines[i] = dataclasses.replace(line, key=key)
        statements.append(_close(parts[0][0], lines))
    first = shares[0]
    return ParsedStatement(
        file_sha256=file_sha256(data),
        format=first.format,
        statements=tuple(statements),
        message_id=first.message_id,
    )


def _number(line: StatementLine) -> int:
    return line.line
