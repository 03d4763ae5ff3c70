"""PostgreSQL application recorder that inserts a batch of events in one round trip.

eventsourcing's own recorder opens a transaction, locks the events table, notifies, inserts and
commits in several round trips, all while holding the table lock, so writers queue behind the
network. Its optional database function does it in one statement but without the table lock,
which lets notification ids commit out of order (a follower could skip an event), and it passes
the rows as an array of a composite type, which psycopg adapts row by row in Python.

This recorder's function does it all in one statement in its own implicit transaction: it takes
the EXCLUSIVE lock (readers are not blocked), notifies, inserts and returns the notification ids;
the rows travel as four arrays of plain types, adapted in C and sent in binary. Under the same lock
it checks that nothing the batch only *read* (a provider's frozen flag, a programme) has changed
since: optimistic concurrency for reads, so another process's freeze binds at once. Inserts use one
connection of their own instead of the pool: they are serialised by the table lock anyway, and a
pool checkout costs as much as a third of the insert.

After a database restart every pool heals by itself (``ReconnectingPool``, installed by this
module's ``PostgresFactory``), and the insert connection is opened again on the next insert."""

from __future__ import annotations

import select
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from uuid import UUID

import eventsourcing.postgres
import psycopg
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import Environment, EnvType, retry
from psycopg import pq
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import PoolTimeout
from psycopg_pool.pool import AddConnection, MaintenanceTask

SCHEMA_LOCK_KEY = 7_305_421_977  # any fixed number: one ledger at a time creates its tables
CONNECT_TIMEOUT_S = 3  # a host that drops packets must not hold a connection attempt for minutes
RECONNECT_DELAY_MAX_S = 0.5  # between attempts to replace a pooled connection that was lost
WAIT_SLICE_S = 0.5  # how often a caller waiting for a pooled connection looks at the above
UNREACHABLE_WAIT_S = 0.01  # how long it waits while the database cannot be reached
DRAIN_INTERVAL_S = 1.0
INSERT_ATTEMPTS = 10
INSERT_RETRY_WAIT_S = 0.2


class CannotConnect(OperationalError):
    """The insert connection could not even be opened: retrying at once would only wait."""


class ReconnectingPool(eventsourcing.postgres.ConnectionPool[psycopg.Connection[DictRow]]):
    """psycopg_pool's pool, that heals within a second of the database coming back.

    The library's pool, out of the box, backs off exponentially (1 s, 2 s, 4 s, ... for five
    minutes) between attempts to replace a lost connection, so it may heal long after the
    database is back; a caller waits its whole timeout while nothing can connect; and with
    ``check``, it tests the idle connections one at a time, pausing longer before each, so a
    restart that killed them all costs a caller 1 + 2 + 4 ... seconds. This pool tries again
    at most ``RECONNECT_DELAY_MAX_S`` apart; refuses a caller almost at once (``PoolTimeout``)
    when it has no idle connection and its last attempt to connect failed, looking again every
    ``WAIT_SLICE_S`` while the caller waits; and replaces every idle connection as soon as the
    check finds one dead."""

    def __init__(self, *, pre_ping: bool, **kwargs: Any) -> None:
        self.unreachable = False  # the last attempt to connect failed
        self._drained_s = 0.0
        super().__init__(check=self.check_alive if pre_ping else None, **kwargs)

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[DictRow]:
        deadline_s = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining_s = deadline_s - time.monotonic()
            wait_s = min(WAIT_SLICE_S, remaining_s)
            if self.unreachable and not self.get_stats().get("pool_available"):
                # A moment, not nothing: a waiting caller makes the pool start an attempt to
                # connect if none is under way (after five minutes of failures, none is).
                wait_s = UNREACHABLE_WAIT_S
            try:
                return super().getconn(max(0.001, wait_s))
            except PoolTimeout:
                if self.unreachable or remaining_s <= WAIT_SLICE_S:
                    raise

    def _connect(self, timeout: float | None = None) -> psycopg.Connection[DictRow]:
        # The one place every new connection is made (eventsourcing's pool overrides it too).
        try:
            conn = super()._connect(timeout)
        except BaseException:
            self.unreachable = True
            raise
        self.unreachable = False
        return conn

    def schedule_task(self, task: MaintenanceTask, delay: float) -> None:
        if isinstance(task, AddConnection):  # a reconnection attempt, not other maintenance
            delay = min(delay, RECONNECT_DELAY_MAX_S)
        super().schedule_task(task, delay)

    def check_alive(self, conn: psycopg.Connection[DictRow]) -> None:
        """The pre-ping (``POSTGRES_PRE_PING``): a dead connection usually means the server
        restarted and took every other idle connection with it, so all are replaced now.

        An idle connection whose socket has nothing to read is taken as alive without a round
        trip (which cost a read a third of its time): a server that stops or restarts closes
        its connections, and the closed socket is readable. Anything else (a readable socket,
        a connection not idle) gets the real check."""
        if looks_alive(conn):
            return
        try:
            self.check_connection(conn)
        except Exception:
            now = time.monotonic()
            if now - self._drained_s >= DRAIN_INTERVAL_S:  # once per restart, not per caller
                self._drained_s = now
                self.drain()
            raise


