"""Audit speed on PostgreSQL with a large log: how fast the chain follower extends the chain,
how fast ``verify`` recomputes it, and how long one redemption's backward trace takes.

    DATABASE_URL=postgresql://... python -m benchmarks.audit [--events 1000000] [--traces 200]

Targets (issue 6): verify >= 200,000 events/s; a trace < 50 ms with 1,000,000 events."""

from __future__ import annotations

import argparse
import random
import statistics
import time

from audit.service import Auditor
from benchmarks.common import drop_database, fresh_database_url, load, postgres_url
from benchmarks.projections import fill
from ledger.claims import ContractClaim
from projections.store import open_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--traces", type=int, default=200)
    args = parser.parse_args()
    url = fresh_database_url(postgres_url())
    loaded = load(url, vouchers=64)
    app = loaded.app
    views = open_views(app.settings)
    auditor = Auditor(app, views, embedded=False)
    try:
        started = time.perf_counter()
        head = fill(app, loaded.vouchers, loaded.providers, args.events)
        print(f"filled the log: {head:,} events in {time.perf_counter() - started:.0f} s")

        started = time.perf_counter()
        chained = auditor.chain_projector().catch_up()
        elapsed_s = time.perf_counter() - started
        print(
            f"chain follower: {chained:,} events in {elapsed_s:.1f} s "
            f"= {chained / elapsed_s:,.0f} events/s"
        )

        started = time.perf_counter()
        verdict = auditor.verify()
        elapsed_s = time.perf_counter() - started
        rate = verdict.events_checked / elapsed_s
        print(
            f"verify: ok={verdict.ok} {verdict.events_checked:,} events in {elapsed_s:.1f} s "
            f"= {rate:,.0f} events/s (target >= 200,000)"
        )

        rng = random.Random(6)
        redemptions = (head - 64 * 3 - 100) // 5  # about 5 events each after the set-up
        timings_ms = []
        for _ in range(args.traces):
            n = rng.randrange(redemptions)
            claim_id = ContractClaim.create_id(loaded.providers[n % len(loaded.providers)], f"C{n}")
            started = time.perf_counter()
            trace = auditor.tracer.redemption(claim_id)
            timings_ms.append((time.perf_counter() - started) * 1000)
            assert trace["sources_total_fen"] == trace["subsidy_fen"]
        timings_ms.sort()
        print(
            f"trace one redemption ({args.traces} random ones): "
            f"p50 {statistics.median(timings_ms):.1f} ms, "
            f"p99 {timings_ms[int(len(timings_ms) * 0.99) - 1]:.1f} ms, "
            f"max {timings_ms[-1]:.1f} ms (target < 50 ms)"
        )
    finally:
        auditor.close()
        views.close()
        app.close()
        drop_database(url)


if __name__ == "__main__":
    main()
