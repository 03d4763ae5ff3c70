"""Where the read models live: tables beside the event log (the same SQLite file, the same
PostgreSQL schema), each batch of rows written in one transaction with the tracking position.

The stores are eventsourcing tracking recorders (``SQLiteTrackingRecorder``,
``PostgresTrackingRecorder``): the position goes in eventsourcing's tracking table through its own
``_insert_tracking``, inside our transaction, after a compare-and-set on the position the batch was
computed from. So a batch is applied exactly once, and two projectors on one store (a server's
and a ``rebuild-projections``) cannot interleave: the one whose start position moved rolls back and
starts again from the stored rows."""

from __future__ import annotations

import fcntl
import operator
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.persistence import OperationalError as PersistenceOperationalError
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from ledger.adapters.postgres import (
    looks_alive,
    own_connection,
    same_database,
    schema_creation_lock,
)
from ledger.settings import Settings
from ledger.views import FundingSourceView

TRACKING_NAME = "ledger-views"
VIEWS_ENV_NAME = "LedgerViews"
MAX_PAGE = 500
MAX_LINES_PER_REDEMPTION = 11  # ten sources (a programme's most) and the bonus

Row = dict[str, Any]
Key = tuple[Any, ...]

_NAME_RE = re.compile(r"[a-z_]+")

# Parameters in one IN list: well under SQLite's 32,766 and PostgreSQL's 65,535.
_IN_LIST_CHUNK = 1_000


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: each is a constant
class Table:
    """One read-model table: its key columns, then the rest, with their SQL types."""

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, SQL type and constraints), key columns first
    indexes: tuple[tuple[str, ...], ...] = ()
    checks: tuple[str, ...] = ()

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @cached_property
    def values_of(self) -> Callable[[Row], tuple[Any, ...]]:
        """A row's values in column order (``operator.itemgetter``: this runs for every row a
        projector writes)."""
        return _tuple_getter(self.names)

    @cached_property
    def key_of(self) -> Callable[[Row], Key]:
        return _tuple_getter(self.key)


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Row], tuple[Any, ...]]:
    getter = operator.itemgetter(*names)
    if len(names) == 1:
        return lambda row: (getter(row),)
    return getter  # type: ignore[return-value]


MONEY = "BIGINT NOT NULL"
TEXT = "TEXT NOT NULL"
INT = "INTEGER NOT NULL"
POSITION = ("position", "BIGINT NOT NULL")  # the last event that changed the row

