"""The fast uuid5 behind deterministic ids is ``uuid.uuid5``, value for value."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ledger.ids import NAMESPACE, named_id, unique_named_id, uuid5

names = st.text().filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))


@given(names)
def test_uuid5_is_the_standard_librarys(name: str) -> None:
    ours, theirs = uuid5(name), uuid.uuid5(NAMESPACE, name)
    assert ours == theirs
    assert (str(ours), hash(ours), ours.version, ours.variant, ours.is_safe) == (
        str(theirs),
        hash(theirs),
        theirs.version,
        theirs.variant,
        theirs.is_safe,
    )


@given(names, names)
def test_cached_and_uncached_ids_agree(kind: str, part: str) -> None:
    assert named_id(kind, part) == unique_named_id(kind, part) == uuid5(f"{kind}/{part}")