def looks_alive(conn: psycopg.Connection[Any]) -> bool:
    """Idle, in no transaction, and nothing on its socket: neither an answer nor a close."""
    pg = conn.pgconn
    if pg.status != pq.ConnStatus.OK or pg.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([pg.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


def reconnecting_pool(datastore: PostgresDatastore) -> ReconnectingPool:
    """A ``ReconnectingPool`` with the settings of the datastore's own pool (not yet open)."""
    pool = datastore.pool
    assert isinstance(pool.kwargs, dict), "eventsourcing passes the connection settings"
    kwargs = {**pool.kwargs, "connect_timeout": CONNECT_TIMEOUT_S}
    return ReconnectingPool(
        pre_ping=datastore.pre_ping,
        get_password_func=pool.get_password_func,
        connection_class=pool.connection_class,
        kwargs=kwargs,
        min_size=pool.min_size,
        max_size=pool.max_size,
        open=False,
        configure=datastore.after_connect_func(),
        timeout=pool.timeout,
        max_waiting=pool.max_waiting,
        max_lifetime=pool.max_lifetime,
    )


class PostgresFactory(eventsourcing.postgres.PostgresFactory):
    """eventsourcing's PostgreSQL factory, whose datastore pools with ``ReconnectingPool``."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.datastore.pool = reconnecting_pool(self.datastore)


@contextmanager
def schema_creation_lock(env: Mapping[str, str]) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while a ledger creates its tables, types and functions:
    several server workers start at once, and concurrent CREATE ... IF NOT EXISTS statements
    still collide ("duplicate key value violates unique constraint pg_type_typname_nsp_index")."""
    with psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "10")),
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


