"""``verify``: recompute the hash chain from the stored events alone and compare it with the
chain the follower kept and with the signed checkpoints. Names the first position where an event
was edited, deleted or inserted, or where a checkpoint does not hold.

It streams: events and chain rows are read in pages by position, side by side, with plain SQL
(no decoding), so it runs at the speed of SHA-256 and the database."""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg.rows import tuple_row

from audit import merkle
from audit.chain import GENESIS, canonical
from audit.follower import checkpoint_message
from audit.store import AuditStore
from ledger.application import VoucherLedger

PAGE = 20_000
T = TypeVar("T")
RawEvent = tuple[int, str, int, str, bytes]  # position, originator id, version, topic, state


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events_checked: int
    head_hash: str
    first_bad_position: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events_checked": self.events_checked,
            "head_hash": self.head_hash,
            "first_bad_position": self.first_bad_position,
            "detail": self.detail,
        }


def raw_events(ledger: VoucherLedger, after: int, until: int) -> Iterator[RawEvent]:
    """Stored events in (after, until] in log order, as stored."""
    for page in raw_event_pages(ledger, after, until):
        yield from page


def raw_event_pages(ledger: VoucherLedger, after: int, until: int) -> Iterator[list[RawEvent]]:
    recorder: Any = ledger.recorder
    datastore = getattr(recorder, "datastore", None)
    while after < until:
        if datastore is None:  # the in-memory store
            page = [
                (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                for n in recorder.select_notifications(after + 1, PAGE, stop=until)
            ]
        elif hasattr(datastore, "schema"):
            page = _postgres_page(datastore, recorder.events_table_name, after, until)
        else:
            page = _sqlite_page(datastore, recorder.events_table_name, after, until)
        if not page:
            return
        yield page
        after = page[-1][0]


def _postgres_page(datastore: Any, table: str, after: int, until: int) -> list[RawEvent]:
    name = _pg_table(datastore, table)
    with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
        # No upper bound in SQL: with one, the planner (on stale statistics after a bulk load)
        # picks a bitmap scan and an external sort; ORDER BY ... LIMIT walks the index.
        # Binary: bytea arrives as bytes, not as hex text to decode.
        cur.execute(
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            f"FROM {name} WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
            (after, PAGE),
            binary=True,
        )
        rows: list[RawEvent] = cur.fetchall()
        return [r for r in rows if r[0] <= until] if rows and rows[-1][0] > until else rows


def _pg_table(datastore: Any, table: str) -> str:
    return f'"{datastore.schema}"."{table}"' if datastore.schema else f'"{table}"'


def _sqlite_page(datastore: Any, table: str, after: int, until: int) -> list[RawEvent]:
    with datastore.transaction(commit=False) as cur:
        cur.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {table} WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (after, until, PAGE),
        )
        # SQLite keeps ids as 32 hex digits: hash them in the one spelling every store shares.
        # A tampered row may hold text where bytes were: hash what is there, do not fail.
        return [(r[0], _uuid_text(r[1]), r[2], str(r[3]), _bytes(r[4])) for r in cur.fetchall()]


def _uuid_text(value: Any) -> str:
    try:
        return str(UUID(str(value)))
    except ValueError:
        return str(value)


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()


# position, canonical bytes, leaf hash if known, originator id, version
Canonical = tuple[int, bytes, bytes | None, str, int]

# canonical() in SQL, with the leaf hash: PostgreSQL builds and hashes on its own core while
# this process links the chain. The tamper tests hold it to the Python definition.
_PG_FIELDS = (
    "notification_id::text",
    "originator_id::text",
    "originator_version::text",
    "coalesce(topic, '')",
)
_PG_CANONICAL = (
    "convert_to('voucher-ledger/event/2' || chr(10) || "
    + " || ".join(f"octet_length(convert_to({f}, 'UTF8')) || ':' || {f}" for f in _PG_FIELDS)
    + ", 'UTF8') || convert_to(octet_length(coalesce(state, ''::bytea)) || ':', 'UTF8') "
    "|| coalesce(state, ''::bytea)"
)


def canonical_pages(ledger: VoucherLedger, after: int, until: int) -> Iterator[list[Canonical]]:
    """Pages of (position, canonical bytes, leaf hash or None) in (after, until]."""
    recorder: Any = ledger.recorder
    datastore = getattr(recorder, "datastore", None)
    if datastore is None or not hasattr(datastore, "schema"):
        for raw in raw_event_pages(ledger, after, until):
            yield [(e[0], canonical(*e), None, e[1], e[2]) for e in raw]
        return
    name = _pg_table(datastore, recorder.events_table_name)
    while after < until:
        with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                f"SELECT notification_id, c, sha256('\\x00'::bytea || c), oid, v FROM "
                f"(SELECT notification_id, {_PG_CANONICAL} AS c, originator_id::text AS oid, "
                f"originator_version AS v FROM {name} "
                "WHERE notification_id > %s ORDER BY notification_id LIMIT %s) AS page "
                "ORDER BY notification_id",
                (after, PAGE),
                binary=True,
            )
            page: list[Canonical] = [r for r in cur.fetchall() if r[0] <= until]
        if not page:
            return
        yield page
        after = page[-1][0]


