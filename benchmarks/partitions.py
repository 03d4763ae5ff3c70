"""Partitioning measured on one PostgreSQL: the same ledger processes on one log, and each on a
log of its own (a partition: its own tables, so its own insert lock), beside pgbench.

    DATABASE_URL=postgresql://... python -m benchmarks.partitions [--seconds 10] [--processes 2]

(``make bench-partitions``.) eventsourcing's PostgreSQL recorder takes a table lock for every
insert so that positions are assigned in commit order; ledgers sharing a log queue on it, and
the group-commit writer of each process makes its batches large to pay it rarely. Ledgers on
logs of their own (one per jurisdiction, docs/SCALING.md) share only the machine. On two cores
both runs are bounded by CPU; the difference between them is what the shared lock costs."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from multiprocessing.queues import Queue
from urllib.parse import urlsplit

from benchmarks.common import drop_database, fresh_database_url, load
from benchmarks.redeem import Run, _child, pgbench_tps, summarise


def run_ledgers(
    base_url: str, processes: int, threads: int, seconds: float, own_logs: bool
) -> dict[str, float]:
    """``processes`` ledgers with ``threads`` callers each, on one log or on one log each."""
    urls = [fresh_database_url(base_url) for _ in range(processes if own_logs else 1)]
    shares = []
    for i in range(processes):
        url = urls[i if own_logs else 0]
        if own_logs or i == 0:
            loaded = load(
                url,
                vouchers=(1 if own_logs else processes) * threads * 4,
                providers=(1 if own_logs else processes) * 10,
            )
            loaded.app.close()
            vouchers, providers = loaded.vouchers, loaded.providers
        step = 1 if own_logs else processes
        offset = 0 if own_logs else i
        shares.append((url, vouchers[offset::step], providers[offset::step]))
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Run] = ctx.Queue()
    start = ctx.Barrier(processes)
    children = [
        ctx.Process(target=_child, args=(url, i, v, p, threads, seconds, results, start))
        for i, (url, v, p) in enumerate(shares)
    ]
    for child in children:
        child.start()
    runs = [results.get(timeout=seconds + 120) for _ in children]
    for child in children:
        child.join()
    for url in urls:
        drop_database(url)
    return summarise(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="callers in each process")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not urlsplit(url).scheme.startswith("postgres"):
        print("benchmarks.partitions needs DATABASE_URL=postgresql://...", file=sys.stderr)
        return 2
    tps = pgbench_tps(url, 8, int(args.seconds)) or 0.0
    print(f"pgbench 4-row insert transaction, 8 clients: {tps:,.0f} tx/s")
    shape = f"{args.processes} ledger processes x {args.threads} callers"
    for own_logs in (False, True):
        r = run_ledgers(url, args.processes, args.threads, args.seconds, own_logs)
        where = "a log each (partitioned)" if own_logs else "one log (shared insert lock)"
        print(
            f"  {shape}, {where:<30} {r['per_s']:>7,.0f} redemptions/s "
            f"({r['per_s'] / tps:.2f} x pgbench), mean batch {r['mean_batch']:.1f}, "
            f"retried {r['retried']:.0f}, errors {r['errors']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
