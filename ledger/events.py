"""Events for the redemption hot path, built without eventsourcing's general machinery.

``Aggregate.trigger_event`` and ``Aggregate._create`` copy the keyword arguments, construct a
frozen dataclass one ``object.__setattr__`` at a time, check the originator id and version, and
(for a created event) filter the arguments against two signatures by introspection. A redemption
makes five events, and that work was a quarter of the writer thread's time. ``emit`` and
``create`` build the same event objects and the same aggregates, field for field and in the same
order (so they serialise to the same bytes), and skip only the checks whose outcome is known:
the event belongs to the aggregate in hand and is its next version. ``tests/test_events.py``
holds them to the library's path. Replay from the store still goes through the library."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

A = TypeVar("A", bound=Aggregate)

_BASE_FIELDS = ("originator_id", "originator_version", "timestamp")
_CREATED_FIELDS = (*_BASE_FIELDS, "originator_topic")


_own_fields: dict[type[Any], tuple[str, ...]] = {}


def _fields(event_class: type[Any], base: tuple[str, ...]) -> tuple[str, ...]:
    """The event's own fields, in dataclass order, after ``base``."""
    names = _own_fields.get(event_class)
    if names is None:
        every = tuple(f.name for f in dataclasses.fields(event_class))
        if every[: len(base)] != base:
            raise TypeError(f"{event_class.__qualname__} does not start with {base}")
        names = _own_fields[event_class] = every[len(base) :]
    return names


def _fill(
    state: dict[str, Any], event_class: type[Any], names: tuple[str, ...], fields: Any
) -> None:
    try:
        if len(fields) != len(names):
            raise KeyError
        for name in names:
            state[name] = fields[name]
    except KeyError:
        missing = sorted(set(names) - set(fields))
        extra = sorted(set(fields) - set(names))
        raise TypeError(
            f"{event_class.__qualname__}: missing {missing}, unexpected {extra}"
        ) from None


def emit(aggregate: Aggregate, event_class: type[Aggregate.Event], **fields: Any) -> None:
    """``aggregate.trigger_event(event_class, **fields)``, leanly."""
    names = _fields(event_class, _BASE_FIELDS)
    event = object.__new__(event_class)
    state = event.__dict__
    version = aggregate._version + 1  # the library's own attributes, set as it sets them
    timestamp = event_class.create_timestamp()
    state["originator_id"] = aggregate._id
    state["originator_version"] = version
    state["timestamp"] = timestamp
    _fill(state, event_class, names, fields)
    event.apply(aggregate)
    aggregate._version = version
    aggregate._modified_on = timestamp
    aggregate._pending_events.append(event)


def create(
    aggregate_class: type[A], event_class: type[Any], aggregate_id: UUID, **fields: Any
) -> A:
    """``aggregate_class._create(event_class, id=aggregate_id, **fields)``, leanly, for an
    aggregate whose ``__init__`` is decorated with ``@event`` and takes exactly the event's
    fields."""
    names = _fields(event_class, _CREATED_FIELDS)
    event = object.__new__(event_class)
    state = event.__dict__
    timestamp = event_class.create_timestamp()
    state["originator_id"] = aggregate_id
    state["originator_version"] = 1
    state["timestamp"] = timestamp
    state["originator_topic"] = get_topic(aggregate_class)  # the library caches topics
    _fill(state, event_class, names, fields)
    aggregate = object.__new__(aggregate_class)
    aggregate.__base_init__(aggregate_id, 1, timestamp)
    aggregate.__init__(**fields)  # type: ignore[misc]  # the decorated __init__'s own body
    event.apply(aggregate)
    aggregate._pending_events.append(event)
    return aggregate


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's ``project_aggregate`` (each event's ``mutate`` on the aggregate so far,
    a snapshot's first), without its ``isinstance`` check of every event against a runtime
    ``Protocol``: that check walks the protocol's attributes each time, and was a fifth of
    reading a voucher. Every event this ledger stores is an ``Aggregate.Event`` or a
    ``Snapshot``, whose ``mutate`` is the library's own."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def evolve(cls: type[Any], *upcasters: Callable[[dict[str, Any]], None]) -> None:
    """Give a stored class (an event, or an aggregate for its snapshots) a new schema version:
    ``upcasters[i]`` turns the stored state of version i + 1 into version i + 2 in place, so a
    log written before a field was renamed or added still replays (eventsourcing's upcasting:
    the mapper calls ``upcast_v1_v2`` and so on for state stored with an older version)."""
    cls.class_version = len(upcasters) + 1
    for version, upcast in enumerate(upcasters, start=1):
        setattr(cls, f"upcast_v{version}_v{version + 1}", staticmethod(upcast))


def renamed(state: dict[str, Any], names: dict[str, str]) -> None:
    """Rename keys of a stored state in place (old name -> new name)."""
    for old, new in names.items():
        if old in state:
            state[new] = state.pop(old)
