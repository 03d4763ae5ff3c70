"""The hash chain over the event log: ``hash_n = SHA-256(hash_{n-1} ‖ canonical(event_n))``
(DESIGN.md §5), and the Merkle leaf of each event for inclusion proofs.

``canonical`` is built from the stored event as it is in the log: position, originator id,
version, topic and the stored state bytes, which carry the event's timestamp and attributes.
Hashing what is stored (not a re-encoding of the decoded event) is what lets ``verify`` stream
the log at hundreds of thousands of events a second, and what a third party can recompute from a
proof without any of this code but ``hashlib``."""

from __future__ import annotations

import hashlib

GENESIS = bytes(32)  # hash_0
FORMAT = b"voucher-ledger/event/2\n"


def canonical(position: int, originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    """The bytes an event is hashed as: each field as ``<length in bytes>:<bytes>`` (a
    netstring without the comma), so no two events share an encoding, whatever a tampered row
    holds."""
    fields = (str(position).encode(), originator_id.encode(), str(version).encode(), topic.encode())
    return FORMAT + b"".join(b"%d:%s" % (len(f), f) for f in (*fields, state))


def link(previous: bytes, event: bytes) -> bytes:
    """The next chain hash: SHA-256 of the previous hash and the canonical event."""
    return hashlib.sha256(previous + event).digest()


def leaf(event: bytes) -> bytes:
    """The event's Merkle leaf hash (RFC 9162: a 0x00 prefix separates leaves from nodes)."""
    return hashlib.sha256(b"\x00" + event).digest()
