"""``verify``: recompute the hash chain from the stored events alone and compare it with the
chain the follower kept and with the signed checkpoints. Names the first position where an event
was edited, deleted or inserted, or where a checkpoint does not hold.

It streams: events and chain rows are read in pages by position, side by side, with plain SQL
(no decoding), so it runs at the speed of SHA-256 and the database."""

from __future__ import annotations

import base64
import bisect
import contextlib
import itertools
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


def prefetched(pages: Iterator[list[T]]) -> Generator[list[T], None, None]:
    """``pages``, the next one read in a thread while this one is hashed (the database wait
    releases the interpreter lock)."""
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
            yield page
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
        self.leaves: list[bytes] = []  # since the last checkpoint; the caller appends to it
        self._beyond = until + 1  # no event verified reaches it: there is no checkpoint left
        self.next_position = self._position_of(0)

    def _position_of(self, index: int) -> int:
        return int(self.rows[index]["position"]) if index < len(self.rows) else self._beyond

    def problem(self, position: int, head: bytes) -> str | None:
        """After the event at ``position``, whose leaf hash is the last of ``leaves``: what is
        wrong with the checkpoint ending there. The caller asks only once ``position`` has
        reached ``next_position``."""
        if self.index < len(self.rows) and self.rows[self.index]["position"] < position:
            return f"checkpoint at {self.rows[self.index]['position']} covers no stored event"
        if self.index >= len(self.rows) or self.rows[self.index]["position"] != position:
            return None
        cp = self.rows[self.index]
        self.index += 1
        self.next_position = self._position_of(self.index)
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
    event_pages: Iterator[list[Canonical]],
    chain_pages: Iterator[list[ChainRow]],
    checkpoints: _Checkpoints,
    until: int,
    progress: Callable[[int, int], None] | None,
) -> Verdict:
    """Walk the two streams side by side. A run of events with no checkpoint in it is checked a
    run at a time (``_run_holds``); a run with anything wrong in it, and each event that ends a
    checkpoint, goes through ``_one_by_one``, which names the first bad position."""
    state = _State(GENESIS, 0, checkpoints)
    for events, rows in _chunks(event_pages, chain_pages):
        positions = [e[0] for e in events]
        start = 0
        while start < len(events):
            end = bisect.bisect_left(positions, checkpoints.next_position, start)
            if end > start and _run_holds(events[start:end], rows[start:end], state):
                start = end
                continue
            stop = max(end, start + 1)  # the bad run, or the event at a checkpoint
            verdict = _one_by_one(events[start:stop], rows[start:stop], state)
            if verdict is not None:
                return verdict
            start = stop
        if progress is not None:
            progress(events[-1][0], until)
    problem = checkpoints.unreached()
    if problem:
        return _bad(state.checked, state.head, until, problem)
    if progress is not None:
        progress(until, until)
    return Verdict(True, state.checked, state.head.hex(), None, "intact")


@dataclass
class _State:
    head: bytes
    checked: int
    checkpoints: _Checkpoints


def _chunks(
    event_pages: Iterator[list[Canonical]], chain_pages: Iterator[list[ChainRow]]
) -> Iterator[tuple[list[Canonical], list[ChainRow]]]:
    """Equal-length slices of the two streams; where one runs out, the other's rest with an
    empty list beside it (``_one_by_one`` then names what is missing)."""
    events: list[Canonical] = []
    rows: list[ChainRow] = []
    while True:
        if not events:
            events = next(event_pages, [])
        if not rows:
            rows = next(chain_pages, [])
        if not events or not rows:
            if events or rows:
                yield events, rows
            return
        n = min(len(events), len(rows))
        yield events[:n], rows[:n]
        events, rows = events[n:], rows[n:]


def _run_holds(events: list[Canonical], rows: list[ChainRow], state: _State) -> bool:
    """Whether every event of the run matches its chain row (position, chain hash, leaf hash,
    originator, version); if so, the state moves past the run. The cost of verify is here,
    so each check is one list comparison over the run."""
    if [e[0] for e in events] != [r[0] for r in rows]:
        return False
    head = state.head
    heads: list[bytes] = []
    for e in events:
        head = sha256(head + e[1]).digest()  # audit.chain.link, inlined
        heads.append(head)
    if [h.hex() for h in heads] != [r[1] for r in rows]:
        return False
    leaves = [e[2] or sha256(b"\x00" + e[1]).digest() for e in events]
    if (
        [leaf.hex() for leaf in leaves] != [r[2] for r in rows]
        or [e[3] for e in events] != [r[3] for r in rows]
        or [e[4] for e in events] != [r[4] for r in rows]
    ):
        return False
    state.checkpoints.leaves.extend(leaves)
    state.head = head
    state.checked += len(events)
    return True


def _one_by_one(events: list[Canonical], rows: list[ChainRow], state: _State) -> Verdict | None:
    """Check event by event; the verdict at the first bad one, or None if all hold."""
    checked, head, checkpoints = state.checked, state.head, state.checkpoints
    for event, row in itertools.zip_longest(events, rows):
        if row is None or (event is not None and event[0] < row[0]):
            assert event is not None
            return _bad(checked, head, event[0], "an event the chain does not have (inserted)")
        if event is None or row[0] < event[0]:
            return _bad(checked, head, row[0], "a chained event is missing (deleted)")
        position, data, leaf_hash, originator_id, version = event
        head = sha256(head + data).digest()
        if head.hex() != row[1]:  # a tampered value that is not hex simply differs
            return _bad(checked, head, position, "the event differs from the one chained (edited)")
        leaf_hash = leaf_hash or sha256(b"\x00" + data).digest()
        # The chain row's other columns serve proofs and traces: they must hold too.
        if leaf_hash.hex() != row[2] or originator_id != row[3] or version != row[4]:
            return _bad(checked, head, position, "the chain row differs from the event (edited)")
        checkpoints.leaves.append(leaf_hash)
        if position >= checkpoints.next_position:
            problem = checkpoints.problem(position, head)
            if problem:
                return _bad(checked, head, position, problem)
        checked += 1
    state.checked, state.head = checked, head
    return None


def _bad(checked: int, head: bytes, position: int, detail: str) -> Verdict:
    return Verdict(False, checked, head.hex(), position, detail)
