"""The aggregates one batch of commands reads and changes, and which events each command made.

Commands run in the writer thread against cached aggregates (no copies); a command first loads
and checks, then calls verbs. If a command raises after it has changed something, the work is
"poisoned" and the writer throws every touched aggregate away and runs the commands one by one."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from ledger.errors import NotFound

A = TypeVar("A", bound=Aggregate)


class AggregateCache:
    """LRU map of aggregate id to the aggregate as the writer last left it.

    Aggregates of the ``ids_only`` classes (the ledger passes invoice claims and idempotency
    records) are kept as their id alone: almost all the writer asks of them is whether they
    exist, and one in memory costs about 830 bytes (an idempotency record, with the answer it
    replays, more), its id about 200; a command that reads or changes one loads it from the
    store (``Work.find``: a retried request's record, to replay its answer). Neither is ever
    deleted, so an id kept says the truth for as long as it is kept."""

    def __init__(
        self, maxsize: int, ids_only: tuple[type[Aggregate], ...] = (), max_ids: int = 0
    ) -> None:
        assert maxsize > 0
        self.maxsize = maxsize
        self.ids_only = ids_only
        self.max_ids = max_ids or maxsize
        self.lock = threading.RLock()
        self._items: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._ids: OrderedDict[UUID, type[Aggregate]] = OrderedDict()

    def get(self, agg_id: UUID) -> Aggregate | None:
        with self.lock:
            item = self._items.get(agg_id)
            if item is not None:
                self._items.move_to_end(agg_id)
            return item

    def exists(self, cls: type[Aggregate], agg_id: UUID) -> bool:
        """Whether a claim of ``cls`` kept as its id alone exists."""
        with self.lock:
            kept = self._ids.get(agg_id)
            if kept is not None and issubclass(kept, cls):
                self._ids.move_to_end(agg_id)
                return True
            return False

    def put_all(self, aggregates: list[Aggregate]) -> None:
        with self.lock:
            for agg in aggregates:
                if isinstance(agg, self.ids_only):
                    self._items.pop(agg.id, None)
                    self._ids[agg.id] = type(agg)
                    self._ids.move_to_end(agg.id)
                    continue
                self._items[agg.id] = agg
                self._items.move_to_end(agg.id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            while len(self._ids) > self.max_ids:
                self._ids.popitem(last=False)

    def evict(self, agg_id: UUID) -> None:
        with self.lock:
            self._items.pop(agg_id, None)
            self._ids.pop(agg_id, None)

    def version_of(self, agg_id: UUID) -> int | None:
        item = self._items.get(agg_id)
        return None if item is None else item.version

    def clear(self) -> None:
        with self.lock:
            self._items.clear()
            self._ids.clear()


class Work:
    """Aggregates loaded or created by a batch, with each one's version when it entered."""

    def __init__(
        self,
        cache: AggregateCache,
        load: Callable[[UUID], Aggregate],
        *,
        careful: bool,
        load_many: Callable[[list[UUID]], dict[UUID, Aggregate]] | None = None,
    ) -> None:
        self.cache = cache
        self._load = load
        self._load_many = load_many
        # Ids a ``prefetch`` found nothing stored for: ``find`` asks the store no more.
        self._absent: set[UUID] = set()
        # Careful work asks the store whether a claim exists; optimistic work trusts the cache
        # and lets the store's primary key refuse a duplicate at save time.
        self.careful = careful
        self.touched: dict[UUID, Aggregate] = {}
        self.base_version: dict[UUID, int] = {}
        # Version of each aggregate the current command used, when it first used it.
        self._command_start: dict[UUID, int] = {}

    def find(self, cls: type[A], agg_id: UUID, *, ask_store: bool = True) -> A | None:
        """The aggregate, from this work, the cache or (``ask_store``) the store; None if there
        is none of ``cls``. One the cache keeps as its id alone is loaded from the store even
        when ``ask_store`` is false: the id says it exists."""
        agg = self.touched.get(agg_id)
        if agg is None:
            if agg_id in self._absent:
                return None
            agg = self.cache.get(agg_id)
            if agg is None and (ask_store or self.cache.exists(cls, agg_id)):
                try:
                    agg = self._load(agg_id)
                except AggregateNotFoundError:
                    return None
            if agg is None or not isinstance(agg, cls):
                return None
            self.touched[agg_id] = agg
            self.base_version[agg_id] = agg.version
        elif not isinstance(agg, cls):
            return None
        self._command_start.setdefault(agg_id, agg.version)
        return agg

    def prefetch(self, ids: list[UUID]) -> None:
        """Load with one query (a few, for thousands) those of ``ids`` that neither this work
        nor the cache holds, as ``find`` would one by one: a payout's contract claims and
        payable lines. Without a store that can (the in-memory one), ``find`` loads each."""
        if self._load_many is None:
            return
        wanted = [
            i for i in dict.fromkeys(ids) if i not in self.touched and self.cache.get(i) is None
        ]
        if not wanted:
            return
        found = self._load_many(wanted)
        for agg_id in wanted:
            agg = found.get(agg_id)
            if agg is None:
                self._absent.add(agg_id)
            else:
                self.touched[agg_id] = agg
                self.base_version[agg_id] = agg.version

    def get(self, cls: type[A], agg_id: UUID, what: str) -> A:
        agg = self.find(cls, agg_id)
        if agg is None:
            raise NotFound(f"{what} not found")
        return agg

    def latest(self, cls: type[A], agg_id: UUID, what: str) -> A:
        """An aggregate a command only reports on, never changes: no save would reveal that the
        cached copy is stale, so read the store (or the cache, if a batch in flight is newer)."""
        try:
            stored = self._load(agg_id)
        except AggregateNotFoundError:
            raise NotFound(f"{what} not found") from None
        cached = self.touched.get(agg_id) or self.cache.get(agg_id)
        latest = cached if cached is not None and cached.version >= stored.version else stored
        if not isinstance(latest, cls):
            raise NotFound(f"{what} not found")
        return latest

    def claim_exists(self, cls: type[Aggregate], agg_id: UUID) -> bool:
        if agg_id not in self.touched and self.cache.exists(cls, agg_id):
            return True
        return self.find(cls, agg_id, ask_store=self.careful) is not None

    def add(self, agg: A) -> A:
        assert agg.id not in self.touched, "aggregate created twice in one batch"
        self._absent.discard(agg.id)
        self.touched[agg.id] = agg
        self.base_version[agg.id] = 0
        self._command_start[agg.id] = 0
        return agg

    def begin_command(self) -> None:
        self._command_start = {}

    def command_events(self) -> list[tuple[UUID, int]]:
        """(originator id, version) of every event the current command made."""
        made: list[tuple[UUID, int]] = []
        for agg_id, start in self._command_start.items():
            version = self.touched[agg_id].version
            made.extend((agg_id, v) for v in range(start + 1, version + 1))
        return made

    def read_set(self) -> list[tuple[UUID, int]]:
        """(id, version) of every aggregate the work read but did not change."""
        return [
            (i, a.version) for i, a in self.touched.items() if a.version == self.base_version[i]
        ]

    def changed(self) -> list[Aggregate]:
        return [a for i, a in self.touched.items() if a.version != self.base_version[i]]
