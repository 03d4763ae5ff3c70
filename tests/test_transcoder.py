"""The msgspec transcoder writes exactly the bytes eventsourcing's JSONTranscoder writes, and
leaves to it whatever it would not write the same way."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import VoucherLedger
from ledger.settings import Settings
from ledger.transcoder import FastJSONTranscoder


def registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


LIBRARY = registered(JSONTranscoder())
FAST = registered(FastJSONTranscoder())

leaves = st.one_of(
    st.text(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))])),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), values, max_size=8))
def test_the_same_bytes_as_the_library_and_the_same_value_back(state: dict[str, Any]) -> None:
    try:
        expected = LIBRARY.encode(state)
    except UnicodeEncodeError:  # a lone surrogate: neither can write it
        with pytest.raises(UnicodeEncodeError):
            FAST.encode(state)
        return
    assert FAST.encode(state) == expected
    assert FAST.decode(expected) == LIBRARY.decode(expected)


@pytest.mark.parametrize(
    "state",
    [
        {"amount": 1.5},  # a float: no floats on the money path, but the library writes them
        {"nan": float("nan")},
        {"big": 2**200},
        {1: "an int key"},
        {"flag": True, "nested": [{"x": (1, 2)}]},
    ],
    ids=["float", "nan", "huge-int", "int-key", "bool-and-tuple"],
)
def test_unusual_values_are_written_as_the_library_writes_them(state: dict[Any, Any]) -> None:
    assert FAST.encode(state) == LIBRARY.encode(state)


class Unregistered:
    pass


def test_a_type_without_transcoding_is_refused_as_the_library_refuses_it() -> None:
    for transcoder in (LIBRARY, FAST):
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"x": Unregistered()})


def test_the_ledger_writes_with_it_and_reads_back_every_event() -> None:
    app = VoucherLedger(Settings(database_url="memory://"))
    try:
        assert isinstance(app.mapper.transcoder, FastJSONTranscoder)
        app.open_funding_source(
            source_id="city-2026",
            name="city",
            level="city",
            fiscal_year=2026,
            appropriation_fen=10**9,
            document_ref="doc",
            actor="officer",
        )
        stored = app.recorder.select_notifications(1, 10)
        assert len(stored) == 1
        event: Any = app.mapper.to_domain_event(stored[0])
        assert event.appropriation_fen == 10**9
        assert isinstance(event.originator_id, uuid.UUID)
        assert stored[0].state == LIBRARY.encode(
            {
                k: v
                for k, v in vars(event).items()
                if k not in ("originator_id", "originator_version")
            }
        )
    finally:
        app.close()


def test_decimal_and_nested_types_round_trip() -> None:
    state = {
        "d": Decimal("1.10"),
        "ids": [uuid.UUID(int=5)],
        "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    assert FAST.decode(FAST.encode(state)) == state