SOURCES = Table(
    "proj_source",
    ("aggregate_id",),
    (
        ("aggregate_id", TEXT),
        ("source_id", TEXT),
        ("name", TEXT),
        ("level", TEXT),
        ("fiscal_year", INT),
        ("document_ref", TEXT),
        ("appropriation_fen", MONEY),
        ("reserved_fen", MONEY),
        ("released_fen", MONEY),
        ("post_subsidy_reserved_fen", MONEY),
        ("post_subsidy_released_fen", MONEY),
        ("disbursed_fen", MONEY),
        ("post_subsidy_fen", MONEY),  # accrued to providers (clawbacks count as recovered)
        ("paid_fen", MONEY),  # settled by payouts (bank lines), returns taken off
        ("recovered_fen", MONEY),
        ("live_vouchers", INT),
        POSITION,
    ),
    indexes=(("source_id",),),
    checks=(
        "reserved_fen >= released_fen",
        "released_fen >= 0",
        "post_subsidy_reserved_fen >= post_subsidy_released_fen",
        "post_subsidy_released_fen >= 0",
        "live_vouchers >= 0",
        # Nothing is owed beyond what the source was given (DESIGN.md §3).
        "appropriation_fen - reserved_fen + released_fen - post_subsidy_reserved_fen"
        " + post_subsidy_released_fen + recovered_fen >= 0",
    ),
)
ENTERPRISE_YEARS = Table(
    "proj_enterprise_year",
    ("aggregate_id",),
    (
        ("aggregate_id", TEXT),
        ("institution_id", TEXT),
        ("fiscal_year", INT),
        ("subsidy_received_fen", MONEY),
        ("clawed_back_fen", MONEY),
        ("cap_fen", "BIGINT"),
        POSITION,
    ),
    indexes=(("institution_id", "fiscal_year"),),
    checks=("subsidy_received_fen >= clawed_back_fen", "clawed_back_fen >= 0"),
)
PROVIDER_YEARS = Table(
    "proj_provider_year",
    ("aggregate_id",),
    (
        ("aggregate_id", TEXT),
        ("institution_id", TEXT),
        ("fiscal_year", INT),
        ("redeemed_contract_fen", MONEY),
        ("subsidy_earned_fen", MONEY),
        ("post_subsidy_accrued_fen", MONEY),
        ("post_subsidy_clawed_back_fen", MONEY),
        ("post_subsidy_cap_fen", "BIGINT"),
        POSITION,
    ),
    indexes=(("institution_id", "fiscal_year"),),
    checks=(
        "post_subsidy_accrued_fen >= post_subsidy_clawed_back_fen",
        "post_subsidy_clawed_back_fen >= 0",
    ),
)
VOUCHERS = Table(
    "proj_voucher",
    ("voucher_id",),
    (
        ("voucher_id", TEXT),
        ("programme_id", TEXT),
        ("holder_id", TEXT),
        ("fiscal_year", INT),
        ("face_value_fen", MONEY),
        ("remaining_fen", MONEY),
        ("valid_until", TEXT),
        ("status", TEXT),
        ("source_ids", TEXT),  # comma-separated: the sources it reserved on
        ("issued_position", "BIGINT NOT NULL"),
        ("issued_at", TEXT),
        POSITION,
    ),
    indexes=(("holder_id", "issued_position"), ("programme_id", "issued_position")),
    checks=("remaining_fen >= 0", "remaining_fen <= face_value_fen"),
)
PAYABLES = Table(
    "proj_payable",
    ("redemption_id", "line"),
    (
        ("redemption_id", TEXT),
        ("line", TEXT),  # "subsidy:<source id>" or "bonus"
        ("kind", TEXT),  # subsidy or bonus
        ("source_id", TEXT),
        ("provider_id", TEXT),
        ("holder_id", TEXT),
        ("programme_id", TEXT),
        ("voucher_id", TEXT),
        ("contract_no", TEXT),
        ("fiscal_year", INT),
        ("amount_fen", MONEY),
        ("clawed_back_fen", MONEY),
        ("paid_fen", MONEY),
        ("payout_id", "TEXT"),  # the live payout that holds it, if any
        ("recorded_at", TEXT),
        ("redeemed_position", "BIGINT NOT NULL"),
        POSITION,
    ),
    indexes=(
        ("source_id", "redeemed_position"),
        ("provider_id", "fiscal_year", "redeemed_position"),
        ("provider_id", "source_id", "redeemed_position"),
    ),
    checks=("amount_fen >= clawed_back_fen + paid_fen", "clawed_back_fen >= 0", "paid_fen >= 0"),
)
REDEMPTIONS = Table(
    "proj_redemption",
    ("redemption_id",),
    (
        ("redemption_id", TEXT),
        ("provider_id", TEXT),
        ("holder_id", TEXT),
        ("voucher_id", TEXT),
        ("programme_id", TEXT),
        ("fiscal_year", INT),
        ("contract_no", TEXT),
        ("invoice_no", TEXT),
        ("contract_amount_fen", MONEY),
        ("subsidy_fen", MONEY),
        ("service_date", TEXT),
        ("recorded_at", TEXT),
        ("recorded_day", TEXT),  # the day in China Standard Time (UTC+8)
        ("redeemed_by", TEXT),
        ("clawed_back", INT),
        ("redeemed_position", "BIGINT NOT NULL"),
        POSITION,
    ),
    indexes=(("provider_id", "holder_id"), ("provider_id", "recorded_day"), ("invoice_no",)),
)
INSTITUTIONS = Table(
    "proj_institution",
    ("aggregate_id",),
    (
        ("aggregate_id", TEXT),
        ("institution_id", TEXT),
        ("name", TEXT),
        ("kind", TEXT),
        ("bank_account", "TEXT"),
        ("contact", "TEXT"),
        ("frozen", INT),
        POSITION,
    ),
    indexes=(("institution_id",), ("bank_account",), ("contact",)),
)
REFUSALS = Table(
    "proj_refusal",
    ("attempt_id",),
    (
        ("attempt_id", TEXT),
        ("slug", TEXT),
        ("provider_id", TEXT),
        ("voucher_id", TEXT),
        ("contract_no", TEXT),
        ("invoice_no", TEXT),
        ("contract_amount_fen", MONEY),
        ("detail", TEXT),
        ("attempted_by", TEXT),
        ("recorded_at", TEXT),
        POSITION,
    ),
    indexes=(("slug",), ("invoice_no",)),
)
# A payable line's aggregate (ledger/payouts.py) to the payables row it is: its events name
# only themselves.
PAYABLE_LINES = Table(
    "proj_payable_line",
    ("line_id",),
    (("line_id", TEXT), ("redemption_id", TEXT), ("line", TEXT), POSITION),
)
PAYOUTS = Table(
    "proj_payout",
    ("payout_id",),
    (
        ("payout_id", TEXT),
        ("payee_id", TEXT),
        ("source_id", TEXT),
        ("amount_fen", MONEY),
        ("line_count", INT),
        ("status", TEXT),
        ("created_by", TEXT),
        ("approved_by", "TEXT"),
        ("end_to_end_id", "TEXT"),
        ("bank_account", "TEXT"),
        ("payee_name", "TEXT"),
        ("created_at", TEXT),
        ("approved_at", "TEXT"),
        ("closed_at", "TEXT"),  # settled, returned or cancelled
        ("created_position", "BIGINT NOT NULL"),
        POSITION,
    ),
    indexes=(("status", "created_position"), ("payee_id", "created_position"), ("end_to_end_id",)),
    checks=("amount_fen > 0",),
)
GUARANTEE_CLAIMS = Table(
    "proj_guarantee_claim",
    ("claim_id",),
    (
        ("claim_id", TEXT),
        ("loan_id", TEXT),
        ("bank_id", TEXT),
        ("pool_id", TEXT),
        ("borrower_id", TEXT),
        ("fiscal_year", INT),
        ("rule", TEXT),
        ("loss_fen", MONEY),
        ("compensation_fen", MONEY),
        ("not_compensated_fen", MONEY),
        ("recovered_fen", MONEY),
        ("returned_fen", MONEY),
        ("status", TEXT),
        ("exempt_net_loss_fen", "BIGINT"),  # 容错纠错: null unless exempted
        ("exemption_ref", "TEXT"),
        ("exempted_on", "TEXT"),
        ("filed_at", TEXT),
        ("filed_position", "BIGINT NOT NULL"),
        POSITION,
    ),
    indexes=(("fiscal_year", "filed_position"), ("bank_id", "filed_position")),
    checks=(
        "compensation_fen + not_compensated_fen = loss_fen",
        "returned_fen <= compensation_fen",
    ),
)
STATEMENTS = Table(
    "proj_statement",
    ("statement_id",),
    (
        ("statement_id", TEXT),
        ("file_sha256", TEXT),
        ("format", TEXT),
        ("account", TEXT),
        ("currency", TEXT),
        ("summary", TEXT),  # the import's summary as JSON (every <Stmt>, balances, checks)
        ("line_count", INT),
        ("matched", INT),
        ("suggested", INT),
        ("unmatched", INT),
        ("ignored", INT),
        ("imported_by", TEXT),
        ("imported_at", TEXT),
        ("imported_position", "BIGINT NOT NULL"),
        POSITION,
    ),
)
BANK_LINES = Table(
    "proj_bank_line",
    ("statement_id", "line"),
    (
        ("statement_id", TEXT),
        ("line", INT),
        ("bank_line_id", TEXT),  # "" for a line listed again as another file's duplicate
        ("account", TEXT),
        ("booking_date", "TEXT"),
        ("value_date", "TEXT"),
        ("amount_fen", MONEY),
        ("currency", TEXT),
        ("credit_debit", TEXT),
        ("reversal", INT),
        ("end_to_end_id", "TEXT"),
        ("counterparty_account", "TEXT"),
        ("counterparty_name", "TEXT"),
        ("reference", "TEXT"),
        ("status", TEXT),
        ("payout_ids", TEXT),  # comma-separated
        ("reason", TEXT),
        POSITION,
    ),
    indexes=(("bank_line_id",), ("status", "booking_date"), ("payout_ids",)),
)
PRINCIPALS = Table(
    "proj_principal",  # who may call the ledger; never a token or its digest
    ("principal_id",),
    (
        ("principal_id", TEXT),
        ("name", TEXT),
        ("role", TEXT),
        ("institution_id", "TEXT"),
        ("revoked", INT),
        ("created_position", "BIGINT NOT NULL"),
        POSITION,
    ),
    indexes=(("created_position",),),
)
ACTIONS = Table(
    "proj_action",  # clawbacks, freezes and unfreezes, revocations: who, why, when
    ("position",),
    (
        POSITION,
        ("kind", TEXT),
        ("subject_id", TEXT),
        ("reason", TEXT),
        ("actor", TEXT),
        ("recorded_at", TEXT),
    ),
)
TABLES = (
    SOURCES,
    ENTERPRISE_YEARS,
    PROVIDER_YEARS,
    VOUCHERS,
    PAYABLES,
    REDEMPTIONS,
    INSTITUTIONS,
    REFUSALS,
    ACTIONS,
    PRINCIPALS,
    PAYABLE_LINES,
    PAYOUTS,
    GUARANTEE_CLAIMS,
    STATEMENTS,
    BANK_LINES,
)