class LockingFunctionRecorder(PostgresApplicationRecorder):
    # The writer passes what its commands read but did not write; this recorder checks it
    # under the table lock, so the writer need not poll the log for other processes' changes.
    validates_reads = True

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.insert_function_name = f"{self.events_table_name}_insert"
        names = {
            "schema": Identifier(self.datastore.schema),
            "function": Identifier(self.insert_function_name),
            "id_type": SQL(self.datastore.originator_id_type),
        }
        # The insert function before it took the batch's count (and as one commit had it).
        for extra in ("", ", {id_type}, bigint"):
            self.sql_create_statements.append(
                SQL(
                    "DROP FUNCTION IF EXISTS {schema}.{function}({id_type}[], bigint[], text[], "
                    "bytea[], {id_type}[], bigint[]" + extra + ")"
                ).format(**names)
            )
        # ``expected``: a pipelined batch is stored only if every batch sent before it on its
        # connection was. A batch is decided on the state the batches before it left in the
        # writer's cache; when one of those fails, another process may have stored the very
        # versions it would have, and "follows a stored event" would let the next one through,
        # decided on a state that never existed (a source reserved twice over). The count of
        # stored batches is a setting of the connection's session: a failed batch's change of
        # it is rolled back with the batch, so every later one finds a count it did not expect.
        # (A table row would do as well, and cost a write under the table lock.)
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids {id_type}[], versions bigint[], topics text[], states bytea[], "
                "read_ids {id_type}[], read_versions bigint[], expected bigint) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "DECLARE latest bigint; "
                "BEGIN "
                "  SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "  IF expected IS NOT NULL THEN "
                # Unset, or '' once a first setting was rolled back: none stored yet.
                "    IF coalesce(nullif(current_setting('voucher_ledger.stored_batches', true), "
                "        ''), '0')::bigint <> expected THEN "
                "      RAISE EXCEPTION 'batch % follows one that was not stored', expected "
                "        USING ERRCODE = 'serialization_failure'; "
                "    END IF; "
                "    PERFORM set_config('voucher_ledger.stored_batches', "
                "      (expected + 1)::text, false); "
                "  END IF; "
                "  FOR i IN 1 .. coalesce(array_length(read_ids, 1), 0) LOOP "
                "    SELECT max(originator_version) INTO latest FROM {schema}.{table} "
                "      WHERE originator_id = read_ids[i]; "
                "    IF latest IS DISTINCT FROM read_versions[i] THEN "
                "      RAISE EXCEPTION 'aggregate % is not at the version this batch read', "
                "        read_ids[i] USING ERRCODE = 'serialization_failure'; "
                "    END IF; "
                "  END LOOP; "
                "  FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP "
                "    IF versions[i] > 1 AND NOT (i > 1 AND ids[i - 1] = ids[i] "
                "        AND versions[i - 1] = versions[i] - 1) THEN "
                "      PERFORM 1 FROM {schema}.{table} WHERE originator_id = ids[i] "
                "        AND originator_version = versions[i] - 1; "
                "      IF NOT FOUND THEN "
                "        RAISE EXCEPTION 'event % of % follows no stored event', "
                "          versions[i], ids[i] USING ERRCODE = 'serialization_failure'; "
                "      END IF; "
                "    END IF; "
                "  END LOOP; "
                "  NOTIFY {channel}; "
                "  RETURN QUERY INSERT INTO {schema}.{table} "
                "    (originator_id, originator_version, topic, state) "
                "    SELECT * FROM unnest(ids, versions, topics, states) "
                "    RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                **names,
                lock_timeout=self.datastore.lock_timeout,
                table=Identifier(self.events_table_name),
                channel=Identifier(self.channel_name),
            )
        )
        self.sql_changed_reads = SQL(
            "SELECT r.id FROM unnest(%b::{id_type}[], %b::bigint[]) AS r(id, version) "
            "WHERE EXISTS (SELECT 1 FROM {schema}.{table} AS t "
            "WHERE t.originator_id = r.id AND t.originator_version > r.version) LIMIT 1"
        ).format(
            id_type=SQL(self.datastore.originator_id_type),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        self._insert_conn: psycopg.Connection[Any] | None = None
        self._insert_lock = threading.Lock()
        # Parameters travel as binary arrays (see insert_params), on both insert paths.
        self.sql_insert = SQL(
            "SELECT * FROM {schema}.{function}($1::{id_type}[], $2::bigint[], $3::text[], "
            "$4::bytea[], $5::{id_type}[], $6::bigint[], $7::bigint)"
        ).format(**names)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert ``stored_events`` unless an aggregate in ``read_set`` (pairs of id and the
        version the command decided on) has a newer event: then nothing is stored and the
        store answers IntegrityError, as it does when a written aggregate lost a race.

        A lock or statement timeout, or a connection that died, is retried (on a new
        connection); a database that cannot be connected to at all is not (``CannotConnect``):
        the caller hears at once, instead of after ten attempts."""
        if not stored_events:
            return []
        read_set: Sequence[tuple[Any, int]] = kwargs.get("read_set", ())
        params = insert_params(stored_events, read_set)
        for attempt in range(1, INSERT_ATTEMPTS + 1):
            try:
                return self._insert_once(params)
            except CannotConnect:
                raise
            except OperationalError:
                if attempt == INSERT_ATTEMPTS:
                    raise
                time.sleep(INSERT_RETRY_WAIT_S)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _insert_once(self, params: list[bytes | None]) -> list[int]:
        with self._insert_lock:
            conn = self._connection()
            try:
                outcome = result_outcome(
                    _exec(conn, self.sql_insert.as_bytes(conn), params, INSERT_FORMATS)
                )
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            except (psycopg.IntegrityError, psycopg.errors.SerializationFailure) as exc:
                raise IntegrityError(str(exc)) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close_insert_connection()
                raise OperationalError(str(exc)) from exc

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's query, read as tuples: its dict rows cost followers (projections, the
        audit chain) a tenth of their time."""
        clauses: list[SQL] = []
        params: list[Any] = []
        if start is not None:
            clauses.append(
                SQL("notification_id >= %s" if inclusive_of_start else "notification_id > %s")
            )
            params.append(start)
        if stop is not None:
            clauses.append(SQL("notification_id <= %s"))
            params.append(stop)
        if topics:
            clauses.append(SQL("topic = ANY(%s)"))
            params.append(list(topics))
        params.append(limit)
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table}{where} ORDER BY notification_id LIMIT %s"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            where=SQL(" WHERE ") + SQL(" AND ").join(clauses) if clauses else SQL(""),
        )
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True)
            return [
                Notification(
                    id=position,
                    originator_id=originator_id,
                    originator_version=version,
                    topic=topic,
                    state=bytes(state),
                )
                for position, originator_id, version, topic, state in curs.fetchall()
            ]

    def pipelined_inserter(self) -> PipelinedInserter:
        """A connection of its own that inserts batches in pipeline mode (group commit)."""
        return PipelinedInserter(self)

    def validate_reads(self, read_set: Sequence[tuple[Any, int]]) -> None:
        """Raise IntegrityError if an aggregate in ``read_set`` has an event newer than the
        version read: for a batch that was refused outright and so inserts nothing."""
        if not read_set:
            return
        params = ([agg_id for agg_id, _ in read_set], [version for _, version in read_set])
        with self._insert_lock:
            conn = self._connection()
            try:
                with conn.cursor() as curs:
                    curs.execute(self.sql_changed_reads, params, prepare=True)
                    changed = curs.fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close_insert_connection()
                raise OperationalError(str(exc)) from exc
        if changed is not None:
            raise IntegrityError(f"aggregate {changed[0]} changed after it was read")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._insert_conn is None or self._insert_conn.closed:
            try:
                self._insert_conn = own_connection(self.datastore)
            except psycopg.Error as exc:
                raise CannotConnect(str(exc)) from exc
        return self._insert_conn

    def close_insert_connection(self) -> None:
        if self._insert_conn is not None:
            self._insert_conn.close()
            self._insert_conn = None


