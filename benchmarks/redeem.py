"""In-process redemptions per second on SQLite and PostgreSQL, with 1 and 8 threads, beside
pgbench's rate for a 4-row insert transaction at 8 clients on the same PostgreSQL.

    DATABASE_URL=postgresql://... python -m benchmarks.redeem [--seconds 10]

Without a PostgreSQL URL only SQLite is measured. Prints one line per case and the ratio."""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from urllib.parse import urlsplit

from benchmarks.common import drop_database, fresh_database_url, load
from ledger.errors import LedgerError

PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO pgbench_ledger_rows (a, b) VALUES (1, 'voucher');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (2, 'contract-claim');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (3, 'invoice-claim');
INSERT INTO pgbench_ledger_rows (a, b) VALUES (4, 'provider-year');
COMMIT;
"""


def bench_redeem(base_url: str, threads: int, seconds: float) -> dict[str, float]:
    url = fresh_database_url(base_url)
    loaded = load(url, vouchers=threads * 4)
    app = loaded.app
    counter = itertools.count()
    ok = [0] * threads
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def worker(t: int) -> None:
        vouchers = loaded.vouchers[t::threads]
        while time.perf_counter() < stop_at:
            n = next(counter)
            try:
                app.redeem(
                    voucher_id=vouchers[n % len(vouchers)],
                    provider_id=loaded.providers[n % len(loaded.providers)],
                    contract_no=f"C{n}",
                    invoice_no=f"I{n}",
                    service_category="testing",
                    contract_amount_fen=1000 + n % 997,
                    service_date="2026-04-01",
                    actor="bench",
                )
                ok[t] += 1
            except LedgerError as exc:  # any business error here is a benchmark failure
                errors.append(f"{exc.slug}: {exc.detail}")

    stats_before = (app.writer.stats.retries, app.writer.stats.fallbacks)
    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    done = sum(ok)
    stats = app.writer.stats
    result = {
        "redemptions": done,
        "per_s": done / elapsed,
        "errors": len(errors),
        "retried": stats.retries - stats_before[0],
        "fallback_batches": stats.fallbacks - stats_before[1],
        "mean_batch": stats.commands / max(1, stats.batches),
    }
    app.close()
    drop_database(url)
    return result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", default="1,8")
    args = parser.parse_args()
    pg_url = os.environ.get("DATABASE_URL", "")
    has_pg = urlsplit(pg_url).scheme.startswith("postgres")
    thread_counts = [int(t) for t in args.threads.split(",")]
    sqlite_base = "sqlite:///unused"
    print(
        f"{'store':<10} {'threads':>7} {'redeem/s':>10} {'done':>8} {'errors':>6} "
        f"{'retried':>7} {'fallbacks':>9} {'batch':>6}"
    )
    results = {}
    for store, base in (("sqlite", sqlite_base), ("postgres", pg_url)):
        if store == "postgres" and not has_pg:
            print("postgres   (skipped: DATABASE_URL is not a postgresql:// URL)")
            continue
        for threads in thread_counts:
            r = bench_redeem(base, threads, args.seconds)
            results[(store, threads)] = r
            print(
                f"{store:<10} {threads:>7} {r['per_s']:>10.0f} {r['redemptions']:>8} "
                f"{r['errors']:>6} {r['retried']:>7} {r['fallback_batches']:>9} "
                f"{r['mean_batch']:>6.1f}"
            )
    if has_pg:
        tps = pgbench_tps(pg_url, 8, int(args.seconds))
        if tps is None:
            print("pgbench not found")
            return
        print(f"pgbench 4-row insert transaction, 8 clients: {tps:.0f} tps")
        best = results.get(("postgres", 8))
        if best:
            print(f"ratio postgres 8 threads / pgbench: {best['per_s'] / tps:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
