"""Deterministic aggregate ids: uuid5 of a name, so the same business key always maps to the same
stream and creating it twice is refused by the store's primary key."""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c2d7e-2f7a-4d0e-9a55-1c0b2e6a8d11")


@lru_cache(maxsize=65_536)
def named_id(kind: str, *parts: str | int) -> UUID:
    return uuid5(NAMESPACE, "/".join([kind, *map(str, parts)]))