def own_connection(datastore: PostgresDatastore) -> psycopg.Connection[Any]:
    """A connection outside the pool, with the pool's settings, in autocommit mode."""
    kwargs: dict[str, Any] = dict(datastore.pool.kwargs)  # type: ignore[arg-type]
    kwargs.pop("row_factory", None)
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return psycopg.Connection.connect(autocommit=True, **kwargs)


def same_database(a: Any, b: Any) -> bool:
    """Whether two of eventsourcing's pools reach one database: its pools carry host, port
    and database name in ``kwargs`` and an empty ``conninfo``, so comparing ``conninfo``
    alone takes a standby for its primary."""
    keys = ("host", "port", "dbname")
    return bool(
        a.conninfo == b.conninfo and all(str(a.kwargs.get(k)) == str(b.kwargs.get(k)) for k in keys)
    )


def insert_params(
    stored: Sequence[StoredEvent],
    read_set: Sequence[tuple[Any, int]],
    expected: int | None = None,
) -> list[bytes | None]:
    """The insert function's six arrays in PostgreSQL's binary array format (``INSERT_FORMATS``
    says so), then how many batches its connection stored before it (NULL: a batch sent alone,
    which nothing in flight was decided on), as text. Built here with ``bytes.join``: cheaper
    than psycopg adapting lists element by element in Python, and than text literals, which
    double every state in hex and which the server must parse again (a 110,000-event statement
    import: 1.2 s to build and 1.2 s for the server to read as text; benchmarks/reconcile.py)."""
    return [
        _binary_array(_UUID_OID, [_uuid_bytes(e.originator_id) for e in stored]),
        _binary_array(_INT8_OID, [_INT8.pack(e.originator_version) for e in stored]),
        _binary_array(_TEXT_OID, [_topic_bytes(e.topic) for e in stored]),
        _binary_array(_BYTEA_OID, [e.state for e in stored]),
        _binary_array(_UUID_OID, [_uuid_bytes(agg_id) for agg_id, _ in read_set]),
        _binary_array(_INT8_OID, [_INT8.pack(version) for _, version in read_set]),
        None if expected is None else str(expected).encode(),
    ]


