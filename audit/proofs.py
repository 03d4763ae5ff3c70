"""Inclusion proofs: that the event at a position is in the log under a signed checkpoint.

A proof carries the event as stored, its Merkle path to the checkpoint's root and the signed
checkpoint. ``check_proof`` needs only the ledger's public key (PEM) and this module's hashing
(SHA-256, RFC 9162 trees, Ed25519): a third party can verify a proof without the ledger."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature

from audit import merkle
from audit.chain import canonical, leaf
from audit.follower import CHECKPOINT_FIELDS, checkpoint_message
from audit.keys import load_public
from audit.store import AuditStore
from audit.verify import raw_events
from ledger.application import VoucherLedger
from ledger.errors import InvalidState, NotFound


def prove(ledger: VoucherLedger, store: AuditStore, position: int) -> dict[str, Any]:
    """The proof for the event at ``position``; NotFound if it is not under a checkpoint yet."""
    checkpoint = store.checkpoint_covering(position)
    if checkpoint is None:
        raise NotFound(f"position {position} is not under a signed checkpoint (yet)")
    found = list(raw_events(ledger, position - 1, position))
    if not found:
        raise NotFound(f"no event at position {position}")
    _, originator_id, version, topic, state = found[0]
    leaves = store.leaves(checkpoint["first_position"], checkpoint["position"])
    positions = [p for p, _ in leaves]
    if position not in positions:
        raise InvalidState(f"position {position} is missing from the chain: run verify")
    index = positions.index(position)
    return {
        "position": position,
        "event": {
            "originator_id": originator_id,
            "originator_version": version,
            "topic": topic,
            "state_base64": base64.b64encode(bytes(state)).decode(),
        },
        "leaf_index": index,
        "path": [h.hex() for h in merkle.path([h for _, h in leaves], index)],
        "checkpoint": {
            **{k: checkpoint[k] for k in CHECKPOINT_FIELDS},
            "signature": checkpoint["signature"],
        },
    }


def check_proof(proof: dict[str, Any], public_key_pem: str) -> bool:
    """True if the event in ``proof`` is included under its checkpoint and the checkpoint is
    signed by the holder of ``public_key_pem``."""
    try:
        cp = proof["checkpoint"]
        load_public(public_key_pem).verify(
            base64.b64decode(cp["signature"]), checkpoint_message(cp)
        )
        e = proof["event"]
        data = canonical(
            int(proof["position"]),
            str(e["originator_id"]),
            int(e["originator_version"]),
            str(e["topic"]),
            base64.b64decode(e["state_base64"]),
        )
        path = [bytes.fromhex(h) for h in proof["path"]]
        found = merkle.root_from_path(leaf(data), int(proof["leaf_index"]), cp["leaf_count"], path)
        return bool(found.hex() == cp["merkle_root"])
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False
