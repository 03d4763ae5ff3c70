"""The projector: follows the ledger's notification log and applies it to the views, one page of
events per transaction, with the page's last position as the tracking record.

eventsourcing's ``ProjectionRunner`` calls ``process_event`` once per event, which means one
transaction per event; a page per transaction is what lets a rebuild run at tens of thousands
of events a second. The tracking is eventsourcing's all the same (see ``projections.store``)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import InterfaceError, Notification, OperationalError

from ledger.application import VoucherLedger
from projections.store import Key, Row, Table, TrackingMoved, ViewStore
from projections.views import Batch, LedgerViews

PAGE_SIZE = 2000
# Rows the views' follower keeps between pages; past this many it forgets them all (the hot
# ones, a few hundred sources, vouchers and year counters, are read again at once). A
# redemption adds about nine rows, 3.5 KB in all (tracemalloc): at 200,000 the follower grew
# for 22,000 redemptions, through the whole of a 10-minute soak (+29.5% RSS); at 50,000 the
# cache is full after about 5,500 (the follower still grew 9-18% in later soaks: README), and a
# forgotten cache costs one read per hot row.
MAX_CACHED_ROWS = 50_000
IDLE_POLL_S = 0.02
# After a failed step (the database away, mostly) the projector pauses, from the first to the
# last figure, doubling, and tries again: short enough that the views heal within a second of
# the database coming back, without a restart of the process.
ERROR_BACKOFF_FIRST_S = 0.1
ERROR_BACKOFF_S = 1.0
CATCH_UP_PATIENCE_S = 60.0  # how long a catch-up waits for an unreachable database
MAX_WAIT_S = 2.0
STORE_DOWN = (OperationalError, InterfaceError)  # what the stores raise when it is away

log = logging.getLogger(__name__)
ToEvent = Callable[[Notification], Any]


@dataclass(frozen=True)
class Lag:
    position: int  # last position applied to the views
    head: int  # last position in the log
    behind_events: int
    behind_s: float  # age of the oldest event not yet applied (0 when caught up)


class Follower(Protocol):
    """What a projector feeds pages of the log to: the views, or the audit chain."""

    def rows(self, page: Sequence[Notification], to_event: ToEvent) -> dict[Table, list[Row]]:
        """The rows to write for ``page`` (which may be empty: a follower may still have
        something to write, like a checkpoint that is due)."""

    def committed(self) -> None:
        """The rows of the last ``rows`` call were written with the page's position."""

    def forget(self) -> None:
        """They were not: drop whatever was derived from them and from the stored rows."""


_POLICIES = LedgerViews.__dict__["apply"].dispatcher


