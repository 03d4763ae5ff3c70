"""The chain follower: extends the hash chain a page of events at a time, in the same
transaction as its tracking position, and signs a checkpoint every ``every`` events or
``interval_s`` seconds (whichever comes first) over the Merkle root of the events since the last
one and the chain's head."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from audit import merkle
from audit.chain import GENESIS, canonical, leaf, link
from audit.keys import Signer
from audit.store import CHAIN, CHECKPOINTS, AuditStore
from projections.store import Row, Table, TrackingMoved

CHECKPOINT_EVERY = 1000
CHECKPOINT_INTERVAL_S = 10.0
CHECKPOINT_FIELDS = (
    "first_position",
    "head_hash",
    "key_id",
    "leaf_count",
    "merkle_root",
    "position",
    "signed_at",
)


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """What a checkpoint's signature signs: its fields as canonical JSON (sorted keys, no
    spaces). A third party rebuilds it from the checkpoint alone."""
    fields = {k: checkpoint[k] for k in CHECKPOINT_FIELDS}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def event_bytes(n: Notification) -> bytes:
    return canonical(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)


class ChainFollower:
    def __init__(
        self,
        store: AuditStore,
        signer: Signer,
        *,
        every: int = CHECKPOINT_EVERY,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        assert 0 < every <= merkle.MAX_LEAVES
        self.store = store
        self.signer = signer
        self.every = every
        self.interval_s = interval_s
        self.forget()

    def forget(self) -> None:
        """(Re)load the head and the leaves not yet under a checkpoint from the store. If the
        store cannot be read (the database away), nothing is half loaded: the next ``rows``
        loads it all first."""
        self._stale = True
        position = self.store.position()
        row = self.store.chain_row(position) if position else None
        last = self.store.last_checkpoint()
        pending = self.store.leaves((last["position"] if last else 0) + 1, position)
        self.head = bytes.fromhex(row["chain_hash"]) if row else GENESIS
        self.checkpointed_through: int | None = last["position"] if last else None
        self.pending = pending
        self.checkpointed_at = time.monotonic()
        self._now = False
        self._next: tuple[bytes, list[tuple[int, bytes]], float, int | None] | None = None
        self._stale = False

    def rows(self, page: Sequence[Notification], to_event: Any) -> dict[Table, list[Row]]:
        if self._stale:
            self.forget()
        head, pending, stamp = self.head, list(self.pending), self.checkpointed_at
        chain: list[Row] = []
        checkpoints: list[Row] = []
        for n in page:
            event = event_bytes(n)
            head = link(head, event)
            leaf_hash = leaf(event)
            chain.append(
                {
                    "position": n.id,
                    "originator_id": str(n.originator_id),
                    "originator_version": n.originator_version,
                    "leaf_hash": leaf_hash.hex(),
                    "chain_hash": head.hex(),
                }
            )
            pending.append((n.id, leaf_hash))
            if len(pending) >= self.every:
                checkpoints.append(self.checkpoint(pending, head))
                pending, stamp = [], time.monotonic()
        if pending and (self._now or time.monotonic() - stamp >= self.interval_s):
            checkpoints.append(self.checkpoint(pending, head))
            pending, stamp = [], time.monotonic()
        through = checkpoints[-1]["position"] if checkpoints else self.checkpointed_through
        self._next = (head, pending, stamp, through)
        return {CHAIN: chain, CHECKPOINTS: checkpoints}

    def check(self, cursor: Any, position: int | None) -> None:
        """In the write transaction: the last checkpoint is the one this follower started
        from. A checkpoint signed without new events does not move the tracking position, so
        without this two followers could sign overlapping checkpoints."""
        if self.store.last_checkpoint_in(cursor) != self.checkpointed_through:
            raise TrackingMoved(position)

    def committed(self) -> None:
        assert self._next is not None
        self.head, self.pending, self.checkpointed_at, self.checkpointed_through = self._next
        self._now = False

    def checkpoint_now(self) -> None:
        """Sign a checkpoint over the pending events at the next step, due or not."""
        self._now = True

    def checkpoint(self, pending: list[tuple[int, bytes]], head: bytes) -> Row:
        """Sign (position, head hash, time) and the Merkle root of ``pending``."""
        row: Row = {
            "position": pending[-1][0],
            "first_position": pending[0][0],
            "leaf_count": len(pending),
            "merkle_root": merkle.root([h for _, h in pending]).hex(),
            "head_hash": head.hex(),
            "signed_at": dt.datetime.now(dt.UTC).isoformat(),
            "key_id": self.signer.key_id,
        }
        row["signature"] = self.signer.sign(checkpoint_message(row))
        return row