ChainRow = tuple[int, str, str, str, int]  # position, chain, leaf hash (hex), originator, version


def chain_pages(store: AuditStore, until: int) -> Iterator[list[ChainRow]]:
    after = -1
    while page := store.chain_page(after, until, PAGE):
        yield page
        after = page[-1][0]


def prefetched(pages: Iterator[list[T]]) -> Generator[T, None, None]:
    """The items of ``pages``, the next page read in a thread while this one is hashed (the
    database wait releases the interpreter lock)."""
    ahead: queue.Queue[list[T] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                ahead.put(page)
            ahead.put(None)
        except BaseException as exc:  # handed to the reader, raised there
            ahead.put(exc)

    reader = threading.Thread(target=read, daemon=True, name="verify-prefetch")
    reader.start()
    try:
        while (page := ahead.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield from page
    finally:
        # Stop the reader and wait for it: its connection must not be in use when the caller
        # goes on to close the store.
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)
        reader.join()


class _Checkpoints:
    """The signed checkpoints in order, each checked when the recomputed chain reaches it."""

    def __init__(self, store: AuditStore, public_key: Ed25519PublicKey, until: int) -> None:
        self.rows = store.checkpoints(limit=10**9, until=until)
        self.public_key = public_key
        self.index = 0
        self.leaves: list[bytes] = []

    def problem(self, position: int, head: bytes, leaf_hash: bytes) -> str | None:
        """After the event at ``position``: what is wrong with the checkpoint ending there."""
        self.leaves.append(leaf_hash)
        if self.index < len(self.rows) and self.rows[self.index]["position"] < position:
            return f"checkpoint at {self.rows[self.index]['position']} covers no stored event"
        if self.index >= len(self.rows) or self.rows[self.index]["position"] != position:
            return None
        cp = self.rows[self.index]
        self.index += 1
        leaves, self.leaves = self.leaves, []
        try:
            self.public_key.verify(base64.b64decode(cp["signature"]), checkpoint_message(cp))
        except (InvalidSignature, ValueError):
            return f"checkpoint at {position} does not verify with the ledger's public key"
        if cp["head_hash"] != head.hex():
            return f"checkpoint at {position} signed another chain head"
        if len(leaves) != cp["leaf_count"] or merkle.root(leaves).hex() != cp["merkle_root"]:
            return f"checkpoint at {position} signed another Merkle root"
        return None

    def unreached(self) -> str | None:
        if self.index < len(self.rows):
            return f"checkpoint at {self.rows[self.index]['position']} covers no stored event"
        return None


def verify(
    ledger: VoucherLedger,
    store: AuditStore,
    public_key: Ed25519PublicKey,
    progress: Callable[[int, int], None] | None = None,
) -> Verdict:
    """Recompute the chain over every event the follower has chained (up to its position)."""
    until = store.position()
    checkpoints = _Checkpoints(store, public_key, until)
    events = prefetched(canonical_pages(ledger, -1, until))
    chained = prefetched(chain_pages(store, until))
    try:
        return _compare(events, chained, checkpoints, until, progress)
    finally:
        events.close()
        chained.close()


def _compare(
    events: Iterator[Canonical],
    chained: Iterator[ChainRow],
    checkpoints: _Checkpoints,
    until: int,
    progress: Callable[[int, int], None] | None,
) -> Verdict:
    head, checked = GENESIS, 0
    event, row = next(events, None), next(chained, None)
    while event is not None or row is not None:
        if row is None or (event is not None and event[0] < row[0]):
            assert event is not None
            return _bad(checked, head, event[0], "an event the chain does not have (inserted)")
        if event is None or row[0] < event[0]:
            return _bad(checked, head, row[0], "a chained event is missing (deleted)")
        position, data, leaf_hash, originator_id, version = event
        head = sha256(head + data).digest()  # audit.chain.link, inlined: this loop is the cost
        if head.hex() != row[1]:  # a tampered value that is not hex simply differs
            return _bad(checked, head, event[0], "the event differs from the one chained (edited)")
        leaf_hash = leaf_hash or sha256(b"\x00" + data).digest()
        # The chain row's other columns serve proofs and traces: they must hold too.
        if leaf_hash.hex() != row[2] or originator_id != row[3] or version != row[4]:
            return _bad(checked, head, event[0], "the chain row differs from the event (edited)")
        problem = checkpoints.problem(position, head, leaf_hash)
        if problem:
            return _bad(checked, head, event[0], problem)
        checked += 1
        if progress is not None and checked % PAGE == 0:
            progress(event[0], until)
        event, row = next(events, None), next(chained, None)
    problem = checkpoints.unreached()
    if problem:
        return _bad(checked, head, until, problem)
    if progress is not None:
        progress(until, until)
    return Verdict(True, checked, head.hex(), None, "intact")


def _bad(checked: int, head: bytes, position: int, detail: str) -> Verdict:
    return Verdict(False, checked, head.hex(), position, detail)
