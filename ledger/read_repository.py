"""Aggregates kept for reads, brought up to date from the store and copied whole.

eventsourcing's ``Repository`` with a cache fast-forwards the kept aggregate in place under a
lock of that aggregate, but makes the copy it returns after releasing the lock: a reader
copying a voucher while another applies the voucher's newest events could copy half of them (a
remaining amount that is not the sum of its sources). Here the fast-forward and the copy happen
under one lock of the aggregate's stripe, so a copy is always of a whole version."""

from __future__ import annotations

import threading
from copy import deepcopy
from typing import Any
from uuid import UUID

from eventsourcing.application import Repository

STRIPES = 64  # locks shared by the aggregates whose ids hash alike


class ReadRepository(Repository[UUID]):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = [threading.Lock() for _ in range(STRIPES)]

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        if version is not None or self.cache is None:
            return super().get(aggregate_id, version=version, **kwargs)
        with self._stripes[hash(aggregate_id) % STRIPES]:
            kept = super().get(aggregate_id, deepcopy_from_cache=False, **kwargs)
            return deepcopy(kept)

    def version_of(self, aggregate_id: UUID, **kwargs: Any) -> tuple[type, int]:
        """The class and version of the aggregate as stored now, brought up to date like
        ``get`` but not copied: what a kept answer of it is keyed by."""
        with self._stripes[hash(aggregate_id) % STRIPES]:
            kept = super().get(aggregate_id, deepcopy_from_cache=False, **kwargs)
            return type(kept), kept.version
