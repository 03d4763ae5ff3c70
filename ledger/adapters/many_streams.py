"""The stored events of many aggregates in one query: a payout of a hot provider reads a contract
claim and a payable line for each of its lines, and one query each (two: the library's
repository asks for a snapshot first) made a payout of 1,500 lines take 4.3 s of the writer's
thread, every other write waiting behind it."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

IDS_PER_QUERY = 1000  # SQLite's default limit of bound parameters is 32,766; PostgreSQL has none


def can_select_many(recorder: AggregateRecorder) -> bool:
    return isinstance(recorder, PostgresAggregateRecorder | SQLiteAggregateRecorder)


def select_many(recorder: AggregateRecorder, ids: Sequence[UUID]) -> list[StoredEvent]:
    """Every stored event of the aggregates ``ids``, in each one's version order (those with
    none are simply absent). Only for a recorder ``can_select_many`` accepts."""
    found: list[StoredEvent] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = list(ids[start : start + IDS_PER_QUERY])
        if isinstance(recorder, PostgresAggregateRecorder):
            found += _select_postgres(recorder, chunk)
        else:
            assert isinstance(recorder, SQLiteAggregateRecorder)
            found += _select_sqlite(recorder, chunk)
    return found


def _select_postgres(recorder: PostgresAggregateRecorder, ids: list[UUID]) -> list[StoredEvent]:
    statement = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, [ids])
        return [
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in curs.fetchall()
        ]


def _select_sqlite(recorder: SQLiteAggregateRecorder, ids: list[UUID]) -> list[StoredEvent]:
    marks = ",".join("?" * len(ids))
    statement = (
        "SELECT originator_id, originator_version, topic, state"
        f" FROM {recorder.events_table_name} WHERE originator_id IN ({marks})"
        " ORDER BY originator_id, originator_version"
    )
    with recorder.datastore.transaction(commit=False) as c:
        c.execute(statement, [i.hex for i in ids])
        return [
            StoredEvent(
                originator_id=recorder.convert_originator_id(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
            )
            for row in c.fetchall()
        ]
