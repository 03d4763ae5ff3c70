"""Bank statements as data: what one import of a camt.053 or CSV file holds, parser-neutral.

Every amount is an ``int`` in the minor unit of its own currency (fen for CNY, cents for EUR,
yen for JPY); the ``_fen`` suffix is the project's word for "minor unit" and is kept for other
currencies too, as in API_CONTRACT.md §4c. Balances are signed (a debit balance is negative);
line amounts are non-negative with their direction in ``credit_debit``.

``parse_statement`` is the one door: it picks the parser by content type (sniffing when the
type says nothing), and either returns everything the file holds or raises
``StatementInvalid`` having returned nothing, so the caller stores all or nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Literal

from ledger.errors import LedgerError

CreditDebit = Literal["CRDT", "DBIT"]

# A 100,000-entry camt.053 is 40-90 MB written compactly, about 180 MB as verbosely as the
# Belgian fixture (subite-camt-to-coda); 256 MiB takes both (the import's peak memory is set
# by its lines, about 5 KB each, not by the file).
MAX_STATEMENT_BYTES = 256 * 1024 * 1024
MAX_LINES = 250_000  # entries (bank lines) in one import
MAX_TRANSACTIONS = 1_000_000  # TxDtls in one import (a batch entry can carry thousands)
MAX_STATEMENTS = 10_000  # <Stmt> in one message, or account/currency groups in one CSV
NOT_PROVIDED = "NOTPROVIDED"  # ISO 20022's filler for a reference the sender did not give
LINE_KEY_HEX_LEN = 32

XML_TYPES = frozenset({"application/xml", "text/xml"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
SNIFF_TYPES = frozenset({"", "application/octet-stream", "text/plain"})


class StatementInvalid(LedgerError):
    """A bank statement that cannot be read: truncated, of an unknown layout, or with an
    amount that is not exact decimal text. Nothing of it is stored."""

    slug = "statement-invalid"
    http_status = 422
    title = "Bank statement cannot be read"


@dataclass(frozen=True, slots=True)
class Balance:
    """One ``<Bal>``: ``type_code`` is its code (OPBD, PRCD, CLBD, CLAV, FWAV, OPAV, ...) or
    proprietary text; ``amount_fen`` signed in minor units of ``currency``. ``derived`` marks
    a balance a CSV parser worked out from the running-balance column."""

    type_code: str
    amount_fen: int
    currency: str
    date: date | None
    derived: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """``<Btch>`` of an entry: how many transactions it aggregates and their total (minor
    units, ``None`` when the bank left it out)."""

    number_of_transactions: int | None
    total_fen: int | None
    currency: str | None
    credit_debit: CreditDebit | None


@dataclass(frozen=True, slots=True)
class TransactionDetail:
    """One ``<TxDtls>`` of an entry. The counterparty is the other party: the debtor of a
    credit entry, the creditor of a debit entry. ``amount_fen`` is in ``currency``'s minor
    unit (it can differ from the entry's) and ``None`` when the bank gave no amount."""

    end_to_end_id: str | None
    instruction_id: str | None
    mandate_id: str | None
    transaction_id: str | None
    acct_svcr_ref: str | None
    amount_fen: int | None
    currency: str | None
    credit_debit: CreditDebit | None
    counterparty_name: str | None
    counterparty_account: str | None
    remittance_info: str | None
    creditor_reference: str | None
    return_reason: str | None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One bank line (a camt.053 ``<Ntry>``, or a CSV row). ``line`` is 1-based and counts
    across the whole import, in file order; ``key`` is a stable identity of the line built
    from its content (see ``LineKeys``), since no bank reference is unique on its own.
    ``amount_fen`` is non-negative in ``currency``'s minor unit, its direction in
    ``credit_debit``. ``end_to_end_id``, ``counterparty_*`` and ``remittance_info`` are the
    first its transactions give (camt.053) or its columns (CSV). CSV lines also carry
    ``booking_time``, the running ``balance_after_fen`` (signed), the bank's
    ``transaction_id`` and the other columns as ``additional_info``; ``own_account`` is the
    account the line is booked on (the statement's)."""

    line: int
    key: str
    booking_date: date | None
    value_date: date | None
    amount_fen: int
    currency: str
    credit_debit: CreditDebit
    reversal: bool
    status: str | None
    acct_svcr_ref: str | None
    entry_ref: str | None
    bank_transaction_code: str | None
    batches: tuple[Batch, ...]
    transactions: tuple[TransactionDetail, ...]
    end_to_end_id: str | None
    counterparty_account: str | None
    counterparty_name: str | None
    remittance_info: str | None
    additional_info: str | None = None
    booking_time: time | None = None
    balance_after_fen: int | None = None
    transaction_id: str | None = None
    own_account: str | None = None

    @property
    def signed_fen(self) -> int:
        """The amount with its booking direction: credits positive, debits negative."""
        return self.amount_fen if self.credit_debit == "CRDT" else -self.amount_fen

    @property
    def is_batch(self) -> bool:
        """A ``<Btch>`` or more than one transaction under one booking."""
        return bool(self.batches) or len(self.transactions) > 1


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of one account in one currency. ``opening_balance_fen`` is OPBD (or
    PRCD), ``closing_balance_fen`` CLBD, both signed; every balance the file gives is in
    ``balances``. ``balances_add_up`` is exactly opening + Σ credits − Σ debits == closing,
    using each line's own CdtDbtInd (reversals are not flipped: the bank's indicator already
    books them in the right direction), and ``None`` when either balance is missing.
    ``difference_fen`` = closing − (opening + Σ signed). ``explained_difference_fen`` is the
    part of it that lines valued after the statement's closing date account for: 0 when the
    balances add up, the whole difference when taking those lines out makes the rest add up,
    else 0. ``notes`` records every assumption the parser made (nothing silent)."""

    statement_id: str
    account: str | None
    currency: str
    from_date: date | None
    to_date: date | None
    opening_balance_fen: int | None
    closing_balance_fen: int | None
    balances: tuple[Balance, ...]
    lines: tuple[StatementLine, ...]
    balances_add_up: bool | None
    difference_fen: int | None
    explained_difference_fen: int | None
    notes: tuple[str, ...] = ()

    @property
    def credit_count(self) -> int:
        return sum(1 for line in self.lines if line.credit_debit == "CRDT")

    @property
    def debit_count(self) -> int:
        return len(self.lines) - self.credit_count

    @property
    def credit_total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.credit_debit == "CRDT")

    @property
    def debit_total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.credit_debit == "DBIT")


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """One import: the file's SHA-256 (hex), its ``format`` (``camt.053.001.02``,
    ``camt.053.001.08``, ``csv:icbc-debit-v2``, ...), its statements in file order, and the
    rows that are not bank lines (CSV preamble and trailer rows, verbatim)."""

    file_sha256: str
    format: str
    statements: tuple[Statement, ...]
    message_id: str | None = None
    skipped_rows: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[StatementLine, ...]:
        return tuple(line for statement in self.statements for line in statement.lines)

    @property
    def line_count(self) -> int:
        return sum(len(statement.lines) for statement in self.statements)


class LineKeys:
    """Stable line identities for one import: a digest of what the bank says about the line,
    plus how many identical lines came before it in the same file, so two identical coffee
    purchases on one day stay two lines and a re-import of the same file gives the same keys."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, material: Sequence[object]) -> str:
        # None becomes "None": stable, that is enough
        return self.of_text("\x1f".join(map(str, material)))

    def of_text(self, text: str) -> str:
        """The key of a line whose material ``next`` would join into ``text`` (a parser
        that formats the fields itself saves the tuple)."""
        return self.of_digest(line_digest(text))

    def of_digest(self, base: str) -> str:
        """The key of the next line whose text has the digest ``base`` (``line_digest``):
        ``base`` itself the first time, then with how many came before it."""
        occurrence = self._seen.get(base)
        if occurrence is None:
            self._seen[base] = 1
            return base
        self._seen[base] = occurrence + 1
        return f"{base[: LINE_KEY_HEX_LEN - 6]}#{occurrence:05d}"