def source_view(row: Row) -> FundingSourceView:
    """A funding source's status from its view row (committed and available derived)."""
    return FundingSourceView.from_totals(
        row["source_id"],
        row["name"],
        row["level"],
        row["fiscal_year"],
        row["appropriation_fen"],
        row["document_ref"],
        row["reserved_fen"],
        row["released_fen"],
        row["post_subsidy_reserved_fen"],
        row["post_subsidy_released_fen"],
        row["recovered_fen"],
    )


class TrackingMoved(Exception):
    """Another projector advanced (or a rebuild reset) the position this batch started from."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"tracking position is now {current}")
        self.current = current


class ViewStore:
    """What both stores share: DDL, the batch write, and the reads the API serves. A subclass
    may keep other tables under another tracking name (the audit chain does)."""

    placeholder = "?"
    datastore: Any
    tables: tuple[Table, ...] = TABLES
    tracking_name = TRACKING_NAME

    # ---- set-up --------------------------------------------------------------------------
    def qualified(self, name: str) -> str:
        assert _NAME_RE.fullmatch(name)
        return name

    def table_statements(self) -> list[str]:
        statements = []
        for t in self.tables:
            columns = ", ".join(f"{n} {sql}" for n, sql in t.columns)
            checks = "".join(f", CHECK ({c})" for c in t.checks)
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(t.name)} "
                f"({columns}, PRIMARY KEY ({', '.join(t.key)}){checks})"
            )
            for cols in t.indexes:
                statements.append(
                    f"CREATE INDEX IF NOT EXISTS {t.name}_{'_'.join(cols)}_idx "
                    f"ON {self.qualified(t.name)} ({', '.join(cols)})"
                )
        return statements

    def _sql(self, text: str) -> str:
        return text.replace("%s", self.placeholder)

    def _upsert(self, t: Table) -> str:
        names = t.names
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in t.key)
        return self._sql(
            f"INSERT INTO {self.qualified(t.name)} ({', '.join(names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))}) "
            f"ON CONFLICT ({', '.join(t.key)}) DO UPDATE SET {updates}"
        )

    # ---- transactions (per store) --------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Any]:
        raise NotImplementedError

    @contextmanager
    def _read(self) -> Iterator[Any]:
        raise NotImplementedError

    def _tracking_now(self, cursor: Any) -> int | None:
        """The position, read by a transaction that will move it (locked till it ends)."""
        raise NotImplementedError

    def _tracking_seen(self, cursor: Any) -> int | None:
        """The position as last committed, for a reader: it takes no lock."""
        return self._tracking_now(cursor)

    def _reset_tracking(self, cursor: Any) -> None:
        raise NotImplementedError

    # ---- writes --------------------------------------------------------------------------
    def commit(
        self,
        expected: int | None,
        position: int | None,
        rows: dict[Table, list[Row]],
        check: Callable[[Any, int | None], None] | None = None,
    ) -> None:
        """Write ``rows`` and move the tracking position from ``expected`` to ``position``, in one
        transaction; raises ``TrackingMoved`` (and writes nothing) if it is no longer
        ``expected``. ``position == expected`` writes rows without moving it."""
        with self._write() as c:
            current = self._tracking_now(c)
            if current != expected:
                raise TrackingMoved(current)
            if check is not None:  # what else the rows were derived from must hold too
                check(c, current)
            for t, changed in rows.items():
                if changed:
                    c.executemany(self._upsert(t), [t.values_of(r) for r in changed])
            if position is not None and position != expected:
                self._insert_tracking(c, Tracking(self.tracking_name, position))  # type: ignore[attr-defined]

    def reset(self) -> None:
        """Empty every view and forget the position, in one transaction: a rebuild from 0."""
        with self._write() as c:
            for t in self.tables:
                c.execute(f"DELETE FROM {self.qualified(t.name)}")
            self._reset_tracking(c)

    def close(self) -> None:
        self.datastore.close()

    # ---- reads ---------------------------------------------------------------------------
    def position(self) -> int:
        """The last log position applied to the views (0: none)."""
        with self._read() as c:
            return self._tracking_seen(c) or 0

    def head_and_position(self, recorder: Any) -> tuple[int, int]:
        """The log's head (``recorder``'s last position) and the views' position."""
        return recorder.max_notification_id() or 0, self.position()

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        with self._read() as c:
            c.execute(self._sql(sql), tuple(params))
            return [_as_dict(r) for r in c.fetchall()]

    def _one(self, sql: str, params: Sequence[Any]) -> Row | None:
        """The first row of a query, or None."""
        found = self._rows(sql, params)
        return found[0] if found else None

    def _tuples(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: for scans where building dicts would cost more than the query."""
        with self._read() as c:
            c.execute(self._sql(sql), tuple(params))
            return [tuple(r) for r in c.fetchall()]

    def fetch(self, t: Table, key: Key) -> Row | None:
        where = " AND ".join(f"{k} = %s" for k in t.key)
        return self._one(f"SELECT * FROM {self.qualified(t.name)} WHERE {where}", key)

    def source(self, source_id: str) -> Row | None:
        return self._one(
            f"SELECT * FROM {self.qualified(SOURCES.name)} WHERE source_id = %s", (source_id,)
        )

    def institution_known(self, institution_id: str) -> bool:
        found = self._one(
            f"SELECT 1 AS known FROM {self.qualified(INSTITUTIONS.name)} WHERE institution_id = %s",
            (institution_id,),
        )
        return found is not None

    def year(self, t: Table, institution_id: str, fiscal_year: int) -> Row | None:
        return self._one(
            f"SELECT * FROM {self.qualified(t.name)} "
            "WHERE institution_id = %s AND fiscal_year = %s",
            (institution_id, fiscal_year),
        )

    def earned_by_source(self, provider_id: str, fiscal_year: int) -> list[Row]:
        """Per source: subsidy and bonus owed to ``provider_id`` for redemptions of the year."""
        return self._rows(
            "SELECT source_id, kind, SUM(amount_fen) AS amount_fen, "
            "SUM(clawed_back_fen) AS clawed_back_fen, SUM(paid_fen) AS paid_fen "
            f"FROM {self.qualified(PAYABLES.name)} WHERE provider_id = %s AND fiscal_year = %s "
            "GROUP BY source_id, kind ORDER BY source_id, kind",
            (provider_id, fiscal_year),
        )

    def outstanding_payables(self, payee_id: str, source_id: str, limit: int) -> list[Row]:
        """Lines a payee is owed from a source that no live payout holds: a payout's
        candidates (the ledger checks each against its origin again)."""
        return self._rows(
            f"SELECT redemption_id, kind FROM {self.qualified(PAYABLES.name)} "
            "WHERE provider_id = %s AND source_id = %s AND payout_id IS NULL "
            "AND amount_fen > clawed_back_fen + paid_fen ORDER BY redeemed_position, line LIMIT %s",
            (payee_id, source_id, limit),
        )

    def payouts(self, filters: PayoutFilter) -> list[Row]:
        where, params = filters.where()
        return self._rows(
            f"SELECT * FROM {self.qualified(PAYOUTS.name)} WHERE {where} "
            "ORDER BY created_position LIMIT %s",
            [*params, filters.limit],
        )

    def open_payouts_paying(self, accounts: Sequence[str]) -> list[Row]:
        """Approved payouts no line settled yet, into any of ``accounts``: candidates for bank
        lines that name no payout."""
        found: list[Row] = []
        for condition, params in self._any_of("bank_account", sorted(set(accounts))):
            found += self._rows(
                f"SELECT payout_id, payee_id, bank_account, amount_fen, approved_at, "
                f"created_position FROM {self.qualified(PAYOUTS.name)} "
                f"WHERE status = 'approved' AND {condition}",
                params,
            )
        found.sort(key=lambda row: int(row["created_position"]))
        for row in found:
            del row["created_position"]
        return found

    def _any_of(self, column: str, values: list[str]) -> Iterator[tuple[str, list[Any]]]:
        """``column`` equal to any of ``values``, as (condition, parameters) for as many queries
        as the parameters need: a statement may name 100,000 accounts, and a query may bind at
        most 65,535 parameters on PostgreSQL (32,766 on SQLite)."""
        for at in range(0, len(values), _IN_LIST_CHUNK):
            chunk = values[at : at + _IN_LIST_CHUNK]
            yield f"{column} IN ({', '.join(['%s'] * len(chunk))})", chunk

    def line_key(self, bank_line_id: str) -> tuple[str, int] | None:
        """A bank line's key in the views (its statement and line) from its aggregate id."""
        found = self._one(
            f"SELECT statement_id, line FROM {self.qualified(BANK_LINES.name)} "
            "WHERE bank_line_id = %s",
            (bank_line_id,),
        )
        return None if found is None else (str(found["statement_id"]), int(found["line"]))

    def bank_line(self, statement_id: str, line: int) -> Row | None:
        return self.fetch(BANK_LINES, (statement_id, line))

    def line_bank_line_id(self, statement_id: str, line: int) -> str | None:
        found = self._one(
            f"SELECT bank_line_id FROM {self.qualified(BANK_LINES.name)} "
            "WHERE statement_id = %s AND line = %s",
            (statement_id, line),
        )
        return None if found is None else str(found["bank_line_id"])

    def statement(self, statement_id: str) -> Row | None:
        return self.fetch(STATEMENTS, (statement_id,))

    def bank_lines(self, statement_id: str, after: int, limit: int) -> list[Row]:
        return self._rows(
            f"SELECT * FROM {self.qualified(BANK_LINES.name)} WHERE statement_id = %s "
            "AND line > %s ORDER BY line LIMIT %s",
            (statement_id, after, limit),
        )

    def unmatched_lines(self, limit: int) -> list[Row]:
        return self._rows(
            f"SELECT * FROM {self.qualified(BANK_LINES.name)} WHERE status = 'unmatched' "
            "ORDER BY booking_date, statement_id, line LIMIT %s",
            (limit,),
        )

    def unsettled_payouts(self, limit: int) -> list[Row]:
        return self._rows(
            f"SELECT * FROM {self.qualified(PAYOUTS.name)} WHERE status = 'approved' "
            "ORDER BY approved_at, created_position LIMIT %s",
            (limit,),
        )

    def principals(self, after: int, limit: int) -> list[Row]:
        return self._rows(
            f"SELECT * FROM {self.qualified(PRINCIPALS.name)} WHERE created_position > %s "
            "ORDER BY created_position LIMIT %s",
            (after, limit),
        )

    def vouchers(self, filters: VoucherFilter) -> list[Row]:
        where, params = filters.where()
        return self._rows(
            f"SELECT * FROM {self.qualified(VOUCHERS.name)} WHERE {where} "
            "ORDER BY issued_position LIMIT %s",
            [*params, filters.limit],
        )

    def payables(self, filters: PayableFilter) -> tuple[list[Row], int | None]:
        """A page of payable lines and the cursor of the next page (None at the end). A page
        holds whole redemptions, since the cursor is a redemption's position: it stops before
        the redemption that would take it past ``limit`` (unless that is its only one)."""
        where, params = filters.where()
        rows = self._rows(
            f"SELECT * FROM {self.qualified(PAYABLES.name)} WHERE {where} "
            "ORDER BY redeemed_position, line LIMIT %s",
            [*params, filters.limit + MAX_LINES_PER_REDEMPTION],
        )
        if len(rows) <= filters.limit:
            return rows, None
        cut = rows[filters.limit]["redeemed_position"]
        page = [r for r in rows[: filters.limit] if r["redeemed_position"] != cut]
        if not page:  # one redemption has more lines than the page: take all of them
            page = [r for r in rows if r["redeemed_position"] == cut]
        return page, page[-1]["redeemed_position"]

    def flows(self, fiscal_year: int) -> list[Row]:
        """Subsidy by source -> programme -> provider -> enterprise for a fiscal year."""
        return self._rows(
            "SELECT source_id, programme_id, provider_id, holder_id, "
            "SUM(amount_fen) AS amount_fen, SUM(clawed_back_fen) AS clawed_back_fen, "
            "SUM(paid_fen) AS paid_fen, COUNT(*) AS redemptions "
            f"FROM {self.qualified(PAYABLES.name)} WHERE fiscal_year = %s AND kind = 'subsidy' "
            "GROUP BY source_id, programme_id, provider_id, holder_id "
            "ORDER BY source_id, programme_id, provider_id, holder_id",
            (fiscal_year,),
        )

    def query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Rows of a read-only query over the views (``{table}`` names are qualified)."""
        names = {t.name: self.qualified(t.name) for t in TABLES}
        return self._rows(sql.format(**names), params)

    def all_rows(self, t: Table) -> list[Row]:
        return self._rows(f"SELECT * FROM {self.qualified(t.name)} ORDER BY {', '.join(t.key)}", ())


@dataclass(frozen=True)
class VoucherFilter:
    """A page of vouchers in issue order, after the cursor ``after`` (an issue position).
    ``today`` decides which active vouchers an observer sees as expired."""

    today: str
    holder_id: str | None = None
    programme_id: str | None = None
    status: str | None = None
    expires_from: str | None = None  # valid_until on or after
    expires_to: str | None = None  # valid_until on or before
    after: int = 0
    limit: int = 100

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["issued_position > %s"]
        params: list[Any] = [self.after]
        for column, value in (("holder_id", self.holder_id), ("programme_id", self.programme_id)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if self.status == "active":
            clauses.append("status = 'active' AND valid_until >= %s")
            params.append(self.today)
        elif self.status == "expired":
            clauses.append("(status = 'expired' OR (status = 'active' AND valid_until < %s))")
            params.append(self.today)
        elif self.status is not None:
            clauses.append("status = %s")
            params.append(self.status)
        if self.expires_from is not None:
            clauses.append("valid_until >= %s")
            params.append(self.expires_from)
        if self.expires_to is not None:
            clauses.append("valid_until <= %s")
            params.append(self.expires_to)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class PayoutFilter:
    """A page of payouts in the order they were made, after the cursor ``after``."""

    status: str | None = None
    payee_id: str | None = None
    after: int = 0
    limit: int = 100

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["created_position > %s"]
        params: list[Any] = [self.after]
        for column, value in (("status", self.status), ("payee_id", self.payee_id)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class PayableFilter:
    source_id: str | None = None
    provider_id: str | None = None
    fiscal_year: int | None = None
    after: int = 0
    limit: int = 100

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["redeemed_position > %s"]
        params: list[Any] = [self.after]
        for column, value in (
            ("source_id", self.source_id),
            ("provider_id", self.provider_id),
            ("fiscal_year", self.fiscal_year),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        return " AND ".join(clauses), params


def _as_dict(row: Any) -> Row:
    found = row if isinstance(row, dict) else dict(zip(row.keys(), row, strict=True))
    # PostgreSQL sums BIGINTs as NUMERIC: whole numbers of fen, so back to int.
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in found.items()}


class SQLiteViews(ViewStore, SQLiteTrackingRecorder):
    placeholder = "?"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.table_statements()]

    @contextmanager
    def _write(self) -> Iterator[Any]:
        # BEGIN IMMEDIATE takes the write lock first (waiting up to the busy timeout), so the
        # compare-and-set on the position cannot be overtaken between its read and the commit.
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            yield cursor

    def _tracking_now(self, cursor: Any) -> int | None:
        return self._max_tracking_id(self.tracking_name, cursor)

    def _reset_tracking(self, cursor: Any) -> None:
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (self.tracking_name,))


class PostgresViews(ViewStore, PostgresTrackingRecorder):
    placeholder = "%s"

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in self.table_statements():
            self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]
        self._positions_for: tuple[Any, Any] | None = None  # (recorder, its statement)
        self._position_conns = threading.local()  # head_and_position's, one per thread

    def qualified(self, name: str) -> str:
        assert _NAME_RE.fullmatch(name)
        schema = self.datastore.schema
        return f'"{schema}".{name}' if schema else name

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    @contextmanager
    def _read(self) -> Iterator[Any]:
        # Every read is one statement, on a connection in autocommit mode: a transaction
        # around it would add a BEGIN and a ROLLBACK, two round trips for nothing (a statement
        # reads one snapshot anyway). Rows read after the position are at least that new.
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            yield cursor

    def _any_of(self, column: str, values: list[str]) -> Iterator[tuple[str, list[Any]]]:
        # One array parameter, however many values: one query, not one per 1,000.
        if values:
            yield f"{column} = ANY(%s)", [values]

    def _tuples(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._sql(sql), tuple(params), binary=True)
            rows: list[tuple[Any, ...]] = c.fetchall()
            return rows

    def head_and_position(self, recorder: Any) -> tuple[int, int]:
        """One statement for both, when the log is in this database: a read of the views asks
        them before every answer, and one round trip instead of two is a fifth of a read's
        CPU once its answer is kept (api/answers.py). One snapshot, so the position it gives
        is never beyond the head (the projector commits a position after the log has it)."""
        if self._positions_for is None or self._positions_for[0] is not recorder:
            self._positions_for = (recorder, self._positions_query(recorder))
        query = self._positions_for[1]
        if query is None:
            return super().head_and_position(recorder)
        conn = self._position_connection()
        try:
            if not isinstance(query, bytes):
                # Composed once into bytes: psycopg would compose it again on every execute.
                query = query.as_bytes(conn)
                self._positions_for = (recorder, query)
            with conn.cursor() as cursor:
                cursor.execute(query, (self.tracking_name,), prepare=True)
                row = cursor.fetchone()
        except psycopg.Error as exc:
            self._position_conns.conn = None
            conn.close()
            raise PersistenceOperationalError(str(exc)) from exc
        assert row is not None
        return int(row[0] or 0), int(row[1] or 0)

    def _position_connection(self) -> Any:
        """This thread's connection for ``head_and_position``, outside the pool: asked before
        every read, the one statement costs 160 µs of CPU through the pool and eventsourcing's
        connection wrapper, 60 µs on a connection of its own. One that the server closed (a
        restart, a terminated backend) is replaced first, as the pool's pre-ping would."""
        conn = getattr(self._position_conns, "conn", None)
        if conn is not None and (conn.closed or not looks_alive(conn)):
            conn.close()
            conn = None
        if conn is None:
            try:
                conn = own_connection(self.datastore)
            except psycopg.Error as exc:
                raise PersistenceOperationalError(str(exc)) from exc
            self._position_conns.conn = conn
        return conn

    def _positions_query(self, recorder: Any) -> Any:
        """The statement of ``head_and_position`` (made once), or None when the log is not in
        this database."""
        head_sql = getattr(recorder, "max_notification_id_statement", None)
        pool = getattr(getattr(recorder, "datastore", None), "pool", None)
        if head_sql is None or pool is None or not same_database(pool, self.datastore.pool):
            return None
        return SQL("SELECT ({head}) AS head, ({seen}) AS seen").format(
            head=head_sql,
            seen=SQL(self._tracking_sql()),  # type: ignore[arg-type]
        )

    def _tracking_sql(self) -> str:
        return f"SELECT notification_id FROM {self._tracking_table()} WHERE application_name = %s"

    def _tracking_now(self, cursor: Any) -> int | None:
        # FOR UPDATE: a concurrent projector waits here, then sees the moved position.
        return self._tracking_select(cursor, " FOR UPDATE")

    def _tracking_seen(self, cursor: Any) -> int | None:
        # Without FOR UPDATE: readers asking how far the views are would otherwise queue on
        # the one tracking row, behind each other and behind the projector's commits.
        return self._tracking_select(cursor, "")

    def _tracking_select(self, cursor: Any, lock: str) -> int | None:
        cursor.execute(self._tracking_sql() + lock, (self.tracking_name,))
        row = cursor.fetchone()
        return None if row is None else int(row["notification_id"])

    def _reset_tracking(self, cursor: Any) -> None:
        cursor.execute(
            f"DELETE FROM {self._tracking_table()} WHERE application_name = %s",
            (self.tracking_name,),
        )

    def _tracking_table(self) -> str:
        schema = self.datastore.schema
        name = f'"{self.tracking_table_name}"'
        return f'"{schema}".{name}' if schema else name


@contextmanager
def sqlite_creation_lock(db_name: str) -> Iterator[None]:
    """Serialise creating the tables of one SQLite file across processes: eventsourcing's
    tracking table records a migration row when it thinks it created the table, and two
    processes starting at once (a worker and the projector) would both think so."""
    if "mode=memory" in db_name or db_name == ":memory:":
        yield
        return
    with open(f"{db_name}.create-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_views(
    settings: Settings,
    classes: tuple[type[ViewStore], type[ViewStore]] | None = None,
) -> Any:
    """The view store beside the ledger that ``settings`` names (``classes``: the SQLite and the
    PostgreSQL store class, the views' by default). The in-memory ledger gets an in-memory SQLite
    database of its own."""
    sqlite_class, postgres_class = classes or (SQLiteViews, PostgresViews)
    env = settings.eventsourcing_env()
    if settings.backend == "memory":
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": f"file:views-{uuid.uuid4().hex}?mode=memory&cache=shared",
        }
    env.pop("APPLICATION_RECORDER_TOPIC", None)
    factory = InfrastructureFactory.construct(Environment(VIEWS_ENV_NAME, env))  # type: ignore[type-abstract]
    if settings.backend == "postgres" and settings.read_only:  # a standby: nothing to create
        store: ViewStore = factory.tracking_recorder(postgres_class)  # type: ignore[arg-type,assignment]
    elif settings.backend == "postgres":
        with schema_creation_lock(env):
            store = factory.tracking_recorder(postgres_class)  # type: ignore[arg-type,assignment]
    else:
        with sqlite_creation_lock(env["SQLITE_DBNAME"]):
            store = _sqlite_recorder(factory, sqlite_class)
    store.factory = factory  # type: ignore[attr-defined]  # it owns the datastore's pool
    return store


SQLITE_CREATE_ATTEMPTS = 20


def _sqlite_recorder(factory: Any, cls: type[ViewStore]) -> Any:
    """The recorder, its tables created if missing. ``CREATE TABLE IF NOT EXISTS`` reads the
    schema, then writes: when a writer (a projector already running on this file) commits in
    between, SQLite refuses at once, without waiting out its busy timeout ("database is
    locked": the snapshot read is stale). Nothing was created, so it is asked again; it failed
    so once in a full test run, as the API opened the audit store beside its running projector."""
    for attempt in range(1, SQLITE_CREATE_ATTEMPTS):
        try:
            return factory.tracking_recorder(cls)
        except PersistenceOperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.01 * attempt)
    return factory.tracking_recorder(cls)  # the last attempt: whatever it raises goes up
