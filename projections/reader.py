"""What the API asks of the projections: wait until they include a log position, then read."""

from __future__ import annotations

from ledger.application import VoucherLedger
from ledger.errors import LedgerError, ValidationError
from projections.runner import MAX_WAIT_S, Lag, Projector, lag, wait_until
from projections.store import ViewStore


class ProjectionBehind(LedgerError):
    slug = "projection-behind"
    http_status = 503
    title = "The read models have not reached that position yet; retry"
    retry_after_s = 1  # the Retry-After header of the answer


class ViewReader:
    """Reads of the views with read-your-writes. ``projector`` is the one in this process, if
    any; otherwise the views are polled (another process projects, or ``store`` is a standby's
    copy of what the projector writes on the primary: its position is the standby's replayed
    one). The head a read without ``min_position`` waits for is always the primary's."""

    def __init__(
        self, ledger: VoucherLedger, store: ViewStore, projector: Projector | None = None
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.projector = projector

    def at_least(self, min_position: int | None) -> int:
        """Wait (at most 2 s) until the views include ``min_position``, or, without one, the
        log's head at the time of asking; returns the position the views then include.
        An explicit position not reached is an error (503); the implicit head is best effort,
        so a lagging projector slows reads down but does not fail them."""
        explicit = min_position is not None
        head, seen = self.store.head_and_position(self.ledger.recorder)
        if min_position is not None and min_position > head:
            # Positions come from write responses, so one beyond the log is a client's mistake.
            raise ValidationError(f"min_position {min_position} is beyond the log's end ({head})")
        target = head if min_position is None else min_position
        if seen >= target:
            return seen
        if self.projector is not None and self.projector.store is self.store:
            # The store has the last word: a rebuild may have reset it under the projector.
            self.projector.wait(target, MAX_WAIT_S)
            seen = self.store.position()
        else:
            seen = wait_until(self.store, target, MAX_WAIT_S)
        if seen < target and explicit:
            raise ProjectionBehind(f"the views are at position {seen}, not yet {target}")
        return seen

    def lag(self) -> Lag:
        return lag(self.ledger, self.store)
