"""Inspection queries for discipline inspectors (纪委监委): each answers rows an inspector can
export as CSV, from the read models (refused attempts included: they are events too).

- self-dealing attempts: a provider presenting a voucher it holds itself;
- possible contract splitting: one provider and one enterprise, several contracts within N days,
  each under a threshold (splitting a contract to stay under a review limit);
- velocity: redemptions per provider per day above a bound;
- shared invoices: one invoice number presented by several providers;
- shared accounts and contacts: institutions registered with the same bank account or contact;
- actions: clawbacks, freezes and unfreezes with who did them and why."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.validate import check_int_text
from projections.store import Row, ViewStore

MAX_ROWS = 10_000


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    default: int
    lowest: int
    highest: int


@dataclass(frozen=True)
class Inspection:
    name: str  # the URL slug
    title: str
    params: tuple[Param, ...]
    run: Callable[[ViewStore, dict[str, int]], list[Row]]
    columns: tuple[str, ...]  # the CSV header, also when nothing is found


def self_dealing(views: ViewStore, _: dict[str, int]) -> list[Row]:
    return views.query(
        "SELECT r.position, r.recorded_at, r.provider_id, r.voucher_id, v.holder_id, "
        "r.contract_no, r.invoice_no, r.contract_amount_fen, r.attempted_by, r.detail "
        "FROM {proj_refusal} r LEFT JOIN {proj_voucher} v ON v.voucher_id = r.voucher_id "
        "WHERE r.slug = 'self-dealing' ORDER BY r.position LIMIT %s",
        (MAX_ROWS,),
    )


def contract_splitting(views: ViewStore, p: dict[str, int]) -> list[Row]:
    """Runs of at least ``min_contracts`` contracts between one provider and one enterprise,
    each under ``threshold_fen``, with service dates within ``days`` of the run's first."""
    rows = views.query(
        "SELECT redemption_id, provider_id, holder_id, contract_no, contract_amount_fen, "
        "service_date, redeemed_position AS position FROM {proj_redemption} "
        "WHERE contract_amount_fen < %s AND clawed_back = 0 "
        "ORDER BY provider_id, holder_id, service_date, redeemed_position",
        (p["threshold_fen"],),
    )
    found: list[Row] = []
    pairs: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        pairs.setdefault((r["provider_id"], r["holder_id"]), []).append(r)
    for (provider_id, holder_id), contracts in pairs.items():
        start = 0
        for end in range(len(contracts)):
            while _days(contracts[start], contracts[end]) > p["days"]:
                start += 1
            run = contracts[start : end + 1]
            ends_run = (
                end + 1 == len(contracts) or _days(contracts[start], contracts[end + 1]) > p["days"]
            )
            if len(run) >= p["min_contracts"] and ends_run:
                found.append(
                    {
                        "provider_id": provider_id,
                        "holder_id": holder_id,
                        "contracts": len(run),
                        "total_fen": sum(int(c["contract_amount_fen"]) for c in run),
                        "first_service_date": run[0]["service_date"],
                        "last_service_date": run[-1]["service_date"],
                        "contract_nos": " ".join(c["contract_no"] for c in run),
                        "positions": " ".join(str(c["position"]) for c in run),
                    }
                )
    return found[:MAX_ROWS]


def _days(first: Row, last: Row) -> int:
    a = dt.date.fromisoformat(first["service_date"])
    return (dt.date.fromisoformat(last["service_date"]) - a).days


def velocity(views: ViewStore, p: dict[str, int]) -> list[Row]:
    return views.query(
        "SELECT provider_id, recorded_day AS day, COUNT(*) AS redemptions, "
        "SUM(contract_amount_fen) AS contract_fen, MIN(redeemed_position) AS first_position "
        "FROM {proj_redemption} GROUP BY provider_id, recorded_day HAVING COUNT(*) > %s "
        "ORDER BY recorded_day, provider_id LIMIT %s",
        (p["bound"], MAX_ROWS),
    )


