"""In-process redemptions per second on SQLite and PostgreSQL, with 1 and 8 threads, beside
pgbench's rate for a 4-row insert transaction at 8 clients on the same PostgreSQL.

    DATABASE_URL=postgresql://... python -m benchmarks.redeem [--seconds 10] [--processes 2,4]

Also measured: the in-memory store (the ceiling set by this process's own Python work) and the
same 8 callers split over several ledger processes on one PostgreSQL, as server workers would
be. Without a PostgreSQL URL only memory and SQLite are measured. Every refusal counts as an
error; "retried" counts lost races that were decided again inside the ledger."""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from benchmarks.common import TODAY, drop_database, fresh_database_url, load, redeem_one
from ledger.application import VoucherLedger
from ledger.errors import LedgerError
from ledger.settings import Settings

PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO pgbench_ledger_rows (a, b) VALUES (1, 'voucher');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (2, 'contract-claim');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (3, 'invoice-claim');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (4, 'provider-year');
COMMIT;
"""


@dataclass
class Run:
    redemptions: int
    errors: list[str]
    retried: int
    fallback_batches: int
    batches: int
    commands: int
    elapsed_s: float


def drive(
    app: VoucherLedger,
    vouchers: list[UUID],
    providers: list[str],
    threads: int,
    seconds: float,
    prefix: str = "",
) -> Run:
    """``threads`` threads redeem in a closed loop for ``seconds``; any refusal is an error."""
    counter = itertools.count()
    ok = [0] * threads
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    before = (
        app.writer.stats.retries,
        app.writer.stats.fallbacks,
        app.writer.stats.batches,
        app.writer.stats.commands,
    )

    def worker(t: int) -> None:
        mine = vouchers[t::threads]
        while time.perf_counter() < stop_at:
            n = next(counter)
            try:
                redeem_one(app, mine, providers, n, prefix)
                ok[t] += 1
            except LedgerError as exc:  # any business error here is a benchmark failure
                errors.append(f"{exc.slug}: {exc.detail}")

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed_s = time.perf_counter() - started
    stats = app.writer.stats
    return Run(
        sum(ok),
        errors,
        stats.retries - before[0],
        stats.fallbacks - before[1],
        stats.batches - before[2],
        stats.commands - before[3],
        elapsed_s,
    )


def summarise(runs: list[Run]) -> dict[str, float]:
    """Totals; the rate is the sum of each ledger's own rate over its own run."""
    return {
        "redemptions": sum(r.redemptions for r in runs),
        "per_s": sum(r.redemptions / r.elapsed_s for r in runs),
        "errors": sum(len(r.errors) for r in runs),
        "retried": sum(r.retried for r in runs),
        "fallback_batches": sum(r.fallback_batches for r in runs),
        "mean_batch": sum(r.commands for r in runs) / max(1, sum(r.batches for r in runs)),
    }


def bench_redeem(base_url: str, threads: int, seconds: float) -> dict[str, float]:
    """One ledger in this process, ``threads`` callers."""
    url = fresh_database_url(base_url)
    loaded = load(url, vouchers=threads * 4)
    run = drive(loaded.app, loaded.vouchers, loaded.providers, threads, seconds)
    result = summarise([run])
    loaded.app.close()
    drop_database(url)
    return result


def _child(
    url: str,
    index: int,
    vouchers: list[UUID],
    providers: list[str],
    threads: int,
    seconds: float,
    results: Queue[Run],
    start: Any,
) -> None:
    app = VoucherLedger(Settings(database_url=url), clock=lambda: TODAY)
    start.wait()  # every ledger is open: run together
    try:
        results.put(drive(app, vouchers, providers, threads, seconds, prefix=f"p{index}-"))
    finally:
        app.close()


def bench_processes(
    base_url: str, processes: int, threads: int, seconds: float
) -> dict[str, float]:
    """``processes`` ledgers (like server workers) on one store, ``threads`` callers each, on
    disjoint vouchers and providers; conflicts between them are retried inside each ledger."""
    url = fresh_database_url(base_url)
    loaded = load(url, vouchers=processes * threads * 4, providers=processes * 10)
    loaded.app.close()
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Run] = ctx.Queue()
    start = ctx.Barrier(processes)
    children = [
        ctx.Process(
            target=_child,
            args=(
                url,
                i,
                loaded.vouchers[i::processes],
                loaded.providers[i::processes],
                threads,
                seconds,
                results,
                start,
            ),
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    runs = [results.get(timeout=seconds + 120) for _ in children]
    for child in children:
        child.join()
    drop_database(url)
    return summarise(runs)


def pgbench_tps(url: str, clients: int, seconds: int) -> float | None:
    exe = shutil.which("pgbench")
    if exe is None:
        return None
    plain = url.split("?")[0]
    subprocess.run(
        [
            "psql",
            plain,
            "-q",
            "-c",
            "CREATE TABLE IF NOT EXISTS pgbench_ledger_rows "
            "(id bigserial PRIMARY KEY, a bigint, b text)",
        ],
        check=True,
        capture_output=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
    out = subprocess.run(
        [
            exe,
            "-n",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(seconds),
            "-f",
            f.name,
            plain,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(f.name)
    match = re.search(r"tps = ([0-9.]+)", out)
    return float(match.group(1)) if match else None


def row(store: str, callers: str, r: dict[str, float]) -> None:
    print(
        f"{store:<10} {callers:>7} {r['per_s']:>10.0f} {r['redemptions']:>8} "
        f"{r['errors']:>6} {r['retried']:>7} {r['fallback_batches']:>9} {r['mean_batch']:>6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument(
        "--processes",
        default="2",
        help="also run 8 callers split over this many ledger processes (comma list; 0: none)",
    )
    args = parser.parse_args()
    pg_url = os.environ.get("DATABASE_URL", "")
    has_pg = urlsplit(pg_url).scheme.startswith("postgres")
    thread_counts = [int(t) for t in args.threads.split(",")]
    process_counts = [int(p) for p in args.processes.split(",") if int(p) > 0]
    print(
        f"{'store':<10} {'callers':>7} {'redeem/s':>10} {'done':>8} {'errors':>6} "
        f"{'retried':>7} {'fallbacks':>9} {'batch':>6}"
    )
    results = {}
    for store, base in (
        ("memory", "memory://"),
        ("sqlite", "sqlite:///unused"),
        ("postgres", pg_url),
    ):
        if store == "postgres" and not has_pg:
            print("postgres   (skipped: DATABASE_URL is not a postgresql:// URL)")
            continue
        for threads in thread_counts:
            results[(store, threads)] = r = bench_redeem(base, threads, args.seconds)
            row(store, str(threads), r)
    for processes in process_counts if has_pg else []:
        r = bench_processes(pg_url, processes, max(1, 8 // processes), args.seconds)
        row("postgres", f"{processes}x{max(1, 8 // processes)}", r)
    if has_pg:
        tps = pgbench_tps(pg_url, 8, int(args.seconds))
        if tps is None:
            print("pgbench not found")
            return
        print(f"pgbench 4-row insert transaction, 8 clients: {tps:.0f} tps")
        best = results.get(("postgres", 8))
        if best:
            print(f"ratio postgres 8 threads / pgbench: {best['per_s'] / tps:.2f} (target >= 0.5)")
    print("memory: eventsourcing's in-memory store, the ceiling of this process's Python work")


if __name__ == "__main__":
    main()