def line_digest(text: str) -> str:
    """What a line's key starts from: a digest of the text ``LineKeys`` joins its material
    into. A parser that reads a file in parts works out digests in each and the keys, which
    depend on the lines before, in file order."""
    return hashlib.blake2b(text.encode(), digest_size=LINE_KEY_HEX_LEN // 2).hexdigest()


def _pick_balance(balances: Sequence[Balance], codes: Sequence[str]) -> Balance | None:
    for code in codes:
        for balance in balances:
            if balance.type_code == code:
                return balance
    return None


def _explained(difference: int, lines: Sequence[StatementLine], cutoff: date | None) -> int:
    """The difference if lines valued after ``cutoff`` account for it exactly, else 0."""
    if difference == 0 or cutoff is None:
        return 0
    late = sum(line.signed_fen for line in lines if line.value_date and line.value_date > cutoff)
    return difference if late != 0 and late == -difference else 0


@dataclass(frozen=True, slots=True)
class _Check:
    add_up: bool | None = None
    difference_fen: int | None = None
    explained_fen: int | None = None
    note: str | None = None


def _check(
    opening: Balance | None,
    closing: Balance | None,
    lines: Sequence[StatementLine],
    currency: str,
    to_date: date | None,
    running_balances_consistent: bool | None,
) -> _Check:
    """The balance check of ``Statement``; nothing to check without both balances."""
    if opening is None or closing is None:
        return _Check()
    difference = closing.amount_fen - opening.amount_fen - sum(x.signed_fen for x in lines)
    units = {opening.currency, closing.currency} | {x.currency for x in lines}
    one_unit = units == {currency}
    note = None if one_unit else f"amounts in {sorted(units)} cannot add up in {currency}"
    add_up = difference == 0 and one_unit and running_balances_consistent is not False
    explained = 0 if add_up else _explained(difference, lines, closing.date or to_date)
    return _Check(add_up, difference, explained, note)


def make_statement(
    *,
    statement_id: str,
    account: str | None,
    currency: str,
    from_date: date | None,
    to_date: date | None,
    balances: Sequence[Balance],
    lines: Sequence[StatementLine],
    notes: Sequence[str] = (),
    running_balances_consistent: bool | None = None,
) -> Statement:
    """A ``Statement`` with its balance check done (see ``Statement``). ``balances`` of
    another currency than ``currency``, or lines in another currency, make the check false
    (with a note): amounts in two units cannot add up. ``running_balances_consistent``, from
    a CSV parser, must also hold for the balances to add up."""
    opening = _pick_balance(balances, ("OPBD", "PRCD"))
    closing = _pick_balance(balances, ("CLBD",))
    check = _check(opening, closing, lines, currency, to_date, running_balances_consistent)
    return Statement(
        statement_id=statement_id,
        account=account,
        currency=currency,
        from_date=from_date,
        to_date=to_date,
        opening_balance_fen=None if opening is None else opening.amount_fen,
        closing_balance_fen=None if closing is None else closing.amount_fen,
        balances=tuple(balances),
        lines=tuple(lines),
        balances_add_up=check.add_up,
        difference_fen=check.difference_fen,
        explained_difference_fen=check.explained_fen,
        notes=(*notes, check.note) if check.note else tuple(notes),
    )


def file_sha256(data: bytes) -> str:
    """Hex SHA-256 of the file's bytes: the identity of an import."""
    return hashlib.sha256(data).hexdigest()


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _looks_like_xml(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def check_statement_bytes(data: bytes, max_bytes: int = MAX_STATEMENT_BYTES) -> None:
    """Refuse an empty (or blank) file and one over ``max_bytes``."""
    if not data or data.isspace():  # not data.strip(): that copies the whole file
        raise StatementInvalid("the statement file is empty")
    if len(data) > max_bytes:
        raise StatementInvalid(f"the statement file is over {max_bytes} bytes")


def parse_statement(
    data: bytes,
    content_type: str,
    *,
    max_bytes: int = MAX_STATEMENT_BYTES,
    max_lines: int = MAX_LINES,
) -> ParsedStatement:
    """Parse one bank statement file. ``content_type`` ``application/xml`` or ``text/xml``
    (or any ``+xml``) is camt.053; ``text/csv`` is CSV (the project's layout or a bank's,
    found from the header row); an empty, ``application/octet-stream`` or ``text/plain``
    type is sniffed. At most ``max_bytes`` bytes and ``max_lines`` bank lines; anything else
    unreadable raises ``StatementInvalid``."""
    # Imported here: the parsers build this module's types, so they import it first.
    from treasury import bank_csv, parallel_parse

    check_statement_bytes(data, max_bytes)
    media = _media_type(content_type)
    if media in SNIFF_TYPES:
        media = "application/xml" if _looks_like_xml(data) else "text/csv"
    if media in XML_TYPES or media.endswith("+xml"):
        return parallel_parse.parse_camt053(data, max_lines=max_lines)
    if media in CSV_TYPES:
        return bank_csv.parse_csv(data, max_lines=max_lines)
    raise StatementInvalid(f"content type {content_type!r} is neither camt.053 XML nor CSV")