def shared_invoices(views: ViewStore, _: dict[str, int]) -> list[Row]:
    attempts = views.query(
        "SELECT invoice_no, provider_id, redeemed_position AS position, 'redeemed' AS outcome "
        "FROM {proj_redemption} UNION ALL "
        "SELECT invoice_no, provider_id, position, slug AS outcome FROM {proj_refusal} "
        "ORDER BY 1, 3",
        (),
    )
    by_invoice: dict[str, list[Row]] = {}
    for a in attempts:
        by_invoice.setdefault(a["invoice_no"], []).append(a)
    found = []
    for invoice_no, tries in by_invoice.items():
        providers = sorted({t["provider_id"] for t in tries})
        if len(providers) > 1:
            found.append(
                {
                    "invoice_no": invoice_no,
                    "providers": " ".join(providers),
                    "attempts": len(tries),
                    "outcomes": " ".join(f"{t['position']}:{t['outcome']}" for t in tries),
                }
            )
    return found[:MAX_ROWS]


def shared_contacts(views: ViewStore, _: dict[str, int]) -> list[Row]:
    found: list[Row] = []
    for column in ("bank_account", "contact"):
        rows = views.query(
            f"SELECT {column} AS shared, institution_id, name, kind FROM {{proj_institution}} "
            f"WHERE {column} IN (SELECT {column} FROM {{proj_institution}} "
            f"WHERE {column} IS NOT NULL GROUP BY {column} HAVING COUNT(*) > 1) "
            "ORDER BY 1, 2",
            (),
        )
        groups: dict[str, list[Row]] = {}
        for r in rows:
            groups.setdefault(r["shared"], []).append(r)
        found += [
            {
                "shared": column,
                "value": value,
                "institutions": " ".join(m["institution_id"] for m in members),
                "names": " / ".join(m["name"] for m in members),
                "kinds": " ".join(m["kind"] for m in members),
            }
            for value, members in groups.items()
        ]
    return found[:MAX_ROWS]


def actions(views: ViewStore, _: dict[str, int]) -> list[Row]:
    return views.query(
        "SELECT position, recorded_at, kind, subject_id, reason, actor FROM {proj_action} "
        "ORDER BY position LIMIT %s",
        (MAX_ROWS,),
    )


INSPECTIONS: dict[str, Inspection] = {
    i.name: i
    for i in (
        Inspection(
            "self-dealing",
            "Self-dealing attempts (refused included)",
            (),
            self_dealing,
            (
                "position",
                "recorded_at",
                "provider_id",
                "voucher_id",
                "holder_id",
                "contract_no",
                "invoice_no",
                "contract_amount_fen",
                "attempted_by",
                "detail",
            ),
        ),
        Inspection(
            "contract-splitting",
            "Possible contract splitting: one provider and one enterprise, several small contracts",
            (
                Param("days", "window in days", 30, 0, 366),
                Param("threshold_fen", "each contract under this amount", 10_000_000, 1, 10**15),
                Param("min_contracts", "at least this many contracts", 3, 2, 1000),
            ),
            contract_splitting,
            (
                "provider_id",
                "holder_id",
                "contracts",
                "total_fen",
                "first_service_date",
                "last_service_date",
                "contract_nos",
                "positions",
            ),
        ),
        Inspection(
            "velocity",
            "Redemptions per provider per day above a bound",
            (Param("bound", "more than this many a day", 20, 0, 10**6),),
            velocity,
            ("provider_id", "day", "redemptions", "contract_fen", "first_position"),
        ),
        Inspection(
            "shared-invoices",
            "One invoice presented by several providers",
            (),
            shared_invoices,
            ("invoice_no", "providers", "attempts", "outcomes"),
        ),
        Inspection(
            "shared-contacts",
            "Institutions sharing a bank account or contact",
            (),
            shared_contacts,
            ("shared", "value", "institutions", "names", "kinds"),
        ),
        Inspection(
            "actions",
            "Clawbacks and freezes, with actors and reasons",
            (),
            actions,
            ("position", "recorded_at", "kind", "subject_id", "reason", "actor"),
        ),
    )
}


def run(views: ViewStore, name: str, given: dict[str, Any]) -> list[Row]:
    """Run inspection ``name`` with ``given`` parameters (strings or ints; defaults otherwise)."""
    inspection = INSPECTIONS[name]
    params = {
        p.name: p.default
        if given.get(p.name) is None
        else check_int_text(given[p.name], p.name, p.lowest, p.highest)
        for p in inspection.params
    }
    return inspection.run(views, params)
