"""Deterministic aggregate ids: uuid5 of a name, so the same business key always maps to the same
stream and creating it twice is refused by the store's primary key."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from uuid import UUID, SafeUUID

NAMESPACE = UUID("6f1c2d7e-2f7a-4d0e-9a55-1c0b2e6a8d11")

_NAMESPACE_BYTES = NAMESPACE.bytes
# RFC 4122 §4.3: the first 16 bytes of SHA-1(namespace ‖ name), with version 5 and the variant.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5 = (5 << 76) | (0x8000 << 48)


def uuid5(name: str) -> UUID:
    """``uuid.uuid5(NAMESPACE, name)``, without the general constructor's argument checks (a
    redemption works out two of these that no cache can hold)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    value = UUID.__new__(UUID)
    object.__setattr__(value, "int", int.from_bytes(digest[:16], "big") & _CLEAR | _VERSION_5)
    object.__setattr__(value, "is_safe", SafeUUID.unknown)
    return value


@lru_cache(maxsize=8_192)
def named_id(kind: str, *parts: str | int) -> UUID:
    return uuid5("/".join([kind, *map(str, parts)]))


def unique_named_id(kind: str, *parts: str) -> UUID:
    """``named_id`` for a name seen once (a contract or invoice number): no cache to fill."""
    return uuid5("/".join([kind, *parts]))