# The parameter formats of ``insert_params``: six binary arrays, then a text bigint.
INSERT_FORMATS = [1, 1, 1, 1, 1, 1, 0]
_UUID_OID, _INT8_OID, _TEXT_OID, _BYTEA_OID = 2950, 20, 25, 17
_ARRAY_HEADER = struct.Struct("!iiiii")  # dimensions, has nulls, element type, length, lower bound
_INT4 = struct.Struct("!i")
_INT8 = struct.Struct("!q")


def _binary_array(element_oid: int, items: list[bytes]) -> bytes:
    """A one-dimensional array without nulls, as ``array_send`` writes it: a header, then each
    element's length and bytes (an empty array has no dimension)."""
    if not items:
        return _ARRAY_HEADER.pack(0, 0, element_oid, 0, 0)[:12]
    pack = _INT4.pack
    body = b"".join([pack(len(item)) + item for item in items])
    return _ARRAY_HEADER.pack(1, 0, element_oid, len(items), 1) + body


def _uuid_bytes(value: Any) -> bytes:
    """A UUID's 16 bytes (an id given as text is read as a UUID first)."""
    return value.bytes if type(value) is UUID else UUID(str(value)).bytes  # type: ignore[no-any-return]


@lru_cache(maxsize=4096)  # topics are class names: few
def _topic_bytes(topic: str) -> bytes:
    return topic.encode()


# The last statement of a chunked batch whose events could not all be serialised: it fails, so
# the pipeline's transaction is undone, with the SQLSTATE of a lost race (run it again).
_UNDO_BATCH = (
    b"DO $$ BEGIN RAISE EXCEPTION 'an event of this batch could not be serialised' "
    b"USING ERRCODE = 'serialization_failure'; END $$"
)


def batch_outcome(results: Sequence[pq.abc.PGresult]) -> list[int] | BaseException:
    """A pipelined batch's outcome from its results (one insert, or the inserts of its
    chunks): every notification id, or the error of the first that failed."""
    if not results:
        return result_outcome(None)
    ids: list[int] = []
    for data in results:
        outcome = result_outcome(data)
        if isinstance(outcome, BaseException):
            return outcome
        ids += outcome
    return ids


def result_outcome(data: pq.abc.PGresult | None) -> list[int] | BaseException:
    """Notification ids from an insert's result, or the error it stands for: IntegrityError
    when it lost a race (unique violation, or a read that is no longer current)."""
    if data is not None and data.status == pq.ExecStatus.TUPLES_OK:
        return [int(data.get_value(i, 0) or b"0") for i in range(data.ntuples)]
    if data is None:
        return OperationalError("no result for an insert")
    sqlstate = data.error_field(pq.DiagnosticField.SQLSTATE) or b""
    message = data.get_error_message()
    if sqlstate in (b"23505", b"40001"):
        return IntegrityError(message)
    if sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in (b"55P03", b"25006"):
        # Connection lost, server shutting down or starting up, out of resources, lock or
        # statement timeout, read-only: the database, not this batch.
        return OperationalError(message)
    return DatabaseError(message)


# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (shutdown, crash, starting up, statement cancelled), 58 system error (I/O).
_UNAVAILABLE_CLASSES = (b"08", b"53", b"57", b"58")


def _exec(
    conn: psycopg.Connection[Any], sql: bytes, params: list[bytes | None], formats: list[int]
) -> Any:
    """Run one statement, waiting for its result without holding the interpreter lock."""
    pg = conn.pgconn
    pg.send_query_params(sql, params, param_formats=formats, result_format=0)
    while pg.flush():
        select.select([], [pg.socket], [], 1.0)
    result = None
    while True:
        pg.consume_input()
        if pg.is_busy():
            select.select([pg.socket], [], [], 1.0)
            continue
        got = pg.get_result()
        if got is None:
            return result
        result = result or got