class ViewsFollower:
    """The read models: events decoded and applied by the ``LedgerViews`` policies, rows kept
    in a cache while this projector is the only writer."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        self.views = LedgerViews()
        self.topics = LedgerViews.topics()
        self._cache: dict[tuple[str, Key], Row | None] = {}
        self._handlers: dict[type[Any], Callable[..., None]] = {}

    def rows(self, page: Sequence[Notification], to_event: ToEvent) -> dict[Table, list[Row]]:
        batch = Batch(self.store, self._cache)
        handlers = self._handlers
        for n in page:
            if n.topic in self.topics:
                event = to_event(n)
                handler = handlers.get(type(event))
                if handler is None:  # resolved once per class: singledispatchmethod's own
                    # lookup builds a new bound wrapper on every call
                    handler = handlers[type(event)] = _POLICIES.dispatch(type(event))
                handler(self.views, event, batch, n.id)
        return batch.rows()

    def committed(self) -> None:
        if len(self._cache) > MAX_CACHED_ROWS:
            self._cache.clear()

    def forget(self) -> None:
        self._cache.clear()  # a batch changes cached rows in place


class Projector:
    """Feeds the log to ``follower`` (the views by default) and writes what it makes into
    ``store`` with the position. ``step`` does one page; ``run`` loops until stopped."""

    def __init__(
        self,
        ledger: VoucherLedger,
        store: ViewStore,
        follower: Follower | None = None,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        assert 0 < page_size <= 10_000
        self.ledger = ledger
        self.store = store
        self.follower: Follower = follower or ViewsFollower(store)
        self.page_size = page_size
        self.position: int | None = store.position() or None
        self._advanced = threading.Condition()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> int:
        """Apply the next page of events, if any; returns how many positions it consumed."""
        after = self.position or 0
        page = self.ledger.recorder.select_notifications(after + 1, self.page_size)
        try:
            rows = self.follower.rows(page, self.ledger.mapper.to_domain_event)
            if not page and not any(rows.values()):
                return 0
            last = page[-1].id if page else self.position
            self.store.commit(self.position, last, rows, getattr(self.follower, "check", None))
        except TrackingMoved as moved:
            # Someone else moved the position: what we derived may be stale. Start again there.
            self.follower.forget()
            self.position = moved.current
            return 0
        except BaseException:
            self.follower.forget()
            raise
        self.follower.committed()
        if not page:
            return 0
        self.position = page[-1].id
        with self._advanced:
            self._advanced.notify_all()
        return len(page)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything in the log now; returns the events consumed. ``progress(done, head)``
        is called after each page. While the database cannot be reached it waits and tries
        again, for at most ``CATCH_UP_PATIENCE_S`` in a row."""
        backoff = Backoff()
        head = backoff.retrying(lambda: self.ledger.recorder.max_notification_id() or 0)
        done = 0
        while (self.position or 0) < head:
            n = backoff.retrying(self.step)
            done += n
            if progress is not None:
                progress(self.position or 0, head)
            if n == 0 and (self.position or 0) < head:
                time.sleep(IDLE_POLL_S)  # the position moved under us; read again
        return done

    def run(self) -> None:
        """Follow the log until ``stopping`` is set; errors are logged and retried."""
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                if self.step() == 0:
                    self.stopping.wait(IDLE_POLL_S)
            except Exception as exc:
                backoff.failed(exc, self.stopping)
            else:
                backoff.reset()

    def start(self, name: str = "ledger-projector") -> Projector:
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self._advanced:
            self._advanced.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait(self, position: int, timeout_s: float) -> bool:
        """Block until the views include ``position`` (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        with self._advanced:
            while (self.position or 0) < position and not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._advanced.wait(remaining)
        return (self.position or 0) >= position


class Backoff:
    """Pauses between failed steps: ``ERROR_BACKOFF_FIRST_S``, doubling to ``ERROR_BACKOFF_S``;
    a step that works starts again from the first."""

    def __init__(self) -> None:
        self.pause_s = ERROR_BACKOFF_FIRST_S
        self.failing_since_s: float | None = None

    def reset(self) -> None:
        self.pause_s = ERROR_BACKOFF_FIRST_S
        self.failing_since_s = None

    def failed(self, exc: Exception, stopping: threading.Event | None = None) -> None:
        """Log ``exc`` (one line if the database is away, else with its traceback) and pause."""
        if isinstance(exc, STORE_DOWN):
            log.warning("projector step failed, database unavailable (%s); retrying", exc)
        else:
            log.exception("projector step failed; retrying")
        if self.failing_since_s is None:
            self.failing_since_s = time.monotonic()
        if stopping is None:
            time.sleep(self.pause_s)
        else:
            stopping.wait(self.pause_s)
        self.pause_s = min(ERROR_BACKOFF_S, self.pause_s * 2)

    def retrying(self, step: Callable[[], int]) -> int:
        """``step()``, tried again while the database cannot be reached (not for longer than
        ``CATCH_UP_PATIENCE_S`` in a row); any other error is raised at once."""
        while True:
            try:
                result = step()
            except STORE_DOWN as exc:
                since_s = self.failing_since_s
                if since_s is not None and time.monotonic() - since_s > CATCH_UP_PATIENCE_S:
                    raise
                self.failed(exc)
            else:
                self.reset()
                return result


def wait_until(store: ViewStore, position: int, timeout_s: float) -> int:
    """Poll ``store`` until its views include ``position``, for readers in another process
    than the projector (2 ms between polls, backing off to 50 ms); returns the position it saw
    last, ``position`` or beyond once reached: a reader needs no second query to say which
    position its answer includes."""
    deadline = time.monotonic() + min(timeout_s, MAX_WAIT_S)
    interval_s = 0.002
    while True:
        seen = store.position()
        if seen >= position:
            return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return seen
        time.sleep(min(interval_s, remaining))
        interval_s = min(interval_s * 2, 0.05)


def lag(ledger: VoucherLedger, store: ViewStore) -> Lag:
    """How far the views are behind the log, in positions and in seconds."""
    position = store.position()
    head = ledger.recorder.max_notification_id() or 0
    behind_s = 0.0
    if head > position:
        oldest = ledger.recorder.select_notifications(position + 1, 1)
        if oldest:
            event: Any = ledger.mapper.to_domain_event(oldest[0])
            stamp = event.timestamp
            behind_s = max(0.0, (dt.datetime.now(dt.UTC) - stamp).total_seconds())
    return Lag(position, head, max(0, head - position), behind_s)
