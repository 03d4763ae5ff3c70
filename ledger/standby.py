"""The ledger as a hot standby holds it (DATABASE_REPLICA_URL): every query of
``VoucherLedger`` over the standby's replicated copy of the log, and no command. The audit
side reads it for traces, verify, proofs and the report, so that an auditor's reads leave the
primary to the writers (issue 15)."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application

from ledger.application import VoucherLedger, china_today
from ledger.settings import Settings


class ReadOnlyLedger(RuntimeError):
    """A command was sent to the standby's ledger: a programming error, never a client's."""


class StandbyLedger(VoucherLedger):
    """``replica`` are the standby's settings (``Settings.replica()``): nothing is created
    there, and the primary's locking recorder, which only writers need, is not used."""

    name = VoucherLedger.name  # the tables' names (eventsourcing would take the class's)

    def __init__(self, replica: Settings) -> None:  # pylint: disable=super-init-not-called
        if not replica.read_only:
            raise ValueError("a standby's settings come from Settings.replica()")
        self.settings = replica
        env = replica.eventsourcing_env()
        env.pop("APPLICATION_RECORDER_TOPIC", None)
        Application.__init__(self, env=env)  # not VoucherLedger's: it starts a writer
        self.today = china_today
        self.reads = self._read_repository()

    def close(self) -> None:
        Application.close(self)

    def _run(self, fn: Any, command: Any, idempotency: Any = None) -> Any:
        raise ReadOnlyLedger(f"{type(command).__name__} sent to the standby's ledger")
