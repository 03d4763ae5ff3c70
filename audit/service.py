"""The audit side of the ledger in one object: the chain store and its follower, the signing key,
verification, proofs, traces, flows, inspections and the fiscal-year report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from audit import inspect
from audit.follower import ChainFollower
from audit.keys import Signer, load_or_create
from audit.proofs import prove
from audit.report_render import GUARANTEE_FIELDS
from audit.store import AuditStore, open_audit
from audit.trace import Tracer
from audit.verify import Verdict, verify
from ledger.application import VoucherLedger
from ledger.standby import StandbyLedger
from projections.reader import ViewReader
from projections.runner import Projector
from projections.store import ViewStore, source_view

Body = dict[str, Any]


class Auditor:
    """``views`` are the views it reads (a standby's, with DATABASE_REPLICA_URL); then the chain
    is read there too, and traces, verify, proofs and the report read the standby's copy of
    the log: what an auditor checks on the standby is what the primary holds, as replicated."""

    def __init__(self, ledger: VoucherLedger, views: ViewStore, *, embedded: bool) -> None:
        self.ledger = ledger
        self.views = views
        self.store: AuditStore = open_audit(ledger.settings)  # the chain the follower writes
        self.signer: Signer = load_or_create(ledger.settings.signing_key_path)
        self.projector: Projector | None = None
        if embedded:
            self.projector = self.chain_projector().start("audit-chain")
        replica = ledger.settings.replica()
        self.log: VoucherLedger = ledger  # what traces, verify and proofs read the events of
        self.chain: AuditStore = self.store  # the chain that reads, verify and proofs read
        if replica is not None:
            self.chain = open_audit(replica)
            self.log = StandbyLedger(replica)
        self.tracer = Tracer(self.log, self.chain, views)
        self.chain_reader = ViewReader(ledger, self.chain, self.projector)

    def chain_projector(self) -> Projector:
        settings = self.ledger.settings
        follower = ChainFollower(
            self.store,
            self.signer,
            every=settings.checkpoint_every,
            interval_s=settings.checkpoint_interval_s,
        )
        return Projector(self.ledger, self.store, follower)

    def close(self) -> None:
        if self.projector is not None:
            self.projector.stop()
        self.store.close()
        if self.chain is not self.store:
            self.chain.close()
            self.log.close()

    def caught_up(self) -> None:
        """Wait (best effort, at most 2 s) until the chain includes the log's head."""
        self.chain_reader.at_least(None)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> Verdict:
        return verify(self.log, self.chain, self.signer.key.public_key(), progress)

    def prove(self, position: int) -> Body:
        return prove(self.log, self.chain, position)

    def report(self, fiscal_year: int) -> Body:
        """The fiscal-year audit report (audit/report_render.py renders it)."""
        verdict = self.verify()
        checkpoint = self.chain.last_checkpoint()
        return {
            "fiscal_year": fiscal_year,
            "generated_at": dt.datetime.now(dt.UTC).isoformat(),
            "ledger": {
                "position": self.chain.position(),
                "head_hash": verdict.head_hash,
                "verified": verdict.ok,
                "events_checked": verdict.events_checked,
                "first_bad_position": verdict.first_bad_position,
                "checkpoint": None
                if checkpoint is None
                else {k: checkpoint[k] for k in ("position", "signed_at", "signature")},
            },
            "sources": self.sources(fiscal_year),
            "flows": self.flows(fiscal_year),
            "guarantee_claims": self.guarantee_claims(fiscal_year),
            "findings": [
                {"query": i.name, "title": i.title, "rows": inspect.run(self.views, i.name, {})}
                for i in inspect.INSPECTIONS.values()
            ],
        }

    def sources(self, fiscal_year: int) -> list[Body]:
        rows = self.views.query(
            "SELECT * FROM {proj_source} WHERE fiscal_year = %s ORDER BY source_id",
            (fiscal_year,),
        )
        return [_source(r) for r in rows]

    def flows(self, fiscal_year: int) -> list[Body]:
        return [
            {
                "source_id": r["source_id"],
                "programme_id": r["programme_id"],
                "provider_id": r["provider_id"],
                "holder_id": r["holder_id"],
                "amount_fen": int(r["amount_fen"]),
                "clawed_back_fen": int(r["clawed_back_fen"]),
                "paid_fen": int(r["paid_fen"]),
                "redemptions": int(r["redemptions"]),
            }
            for r in self.views.flows(fiscal_year)
        ]

    def guarantee_claims(self, fiscal_year: int) -> list[Body]:
        """The guarantee fund's claims of a fiscal year (of their default), an exempt net loss
        (容错纠错) with its decision."""
        rows = self.views.query(
            "SELECT * FROM {proj_guarantee_claim} WHERE fiscal_year = %s ORDER BY filed_position",
            (fiscal_year,),
        )
        return [{f: r[f] for f in GUARANTEE_FIELDS} for r in rows]


def _source(r: dict[str, Any]) -> Body:
    s = source_view(r)
    return {
        "id": s.id,
        "name": s.name,
        "level": s.level,
        "document_ref": s.document_ref,
        "appropriation_fen": s.appropriation_fen,
        "committed_fen": s.committed_fen,
        "disbursed_fen": r["disbursed_fen"],
        "provider_bonus_fen": r["post_subsidy_fen"],
        "paid_fen": r["paid_fen"],
        "recovered_fen": s.recovered_fen,
        "available_fen": s.available_fen,
    }