class PipelinedInserter:
    """Sends batches on one connection in libpq pipeline mode, each its own transaction, without
    waiting for the one before: the server runs them back to back in the order sent, so the
    table lock passes from one to the next with no round trip to this process in between.

    A batch built on one that then fails is not stored: each batch carries how many batches the
    connection stored before it, and the insert function stores it only if that is so
    (serialization_failure otherwise); it also refuses events that follow no stored event and
    reads of versions that are not the latest.
    """

    STATEMENT = b"ledger_insert_pipelined"

    def __init__(self, recorder: LockingFunctionRecorder) -> None:
        self.recorder = recorder
        self.conn = own_connection(recorder.datastore)
        self.pg = self.conn.pgconn
        result = self.pg.prepare(self.STATEMENT, recorder.sql_insert.as_bytes(self.conn), None)
        if result.status != pq.ExecStatus.COMMAND_OK:
            self.conn.close()
            raise OperationalError(result.get_error_message())
        self.pg.enter_pipeline_mode()
        self.in_flight = 0
        self.stored_batches = 0  # on this connection: its session setting counts them too
        self._results: list[pq.abc.PGresult] = []  # of the oldest batch in flight, so far

    # The writer hears of a broken connection as the store's OperationalError, like every other
    # failure to reach the database (the driver's errors stay inside this module).
    def send(self, stored: Sequence[StoredEvent], read_set: Sequence[tuple[Any, int]]) -> None:
        """One batch in one insert: ``send_chunks`` with a single chunk."""
        self.send_chunks(iter([stored]), read_set)

    def send_chunks(
        self, chunks: Iterator[Sequence[StoredEvent]], read_set: Sequence[tuple[Any, int]]
    ) -> None:
        """One batch sent a chunk at a time as ``chunks`` makes them, so the server inserts one
        chunk while the writer serialises the next. It is sent as if every batch in flight will
        be stored: if one is not, every later one is refused too, and the writer decides them
        again. The statements before one pipeline sync are one transaction (PostgreSQL's
        implicit transaction of a pipeline): an insert that fails skips the rest and undoes
        those before it. The first chunk takes the table lock and carries the checks (what
        the batch read, the count of stored batches); the others insert under the same lock.
        If ``chunks`` raises (an event that cannot be serialised), a last statement fails on
        purpose, with the serialization failure that makes the writer run the batch's commands
        again carefully."""
        try:
            expected: int | None = self.stored_batches + self.in_flight
            reads = read_set
            sent = 0
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception:  # an event that cannot be serialised
                    sent = 0
                    break
                params = insert_params(chunk, reads, expected)
                self.pg.send_query_prepared(self.STATEMENT, params, INSERT_FORMATS, 0)
                expected, reads = None, ()  # checked once, under the lock now held
                sent += 1
                self._flush()
            if not sent:
                self.pg.send_query_params(_UNDO_BATCH, None)
            self.pg.pipeline_sync()
            self._flush()
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc
        self.in_flight += 1

    def _flush(self) -> None:
        """Send what libpq holds, reading the server's answers meanwhile: a server that cannot
        send its results (thousands of ids a chunk) stops reading what is sent to it."""
        while self.pg.flush():  # 1: not all sent yet
            readable, _, _ = select.select([self.pg.socket], [self.pg.socket], [], 1.0)
            if readable:
                self.pg.consume_input()

    def fileno(self) -> int:
        try:
            return self.pg.socket
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc

    def poll(self) -> list[list[int] | BaseException]:
        """Outcomes of the batches that have completed, oldest first, without waiting: each the
        notification ids of its events, or IntegrityError if it lost a race."""
        try:
            return self._poll()
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc

    def _poll(self) -> list[list[int] | BaseException]:
        outcomes: list[list[int] | BaseException] = []
        self.pg.consume_input()
        while self.in_flight and not self.pg.is_busy():
            result = self.pg.get_result()
            if result is None:  # end of one statement's results
                continue
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                outcome = batch_outcome(self._results)
                if not isinstance(outcome, BaseException):
                    self.stored_batches += 1
                outcomes.append(outcome)
                self._results = []
                self.in_flight -= 1
            else:
                self._results.append(result)
        return outcomes

    def close(self) -> None:
        self.conn.close()
