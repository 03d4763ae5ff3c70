"""Group commit: the commands that callers queue are decided many at a time and each batch is
stored in one transaction.

Why: the PostgreSQL recorder locks the events table for every insert transaction, so throughput
is bounded by transactions per second, not rows (LIBRARY_NOTES.md). The writer takes every
command waiting (up to ``max_batch``), runs each against cached aggregates and stores all their
events with one insert. A command stays atomic: its events commit together or not at all.

On PostgreSQL one thread does it all (``_pipelined_loop``): it decides a batch, sends it in libpq
pipeline mode and decides the next while up to ``PIPELINE_DEPTH`` batches are at the server, each
its own transaction, run in the order sent, so the table lock passes from one batch to the next
without a round trip to this process in between. Elsewhere (SQLite, memory) a second thread
stores each batch while the first already decides the next.

When a batch cannot commit (a duplicate claim, or another process changed an aggregate), every
batch built on top of it is void too: the writer bumps the *generation*, clears the cache and
queues the commands again, to be run one by one in careful mode, retrying lost races with
jitter. A batch already at the server that was built on the failed one is refused there: each
pipelined batch carries its inserter's sequence number and is stored only if every batch sent
before it was (another process may have stored the very versions the failed batch would have,
so "follows a stored event" alone would let a batch decided on a state that never existed
through); the insert function also accepts no event that follows no stored event, and no
decision taken on a version that is not the latest. Callers only ever see business errors,
except when the database cannot be reached.

Then the writer does not make its callers wait for it. The callers of a batch that meets an
unreachable store get the store's error at once (the API answers it 503, api/problems.py), not
after a retry of each command in turn; while the committer has no connection, every command
queued is refused as it arrives (``DatabaseUnavailable``), and the writer tries to connect again
every ``RECONNECT_WAIT_S``."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)

from ledger.adapters.many_streams import can_select_many, select_many
from ledger.errors import Busy, DatabaseUnavailable, LedgerError
from ledger.events import replay
from ledger.unit_of_work import AggregateCache, Work

log = logging.getLogger(__name__)

Command = Callable[..., Any]
EventKey = tuple[UUID, int]
PIPELINE_DEPTH = 4  # batches at the server at once
# A batch of more events than this (a statement import) is serialised as it is sent, in chunks
# of ``SEND_CHUNK_EVENTS``, all in its one transaction: the server inserts one chunk while this
# thread serialises the next (a 100,000-line import: 2.6 s of serialising and 2.7 s of
# inserting, which otherwise follow each other).
STREAMED_BATCH_EVENTS = 20_000
SEND_CHUNK_EVENTS = 10_000
RECONNECT_WAIT_S = 0.5
# Aggregates the writer keeps, least recently used out first (and as many ids of the classes
# kept as ids). The hot ones (sources, caps, programmes, institutions, vouchers in use) are
# far fewer; the rest are contract claims and new vouchers, about 0.8-1 KB each. At 200,000
# the serve process grew through a whole 10-minute soak (321 -> 545 MB at 92 redemptions and
# 70 new vouchers a second); at 50,000 the cache is full within minutes (the process still
# grows: README, the soak), and an aggregate out of it costs one read of the store when a
# command needs it again.
CACHE_AGGREGATES = 50_000
# Ids of the classes kept as ids (invoice claims, idempotency records). An id out of the cache
# costs nothing for a fresh claim (optimistic work trusts the store's primary key at save) and
# one read for a duplicate or a retried key; 50,000 of them (about 200 B each) kept the serve
# process growing until the 5th minute of a soak at 58 redemptions a second.
CACHE_IDS = 10_000
# What the store raises when it cannot be reached or cannot take writes (the recorders turn the
# driver's errors into these): every other command of the batch would meet it too.
STORE_DOWN = (OperationalError, InterfaceError)


@dataclass
class Outcome:
    """What a command returned and the log position of its last event (None if it made none)."""

    value: Any
    position: int | None


class _Job:
    """One queued command and its result. A plain lock is the wake-up: it costs far less than a
    ``Future`` (a Python-level condition variable) on a path taken thousands of times a second."""

    __slots__ = ("_done", "args", "error", "fn", "outcome")

    def __init__(self, fn: Command, args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def done(self) -> bool:
        return self.outcome is not None or self.error is not None

    def set_result(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> Outcome:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


@dataclass
class _Drain:
    """Marker sent through the commit queue: released when every batch before it is done."""

    done: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Redo:
    """Commands of a batch that could not commit, to be run again one by one."""

    jobs: list[_Job]


@dataclass
class _Batch:
    generation: int
    events: list[StoredEvent]
    read_set: list[tuple[UUID, int]]
    results: list[tuple[_Job, Any, list[EventKey] | None]]
    snapshots: list[StoredEvent]
    # Aggregates whose new events are serialised as the batch is sent (into ``events``).
    unsent: list[Aggregate] | None = None

    @property
    def jobs(self) -> list[_Job]:
        return [job for job, _, _ in self.results]


@dataclass
class WriterStats:
    """Counts since the writer started (/metrics shows them): ``batches`` stored and the
    ``commands`` they held; ``careful`` commands run one by one (after a fallback or a failed
    batch), each its own transaction; ``fallbacks``: batches given up for careful mode;
    ``retries``: careful attempts that lost a race."""

    batches: int = 0
    commands: int = 0
    careful: int = 0
    fallbacks: int = 0
    retries: int = 0


class Writer:
    """Runs commands ``fn(work, *args)`` with group commit; see the module docstring."""

    def __init__(
        self,
        app: Application[UUID],
        *,
        max_batch: int = 256,
        max_retries: int = 12,
        cache_size: int = CACHE_AGGREGATES,
        watched_topics: Sequence[str] = (),
        sync_interval_ms: int = 0,
        kept_as_ids: tuple[type[Aggregate], ...] = (),
    ) -> None:
        assert 1 <= max_batch <= 10_000 and 1 <= max_retries <= 100
        self.app = app
        self.max_batch = max_batch
        self.max_retries = max_retries
        self.cache = AggregateCache(cache_size, ids_only=kept_as_ids, max_ids=CACHE_IDS)
        self.stats = WriterStats()
        self._generation = 0
        # Aggregates that commands read without writing (institutions, programmes) can be changed
        # by another process without any conflict at save time. The PostgreSQL recorder checks
        # the batch's read set under its table lock (ledger/adapters/postgres.py). Elsewhere,
        # before every batch the writer reads the log's head and the watched events since its
        # last look, and evicts what changed; either way a freeze committed by any process binds
        # every command that starts after it. A positive ``sync_interval_ms`` saves the polling
        # queries at the price of that much staleness.
        self._validates_reads = bool(getattr(app.recorder, "validates_reads", False))
        self._watched_topics = [] if self._validates_reads else list(watched_topics)
        self._sync_interval_s = sync_interval_ms / 1000
        self._next_sync_s = 0.0
        self._seen_position = self._max_position()
        self._queue: queue.SimpleQueue[_Job | _Redo | None] = queue.SimpleQueue()
        self._commit_q: queue.SimpleQueue[_Batch | _Drain | None] = queue.SimpleQueue()
        # At most one batch waits for the committer. The writer takes this slot *before* it takes
        # commands off the queue, so everything that arrives while a batch commits goes into
        # the next batch instead of a batch of one that then sits waiting.
        self._slot = threading.Lock()  # a binary semaphore that another thread may release
        # With a pipelining recorder one thread decides and sends batches and collects their
        # outcomes (see _pipelined_loop); when it has nothing to do it waits on its socket and on
        # this pipe, which callers write to when they queue a command while it sleeps.
        make_inserter = getattr(app.recorder, "pipelined_inserter", None)
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._sleeping = False
        self._in_flight: deque[_Batch] = deque()
        self._inserter: Any = None
        self._closed = False
        if make_inserter is not None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            self._threads = [
                threading.Thread(
                    target=self._pipelined_loop,
                    args=(make_inserter,),
                    name="ledger-writer",
                    daemon=True,
                )
            ]
        else:
            self._threads = [
                threading.Thread(target=self._compute_loop, name="ledger-writer", daemon=True),
                threading.Thread(target=self._commit_loop, name="ledger-committer", daemon=True),
            ]
        for thread in self._threads:
            thread.start()

    # ---- callers -------------------------------------------------------------------------
    def run(self, fn: Command, *args: Any) -> Outcome:
        """Queue ``fn(work, *args)`` and wait until it is committed (or refused)."""
        if self._closed:
            raise RuntimeError("writer is closed")
        job = _Job(fn, args)
        self._queue.put(job)
        if self._sleeping:
            self._wake()
        return job.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            if self._wake_w is not None:
                self._wake()
            for thread in self._threads:
                thread.join(timeout=30)
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    os.close(fd)

    # ---- compute thread ------------------------------------------------------------------
    def _compute_loop(self) -> None:
        while True:
            self._slot.acquire()
            items = [self._queue.get()]
            if items[-1] is not None:
                items += self._take_queued(self.max_batch - 1)
            batch = self._decide(items)
            if batch is not None:
                self._to_committer(batch)  # the committer releases the slot when it takes it
            else:
                self._slot.release()
            if items[-1] is None:
                self._to_committer(None)
                return

    def _decide(self, items: list[_Job | _Redo | None]) -> _Batch | None:
        """Run the commands sent back one by one, then the new ones as a batch; returns that
        batch, to be stored, or None if nothing is left to store (every job is settled)."""
        jobs = [i for i in items if isinstance(i, _Job)]
        redo = [j for i in items if isinstance(i, _Redo) for j in i.jobs]
        try:
            if redo:
                self._run_careful_all(redo)
            return self._compute_batch(jobs) if jobs else None
        except BaseException as exc:  # keep the writer alive; fail what is left
            self._void_cache()  # whatever the batch changed in place is suspect
            _fail(jobs + redo, exc)
            return None

    def _compute_batch(self, jobs: list[_Job]) -> _Batch | None:
        """Run ``jobs`` as one batch, to be stored; None if it fell back to careful mode (which
        settled every job)."""
        self._sync_cache()
        generation = self._generation
        work = self._new_work(careful=False)
        results: list[tuple[_Job, Any, list[EventKey] | None]] = []
        for job in jobs:
            work.begin_command()
            try:
                value = job.fn(work, *job.args)
            except LedgerError as exc:
                if work.command_events():  # changed something, then refused: not atomic
                    self._fall_back(work, jobs)
                    return None
                results.append((job, exc, None))
            except STORE_DOWN:
                self._discard(work)
                raise  # _decide refuses the whole batch
            except Exception:
                self._fall_back(work, jobs)
                return None
            else:
                results.append((job, value, work.command_events()))
        changed = work.changed()
        streamed = self._inserter is not None and (
            sum(len(agg.pending_events) for agg in changed) > STREAMED_BATCH_EVENTS
        )
        try:
            stored = [] if streamed else self._to_stored(changed)
        except Exception:  # an event that cannot be serialised: let careful mode report it
            self._fall_back(work, jobs)
            return None
        with self.cache.lock:
            if generation != self._generation:  # built on a batch that failed meanwhile
                self._fall_back(work, jobs)
                return None
            self.cache.put_all(list(work.touched.values()))
        due = self._snapshots_due(work, changed)
        return _Batch(
            generation, stored, work.read_set(), results, due, changed if streamed else None
        )

    def _fall_back(self, work: Work, jobs: list[_Job]) -> None:
        self._discard(work)
        self.stats.fallbacks += 1
        self._run_careful_all(jobs)

    def _run_careful_all(self, jobs: list[_Job]) -> None:
        # Nothing may be in flight: careful commands must see only committed state.
        if self._inserter is not None:  # the pipelined loop's own thread: settle in place
            self._settle_all(self._inserter, self._in_flight)
        else:
            drain = _Drain()
            drain.done.acquire()
            self._to_committer(drain)
            drain.done.acquire()
        for job in jobs:
            self._run_careful(job)

    def _run_careful(self, job: _Job) -> None:
        for attempt in range(self.max_retries):
            self._sync_cache()
            work = self._new_work(careful=True)
            work.begin_command()
            try:
                value = job.fn(work, *job.args)
            except LedgerError as exc:
                self._discard_changed(work)
                if not work.changed() and not self._reads_current(work):
                    self._discard(work)
                    continue  # refused on a stale copy: reload and decide again
                job.set_exception(exc)
                return
            except STORE_DOWN:
                self._discard(work)
                raise  # every job after it would wait for the store in turn: _decide fails all
            except Exception as exc:
                self._discard_changed(work)
                job.set_exception(exc)
                return
            made = work.command_events()
            changed = work.changed()
            try:
                positions = self._insert(self._to_stored(changed), work.read_set())
            except IntegrityError:
                self._discard(work)
                self.stats.retries += 1
                # Lost a race with another process: back off with jitter, reload, decide again.
                time.sleep(random.uniform(0, 0.002 * (2 ** min(attempt, 6))))
                continue
            except STORE_DOWN:
                self._discard(work)
                raise
            except Exception as exc:
                self._discard(work)
                job.set_exception(exc)
                return
            self.cache.put_all(list(work.touched.values()))
            self._put_snapshots(self._snapshots_due(work, changed))
            self.stats.careful += 1
            job.set_result(Outcome(value, _last_position(made, positions)))
            return
        self._discard(work)
        job.set_exception(Busy(f"gave up after {self.max_retries} conflicting attempts"))

    # ---- commit thread -------------------------------------------------------------------
    def _to_committer(self, item: _Batch | _Drain | None) -> None:
        self._commit_q.put(item)

    def _wake(self) -> None:
        assert self._wake_w is not None
        with contextlib.suppress(OSError):  # full (so it wakes anyway), or closed
            os.write(self._wake_w, b"x")

    def _commit_loop(self) -> None:
        while True:
            batch = self._commit_q.get()
            if batch is None:
                return
            if isinstance(batch, _Drain):
                batch.done.release()
                continue
            self._slot.release()
            self._commit_guarded(batch)

    # ---- the pipelined loop (PostgreSQL) ---------------------------------------------------
    def _pipelined_loop(self, make: Callable[[], Any]) -> None:
        """Decide batches, send them and collect their outcomes, all on this one thread.

        The recorder runs each batch in its own transaction, in the order sent, up to
        ``PIPELINE_DEPTH`` of them at the server at once, while this thread decides the next.
        One thread instead of a writer and a committer: handing each batch from one thread to
        the other cost two trips through the interpreter lock, and the committer, woken by the
        server, waited for the lock while the writer computed. When the connection fails, the
        callers of the batches at the server get the error (their outcome is unknown: never a
        false answer), and a new connection takes over."""
        while True:
            try:
                self._inserter = make()
            except Exception as exc:
                if self._refuse_while_unconnected(exc):
                    continue
                return
            try:
                while self._pipelined_step(self._inserter, self._in_flight):
                    pass
                return
            except Exception as exc:
                self._void_cache()
                _fail([job for batch in self._in_flight for job in batch.jobs], exc)
                self._in_flight.clear()
            finally:
                self._inserter.close()
                self._inserter = None

    def _refuse_while_unconnected(self, cause: Exception) -> bool:
        """The committer cannot connect: for ``RECONNECT_WAIT_S``, refuse every command queued
        or arriving, at once (a caller must not wait for a reconnection that may take minutes);
        then the loop tries to connect again. False once the writer is closed."""
        log.warning(
            "cannot connect the committer (%s); retrying in %.1f s", cause, RECONNECT_WAIT_S
        )
        until_s = time.monotonic() + RECONNECT_WAIT_S
        while True:
            while items := self._take_queued():
                _refuse([j for i in items if i is not None for j in _jobs_of(i)], cause)
                if items[-1] is None:
                    return False
            if self._closed:
                return False
            remaining_s = until_s - time.monotonic()
            if remaining_s <= 0:
                return True
            self._nap(remaining_s)

    def _nap(self, timeout_s: float) -> None:
        """Sleep until a caller queues a command or ``timeout_s`` pass."""
        assert self._wake_r is not None
        self._sleeping = True  # callers write to the wake pipe while it is up
        try:
            if self._queue.empty():  # else queued before the flag was up: nobody will wake us
                ready, _, _ = select.select([self._wake_r], [], [], timeout_s)
                if ready:
                    os.read(self._wake_r, 4096)
        finally:
            self._sleeping = False

    def _pipelined_step(self, inserter: Any, in_flight: deque[_Batch]) -> bool:
        """Settle what has completed, then decide and send the next batch, or wait. False once
        the writer is closed."""
        if in_flight:
            self._settle_ready(inserter, in_flight)
        if len(in_flight) < PIPELINE_DEPTH:
            items = self._take_queued()
            if items:
                return self._run_pipelined(items, inserter, in_flight)
        # Nothing to send: sleep until the server answers or a caller queues a command.
        watch = [inserter.fileno()] if in_flight else []
        if len(in_flight) < PIPELINE_DEPTH:
            assert self._wake_r is not None
            watch.append(self._wake_r)
            self._sleeping = True
            if not self._queue.empty():  # queued before the flag was up: nobody will wake us
                self._sleeping = False
                return True
        try:
            ready, _, _ = select.select(watch, [], [], 1.0)
        finally:
            self._sleeping = False
        if self._wake_r is not None and self._wake_r in ready:
            os.read(self._wake_r, 4096)
        return True

    def _take_queued(self, limit: int | None = None) -> list[_Job | _Redo | None]:
        """What is queued now, without waiting: at most ``limit`` (``max_batch``) items,
        ending at the close marker if it comes."""
        limit = self.max_batch if limit is None else limit
        items: list[_Job | _Redo | None] = []
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
            if items[-1] is None:
                break
        return items

    def _run_pipelined(
        self, items: list[_Job | _Redo | None], inserter: Any, in_flight: deque[_Batch]
    ) -> bool:
        batch = self._decide(items)
        if batch is not None:
            if batch.unsent is not None:  # many events: serialised as they are sent
                in_flight.append(batch)
                inserter.send_chunks(self._stored_chunks(batch), batch.read_set)
            elif not batch.events:  # only refusals: settle in order, then check reads
                self._settle_all(inserter, in_flight)
                self._commit_guarded(batch)
            else:
                in_flight.append(batch)  # first: if sending fails, its callers are told
                inserter.send(batch.events, batch.read_set)
        if items[-1] is None:
            self._settle_all(inserter, in_flight)
            return False
        return True

    def _settle_ready(self, inserter: Any, in_flight: deque[_Batch]) -> None:
        for outcome in inserter.poll():
            batch = in_flight.popleft()
            self._settle(batch, outcome)

    def _settle_all(self, inserter: Any, in_flight: deque[_Batch]) -> None:
        while in_flight:
            select.select([inserter.fileno()], [], [], 1.0)
            self._settle_ready(inserter, in_flight)

    def _settle(self, batch: _Batch, outcome: Any) -> None:
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            positions: dict[EventKey, int] = {
                (s.originator_id, s.originator_version): n  # type: ignore[misc]
                for s, n in zip(batch.events, outcome, strict=True)
            }
            self._deliver(batch, positions)
        except IntegrityError:
            self._void_cache()
            self.stats.fallbacks += 1
            self._queue.put(_Redo(batch.jobs))
        except BaseException as exc:
            self._void_cache()
            _fail(batch.jobs, exc)

    def _commit_guarded(self, batch: _Batch) -> None:
        try:
            self._commit(batch)
        except BaseException as exc:
            _fail(batch.jobs, exc)

    def _commit(self, batch: _Batch) -> None:
        if batch.generation != self._generation:
            self._queue.put(_Redo(batch.jobs))
            return
        try:
            positions = self._insert(batch.events, batch.read_set)
        except IntegrityError:
            self._void_cache()
            self.stats.fallbacks += 1
            self._queue.put(_Redo(batch.jobs))
            return
        except BaseException:
            self._void_cache()
            raise
        self._deliver(batch, positions)

    def _deliver(self, batch: _Batch, positions: dict[EventKey, int]) -> None:
        self._put_snapshots(batch.snapshots)
        self.stats.batches += 1
        self.stats.commands += len(batch.results)
        for job, value, made in batch.results:
            if made is None:
                job.set_exception(value)
            else:
                job.set_result(Outcome(value, _last_position(made, positions)))

    def _void_cache(self) -> None:
        with self.cache.lock:
            self._generation += 1
            self.cache.clear()

    # ---- storage and cache ---------------------------------------------------------------
    def _new_work(self, *, careful: bool) -> Work:
        load_many = self._load_many if can_select_many(self.app.recorder) else None
        return Work(self.cache, self._load, careful=careful, load_many=load_many)

    def _load(self, agg_id: UUID) -> Aggregate:
        agg: Aggregate = self.app.repository.get(agg_id, projector_func=replay)
        return agg

    def _load_many(self, ids: list[UUID]) -> dict[UUID, Aggregate]:
        """The aggregates ``ids`` that exist, each replayed from all its stored events (a
        snapshot only saves reading them; every event stays stored)."""
        streams: dict[UUID, list[Any]] = {}
        to_event = self.app.mapper.to_domain_event
        for stored in select_many(self.app.recorder, ids):
            streams.setdefault(cast(UUID, stored.originator_id), []).append(to_event(stored))
        return {agg_id: replay(None, events) for agg_id, events in streams.items()}

    def _stored_chunks(self, batch: _Batch) -> Iterator[list[StoredEvent]]:
        """``_to_stored`` of a streamed batch, chunk by chunk, kept in ``batch.events`` too (its
        outcome is matched to them). An event that cannot be serialised raises here, and the
        inserter rolls the batch back: its commands are then run again in careful mode."""
        assert batch.unsent is not None
        chunk: list[StoredEvent] = []
        for stored in self._stored_events(batch.unsent):
            chunk.append(stored)
            if len(chunk) == SEND_CHUNK_EVENTS:
                batch.events.extend(chunk)
                yield chunk
                chunk = []
        batch.unsent = None
        if chunk:
            batch.events.extend(chunk)
            yield chunk

    def _to_stored(self, changed: list[Aggregate]) -> list[StoredEvent]:
        """Serialise the new events in the writer thread, so the committer only inserts.

        Events go straight to the recorder: Application.save() would check each object against
        runtime protocols, which costs more than the rest of a redemption."""
        return list(self._stored_events(changed))

    def _stored_events(self, changed: list[Aggregate]) -> Iterator[StoredEvent]:
        to_stored = self.app.mapper.to_stored_event
        return (to_stored(e) for agg in changed for e in agg.collect_events())

    def _insert(
        self, stored: list[StoredEvent], read_set: list[tuple[UUID, int]]
    ) -> dict[EventKey, int]:
        """Insert in one transaction; returns each event's notification id (its position).
        A recorder that validates reads refuses the insert if anything in ``read_set`` changed."""
        if not stored:
            if self._validates_reads:  # refusals must rest on current state too
                self.app.recorder.validate_reads(read_set)  # type: ignore[attr-defined]
            return {}
        if self._validates_reads:
            ids = self.app.recorder.insert_events(stored, read_set=read_set)
        else:
            ids = self.app.recorder.insert_events(stored)
        assert ids is not None and len(ids) == len(stored)
        return {
            (s.originator_id, s.originator_version): n  # type: ignore[misc]
            for s, n in zip(stored, ids, strict=True)
        }

    def _snapshots_due(self, work: Work, changed: list[Aggregate]) -> list[StoredEvent]:
        """Snapshots of long streams (caps, sources) that crossed a multiple of their interval,
        taken from the aggregate in hand and serialised at once (later commands change it in
        place); they are stored only after the batch commits. Taking a snapshot the library's
        way would reload the aggregate from the store, on the committer's thread."""
        if self.app.snapshots is None:
            return []
        intervals = self.app.snapshotting_intervals
        to_stored = self.app.snapshots.mapper.to_stored_event
        due = []
        for agg in changed:
            interval = intervals.get(type(agg))
            if interval and agg.version // interval > work.base_version[agg.id] // interval:
                snapshot_class = getattr(type(agg), "Snapshot", type(self.app).snapshot_class)
                assert snapshot_class is not None
                due.append(to_stored(snapshot_class.take(agg)))
        return due

    def _put_snapshots(self, due: list[StoredEvent]) -> None:
        if self.app.snapshots is None or not due:
            return
        try:
            self.app.snapshots.recorder.insert_events(due)
        except Exception:  # a snapshot only saves replay time; the events are stored
            log.exception("%d snapshots failed", len(due))

    def _reads_current(self, work: Work) -> bool:
        if not self._validates_reads:
            return True  # polled before the command instead (_sync_cache)
        try:
            self.app.recorder.validate_reads(work.read_set())  # type: ignore[attr-defined]
        except IntegrityError:
            return False
        return True

    def _discard(self, work: Work) -> None:
        for agg_id in work.touched:
            self.cache.evict(agg_id)

    def _discard_changed(self, work: Work) -> None:
        for agg in work.changed():
            self.cache.evict(agg.id)

    def _max_position(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def _sync_cache(self) -> None:
        """Evict cached aggregates that another process changed since the last look."""
        if not self._watched_topics or time.monotonic() < self._next_sync_s:
            return
        self._next_sync_s = time.monotonic() + self._sync_interval_s
        head = self._max_position()
        start = self._seen_position + 1
        while start <= head:
            page = self.app.recorder.select_notifications(
                start, 1000, stop=head, topics=self._watched_topics
            )
            for n in page:
                agg_id: UUID = n.originator_id  # type: ignore[assignment]
                cached = self.cache.version_of(agg_id)
                if cached is not None and cached < n.originator_version:
                    self.cache.evict(agg_id)
            if len(page) < 1000:
                break
            start = page[-1].id + 1
        self._seen_position = max(self._seen_position, head)


def _last_position(made: list[EventKey], positions: dict[EventKey, int]) -> int | None:
    found = [positions[key] for key in made if key in positions]
    return max(found) if found else None


def _jobs_of(item: _Job | _Redo) -> list[_Job]:
    return item.jobs if isinstance(item, _Redo) else [item]


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    """An unexpected failure (not a business refusal): log it and hand it to every caller left.
    A batch that was at the server when its connection broke may have committed: its callers
    cannot know, and a retry with the same Idempotency-Key replays it if it did."""
    if isinstance(exc, STORE_DOWN):  # an outage: one line each time, not a traceback
        log.warning("writer failed, database unavailable: %s", exc)
    else:
        log.exception("writer failed", exc_info=exc)
    for job in jobs:
        if not job.done():
            job.set_exception(exc)


def _refuse(jobs: list[_Job], cause: BaseException) -> None:
    """Tell every caller left that the committer cannot reach the database: nothing of theirs
    was sent."""
    left = [job for job in jobs if not job.done()]
    for job in left:
        error = DatabaseUnavailable("the database cannot be reached; nothing was stored")
        error.__cause__ = cause
        job.set_exception(error)
