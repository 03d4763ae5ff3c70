"""The audit chain's own tables beside the log, written by a tracked follower (like the views):
one row per event with its leaf and chain hash, and the signed checkpoints."""

from __future__ import annotations

from typing import Any

from ledger.settings import Settings
from projections.store import PostgresViews, Row, SQLiteViews, Table, ViewStore, open_views

HASH = "TEXT NOT NULL"  # hex SHA-256

CHAIN = Table(
    "audit_chain",
    ("position",),
    (
        ("position", "BIGINT NOT NULL"),
        ("originator_id", "TEXT NOT NULL"),
        ("originator_version", "BIGINT NOT NULL"),
        ("leaf_hash", HASH),
        ("chain_hash", HASH),
    ),
    indexes=(("originator_id", "originator_version"),),
)
CHECKPOINTS = Table(
    "audit_checkpoint",
    ("position",),
    (
        ("position", "BIGINT NOT NULL"),  # the last event it covers
        ("first_position", "BIGINT NOT NULL"),  # the first event of its Merkle tree
        ("leaf_count", "INTEGER NOT NULL"),
        ("merkle_root", HASH),
        ("head_hash", HASH),  # the chain hash at ``position``
        ("signed_at", "TEXT NOT NULL"),
        ("key_id", HASH),
        ("signature", "TEXT NOT NULL"),
    ),
)


class AuditStore(ViewStore):
    tables = (CHAIN, CHECKPOINTS)
    tracking_name = "audit-chain"

    def chain_row(self, position: int) -> Row | None:
        return self.fetch(CHAIN, (position,))

    def chain_page(
        self, after: int, until: int, limit: int
    ) -> list[tuple[int, str, str, str, int]]:
        """(position, chain hash, leaf hash, originator id, version) of chained events in
        (after, until], in order."""
        rows = self._tuples(
            "SELECT position, chain_hash, leaf_hash, originator_id, originator_version "
            # No upper bound in SQL (see audit.verify): the cut is made here.
            f"FROM {self.qualified(CHAIN.name)} WHERE position > %s ORDER BY position LIMIT %s",
            (after, limit),
        )
        if rows and rows[-1][0] > until:
            rows = [r for r in rows if r[0] <= until]
        return rows  # type: ignore[return-value]

    def locate(self, originator_id: str, version: int) -> Row | None:
        """Where an aggregate's event sits in the log, with its hash (None: not chained yet)."""
        return self._one(
            f"SELECT * FROM {self.qualified(CHAIN.name)} "
            "WHERE originator_id = %s AND originator_version = %s",
            (originator_id, version),
        )

    def versions_near(self, originator_id: str, position: int, window: int) -> list[int]:
        """Versions of an aggregate's events within ``window`` positions of ``position``."""
        rows = self._rows(
            f"SELECT originator_version FROM {self.qualified(CHAIN.name)} "
            "WHERE originator_id = %s AND position BETWEEN %s AND %s ORDER BY position",
            (originator_id, position - window, position + window),
        )
        return [int(r["originator_version"]) for r in rows]

    def chain_hashes(self, positions: list[int]) -> dict[int, str]:
        """The chain hash at each of ``positions`` that is chained."""
        found: dict[int, str] = {}
        for start in range(0, len(positions), 500):
            chunk = positions[start : start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            rows = self._rows(
                f"SELECT position, chain_hash FROM {self.qualified(CHAIN.name)} "
                f"WHERE position IN ({marks})",
                chunk,
            )
            found.update((int(r["position"]), r["chain_hash"]) for r in rows)
        return found

    def checkpoints(
        self, after: int = -1, limit: int = 1000, until: int | None = None
    ) -> list[Row]:
        """Checkpoints after ``after`` (up to ``until``), in order."""
        return self._rows(
            f"SELECT * FROM {self.qualified(CHECKPOINTS.name)} WHERE position > %s "
            "AND position <= %s ORDER BY position LIMIT %s",
            (after, 10**18 if until is None else until, limit),
        )

    def last_checkpoint_in(self, cursor: Any) -> int | None:
        """The last checkpoint's position, read in the caller's write transaction."""
        cursor.execute(f"SELECT MAX(position) AS last FROM {self.qualified(CHECKPOINTS.name)}")
        row = cursor.fetchone()
        return None if row is None or row["last"] is None else int(row["last"])

    def last_checkpoint(self) -> Row | None:
        return self._one(
            f"SELECT * FROM {self.qualified(CHECKPOINTS.name)} ORDER BY position DESC LIMIT 1", ()
        )

    def checkpoint_covering(self, position: int) -> Row | None:
        return self._one(
            f"SELECT * FROM {self.qualified(CHECKPOINTS.name)} "
            "WHERE first_position <= %s AND position >= %s",
            (position, position),
        )

    def leaves(self, first: int, last: int) -> list[tuple[int, bytes]]:
        rows = self._rows(
            f"SELECT position, leaf_hash FROM {self.qualified(CHAIN.name)} "
            "WHERE position >= %s AND position <= %s ORDER BY position",
            (first, last),
        )
        return [(int(r["position"]), bytes.fromhex(r["leaf_hash"])) for r in rows]


class SQLiteAuditStore(AuditStore, SQLiteViews):
    pass


class PostgresAuditStore(AuditStore, PostgresViews):
    pass


def open_audit(settings: Settings) -> Any:
    """The audit store beside the ledger that ``settings`` names."""
    store: AuditStore = open_views(settings, (SQLiteAuditStore, PostgresAuditStore))
    return store
