"""Traces, source to destination (seed 002: 来源可追溯, 去向可查证, 责任可追究).

Backward, from a redemption: the funding sources it drew on (with their document references and
the amount from each), the programme, the voucher and its holder, the redemption and its
provider, a clawback if there was one, and the principals who acted; each step with the log
position and chain hash of the events that record it. Forward, from a funding source: every
redemption that drew on it, with totals that add up to the source's disbursed amount.

Both can be asked "as it was at instant T": the claim is read at its version then, and only
events up to T count."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from audit.store import AuditStore
from ledger.application import VoucherLedger, check_key
from ledger.claims import ContractClaim
from ledger.errors import NotFound
from ledger.funding import FundingSource, Programme
from ledger.guarantee import GuaranteeClaim
from ledger.institution import Institution
from ledger.payouts import GUARANTEE, POST_SUBSIDY, SUBSIDY, PayableLine, Payout
from ledger.principals import Principal
from ledger.validate import check_uuid
from ledger.voucher import Voucher
from projections.store import PayableFilter, ViewStore

Body = dict[str, Any]
MAX_DESTINATIONS = 1000
NEARBY = 5000  # positions around a claim where its voucher event is (one group-commit insert)


# A bank line's trace follows the first lines of each payout it settled down to their sources;
# each is a redemption's whole trace (about 15 reads), and one payout may settle 10,000 lines.
TRACED_LINES = 50


class Tracer:
    def __init__(self, ledger: VoucherLedger, store: AuditStore, views: ViewStore) -> None:
        self.ledger = ledger
        self.store = store
        self.views = views

    # ---- backward ------------------------------------------------------------------------
    def redemption(self, redemption_id: Any, as_of: dt.datetime | None = None) -> Body:
        claim_id = check_uuid(redemption_id, "redemption")
        what = f"redemption {claim_id}"
        claim = self._get(ContractClaim, claim_id, what, as_of)
        voucher = self._get(Voucher, claim.voucher_id, "voucher", None, version=1)
        programme = self._get(Programme, Programme.create_id(claim.programme_id), "programme")
        actors: dict[str, None] = {}
        steps = [
            self._source_step(source_id, amount_fen, actors)
            for source_id, amount_fen in claim.splits
        ]
        actors[programme.created_by] = None
        steps.append(
            {
                "step": "programme",
                "id": programme.programme_id,
                "name": programme.name,
                "fiscal_year": programme.fiscal_year,
                "shares": [{"source_id": s, "share_bp": bp} for s, bp in programme.shares],
                "acted_by": programme.created_by,
                "events": self._events(programme.id, [1]),
            }
        )
        actors[voucher.issued_by] = None
        steps.append(
            {
                "step": "voucher",
                "id": str(voucher.id),
                "holder": self._institution(voucher.holder_id),
                "face_value_fen": voucher.face_value_fen,
                "valid_until": voucher.valid_until,
                "acted_by": voucher.issued_by,
                "events": self._events(voucher.id, [1]),
            }
        )
        steps.append(self._redemption_step(claim, actors))
        if claim.clawed_back:
            steps.append(self._clawback_step(claim, actors))
        return {
            "redemption_id": str(claim.id),
            "as_of": as_of.isoformat() if as_of else None,
            "subsidy_fen": claim.subsidy_fen,
            "sources_total_fen": sum(a for _, a in claim.splits),
            "clawed_back": claim.clawed_back,
            "steps": steps,
            **self._paid(self._payable_lines_of(claim), actors),
            "principals": {actor: self._principal(actor) for actor in actors},
        }

    # ---- on to the bank: payouts and the bank lines that settled them --------------------
    def _payable_lines_of(self, claim: ContractClaim) -> list[UUID]:
        lines = [PayableLine.create_id(claim.id, SUBSIDY, s) for s, a in claim.splits if a]
        if claim.post_subsidy_fen:
            lines.append(
                PayableLine.create_id(claim.id, POST_SUBSIDY, claim.post_subsidy_source_id)
            )
        return lines

    def _paid(self, line_ids: list[UUID], actors: dict[str, None]) -> Body:
        """Every payout that ever held one of ``line_ids`` (a returned or cancelled one too),
        and the bank lines that settled or returned them."""
        payout_ids: dict[UUID, None] = {}
        for line_id in line_ids:
            for e in self._stream(line_id):
                if hasattr(e, "payout_id"):
                    payout_ids[e.payout_id] = None
        payouts = [self._payout_step(p, actors) for p in payout_ids]
        bank_lines = [b for p in payouts for b in p.pop("_bank_lines")]
        return {"payouts": payouts, "bank_lines": bank_lines}

    def _stream(self, agg_id: UUID) -> list[Any]:
        try:
            return list(self.ledger.events.get(agg_id))
        except AggregateNotFoundError:
            return []

    def _payout_step(self, payout_id: UUID, actors: dict[str, None]) -> Body:
        payout = self._get(Payout, payout_id, f"payout {payout_id}")
        actors[payout.created_by] = None
        if payout.approved_by:
            actors[payout.approved_by] = None
        return {
            "step": "payout",
            "id": str(payout.id),
            "payee_id": payout.payee_id,
            "source_id": payout.source_id,
            "amount_fen": payout.amount_fen,
            "status": payout.status,
            "end_to_end_id": payout.end_to_end_id,
            "bank_account": payout.bank_account,
            "created_by": payout.created_by,
            "approved_by": payout.approved_by,
            "events": self._events(payout.id, list(range(1, payout.version + 1))),
            "_bank_lines": [self._bank_line_step(payout.id, b) for b in payout.bank_lines],
        }

    def _bank_line_step(self, payout_id: UUID, paid: Body) -> Body:
        row = self.views.bank_line(str(paid["statement_id"]), int(paid["line"]))
        step: Body = {
            "step": "bank_line",
            "statement_id": paid["statement_id"],
            "line": paid["line"],
            "kind": paid["kind"],
            "payout_id": str(payout_id),
            "amount_fen": paid["amount_fen"],
        }
        if row is not None:
            step.update(
                booking_date=row["booking_date"],
                value_date=row["value_date"],
                end_to_end_id=row["end_to_end_id"],
                line_amount_fen=row["amount_fen"],
                events=self._events(UUID(row["bank_line_id"]), [1]) if row["bank_line_id"] else [],
            )
        return step

    def bank_line(self, statement_id: Any, line: int) -> Body:
        """Backward from a bank line: the payouts it settled or returned, what each paid (a
        redemption's trace, down to its funding sources, or a guarantee claim's pool sources)."""
        key = str(check_uuid(statement_id, "statement"))
        row = self.views.bank_line(key, line)
        if row is None:
            raise NotFound(f"line {line} of statement {key} not found")
        payout_ids = [UUID(p) for p in str(row["payout_ids"]).split(",") if p]
        paid = []
        for payout_id in payout_ids:
            payout = self._get(Payout, payout_id, f"payout {payout_id}")
            traced, rest = payout.lines[:TRACED_LINES], payout.lines[TRACED_LINES:]
            paid.append(
                {
                    "payout_id": str(payout_id),
                    "amount_fen": payout.amount_fen,
                    "status": payout.status,
                    "lines": len(payout.lines),
                    "paid": [
                        {
                            **self._origin(UUID(str(x["origin_id"])), x["kind"]),
                            "amount_fen": x["amount_fen"],  # what the payout paid of it
                        }
                        for x in traced
                    ],
                    # Beyond the first lines, what each paid, without its trace: a hot
                    # provider's payout settles thousands (GET each redemption's trace).
                    "not_traced": [
                        {k: x[k] for k in ("origin_id", "kind", "source_id", "amount_fen")}
                        for x in rest
                    ],
                }
            )
        return {
            "statement_id": key,
            "line": line,
            "amount_fen": row["amount_fen"],
            "status": row["status"],
            "end_to_end_id": row["end_to_end_id"],
            "booking_date": row["booking_date"],
            "events": self._events(UUID(row["bank_line_id"]), [1]) if row["bank_line_id"] else [],
            "payouts": paid,
        }

    def _origin(self, origin_id: UUID, kind: str) -> Body:
        if kind == GUARANTEE:
            claim = self._get(GuaranteeClaim, origin_id, f"guarantee claim {origin_id}")
            return {
                "kind": kind,
                "claim_id": str(claim.id),
                "loan_id": claim.loan_id,
                "sources": [{"source_id": s, "amount_fen": a} for s, a in claim.splits],
                "exemption": claim.exemption,
            }
        trace = self.redemption(origin_id)
        return {
            "kind": kind,
            "redemption_id": trace["redemption_id"],
            "sources": [
                {"source_id": step["id"], "amount_fen": step["amount_fen"]}
                for step in trace["steps"]
                if step["step"] == "funding_source"
            ],
            "steps": trace["steps"],
        }

    def _source_step(self, source_id: str, amount_fen: int, actors: dict[str, None]) -> Body:
        source = self._get(FundingSource, FundingSource.create_id(source_id), "source", version=1)
        actors[source.opened_by] = None
        return {
            "step": "funding_source",
            "id": source.source_id,
            "name": source.name,
            "level": source.level,
            "fiscal_year": source.fiscal_year,
            "document_ref": source.document_ref,
            "amount_fen": amount_fen,
            "acted_by": source.opened_by,
            "events": self._events(source.id, [1]),
        }

    def _redemption_step(self, claim: ContractClaim, actors: dict[str, None]) -> Body:
        actors[claim.redeemed_by] = None
        return {
            "step": "redemption",
            "id": str(claim.id),
            "provider": self._institution(claim.provider_id),
            "contract_no": claim.contract_no,
            "invoice_no": claim.invoice_no,
            "service_date": claim.service_date,
            "contract_amount_fen": claim.contract_amount_fen,
            "subsidy_fen": claim.subsidy_fen,
            "enterprise_pays_fen": claim.enterprise_pays_fen,
            "splits": [{"source_id": s, "amount_fen": a} for s, a in claim.splits],
            "provider_bonus_fen": claim.post_subsidy_fen,
            "rules": list(claim.rules),
            "acted_by": claim.redeemed_by,
            "events": [
                *self._events(claim.id, [1]),
                *self._events(claim.voucher_id, [self._redeemed_version(claim)]),
            ],
        }

    def _clawback_step(self, claim: ContractClaim, actors: dict[str, None]) -> Body:
        stored = self.ledger.recorder.select_events(claim.id, gt=1, limit=1)
        event: Any = self.ledger.mapper.to_domain_event(stored[0])
        actors[event.actor] = None
        return {
            "step": "clawback",
            "reason_code": event.reason_code,
            "acted_by": event.actor,
            "at": event.timestamp.isoformat(),
            "events": self._events(claim.id, [2]),
        }

    def _redeemed_version(self, claim: ContractClaim) -> int:
        """The version of the voucher's Redeemed event for ``claim``. It was stored in the same
        insert as the claim, so it sits near the claim in the log: look there first, and read
        the whole voucher (which may have thousands of events) only if the chain has not got
        that far."""
        near = self.store.locate(str(claim.id), 1)
        candidates: list[int | None] = []
        if near is not None:
            found = self.store.versions_near(str(claim.voucher_id), near["position"], NEARBY)
            candidates = [v for v in found if v > 1]
        for version in [*candidates, None]:
            gt, lte = (version - 1, version) if version else (1, None)
            for stored in self.ledger.recorder.select_events(claim.voucher_id, gt=gt, lte=lte):
                event: Any = self.ledger.mapper.to_domain_event(stored)
                if getattr(event, "redemption_id", None) == claim.id:
                    return int(event.originator_version)
        raise NotFound(f"the voucher event of redemption {claim.id} is missing")

    def _events(self, agg_id: UUID, versions: list[int]) -> list[Body]:
        found = []
        for version in versions:
            row = self.store.locate(str(agg_id), version)
            found.append(
                {
                    "position": row["position"] if row else None,
                    "hash": row["chain_hash"] if row else None,
                }
            )
        return found

    def _institution(self, uscc: str) -> Body:
        inst = self._get(Institution, Institution.create_id(uscc), f"institution {uscc}")
        return {
            "id": uscc,
            "name": inst.name,
            "kind": inst.kind,
            "events": self._events(inst.id, [1]),
        }

    def _principal(self, actor: str) -> Body | None:
        try:
            principal: Aggregate = self.ledger.repository.get(UUID(actor))
        except (ValueError, AggregateNotFoundError):
            return None  # a command-line actor such as "cli"
        if not isinstance(principal, Principal):
            return None
        return {"name": principal.name, "role": principal.role}

    def _get(
        self,
        cls: type[Any],
        agg_id: UUID,
        what: str,
        as_of: dt.datetime | None = None,
        version: int | None = None,
    ) -> Any:
        if as_of is not None:
            version = self.ledger._version_at(agg_id, as_of, what)
        try:
            agg: Aggregate = self.ledger.repository.get(agg_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(f"{what} not found") from None
        if not isinstance(agg, cls):
            raise NotFound(f"{what} not found")
        return agg

    # ---- forward -------------------------------------------------------------------------
    def funding_source(self, source_id: Any, as_of: dt.datetime | None = None) -> Body:
        key = check_key(source_id, "id")
        source = self._get(FundingSource, FundingSource.create_id(key), f"funding source {key}")
        if as_of is None:
            destinations = self._destinations_now(key)
        else:
            destinations = self._destinations_as_of(key, as_of)
        positions = [d["position"] for d in destinations]
        hashes = self.store.chain_hashes(positions)
        for d in destinations:
            d["hash"] = hashes.get(d["position"])
        return {
            "source_id": key,
            "document_ref": source.document_ref,
            "as_of": as_of.isoformat() if as_of else None,
            "disbursed_fen": sum(d["amount_fen"] for d in destinations),
            "recovered_fen": sum(d["clawed_back_fen"] for d in destinations),
            "redemptions": len(destinations),
            "destinations": destinations[:MAX_DESTINATIONS],
            "truncated": len(destinations) > MAX_DESTINATIONS,
        }

    def _destinations_now(self, source_id: str) -> list[Body]:
        found: list[Body] = []
        after: int | None = 0
        while after is not None:
            page, after = self.views.payables(PayableFilter(source_id=source_id, after=after))
            found += [_destination(r) for r in page if r["kind"] == "subsidy"]
        return found

    def _destinations_as_of(self, source_id: str, as_of: dt.datetime) -> list[Body]:
        """From the events up to ``as_of``: claims that drew on the source, less clawbacks."""
        by_claim: dict[UUID, Body] = {}
        claimed = ContractClaim.Claimed  # type: ignore[attr-defined]
        for position, claim in self.ledger._follow(claimed, 0):
            if claim.timestamp > as_of:
                continue
            amount_fen = dict(claim.splits).get(source_id, 0)
            if amount_fen:
                by_claim[claim.originator_id] = {
                    "redemption_id": str(claim.originator_id),
                    "programme_id": claim.programme_id,
                    "provider_id": claim.provider_id,
                    "holder_id": claim.holder_id,
                    "voucher_id": str(claim.voucher_id),
                    "amount_fen": int(amount_fen),
                    "clawed_back_fen": 0,
                    "position": position,
                }
        clawed = ContractClaim.ClawedBack  # type: ignore[attr-defined]
        for _, clawback in self.ledger._follow(clawed, 0):
            d = by_claim.get(clawback.originator_id)
            if d is not None and clawback.timestamp <= as_of:
                d["clawed_back_fen"] = d["amount_fen"]
        return sorted(by_claim.values(), key=lambda d: d["position"])


def _destination(r: dict[str, Any]) -> Body:
    return {
        "redemption_id": r["redemption_id"],
        "programme_id": r["programme_id"],
        "provider_id": r["provider_id"],
        "holder_id": r["holder_id"],
        "voucher_id": r["voucher_id"],
        "amount_fen": r["amount_fen"],
        "clawed_back_fen": r["clawed_back_fen"],
        "position": r["redeemed_position"],
    }
