"""A primary and a hot standby on this machine: what synchronous replication costs, how far the
standby lags under the served write load, and reads answered from the standby.

    scripts/with-postgres.sh --replica python -m benchmarks.replica [--seconds 15]

(``make bench-replica``.) In one run, on the primary and its streaming standby:

1. pgbench's 4-row insert transaction (8 clients) and in-process redemptions (8 threads,
   ``benchmarks.redeem``) with asynchronous replication, then again with
   ``synchronous_standby_names = '*'`` and ``synchronous_commit = remote_apply`` (every commit
   waits until the standby has applied it: nothing acknowledged is missing from a promoted
   standby, tests/test_replica.py), then back;
2. ``voucher-ledger serve`` with ``DATABASE_REPLICA_URL`` at the standby: wrk writes (as
   ``make bench-http``) while the standby's lag is sampled every 0.25 s (WAL bytes not yet
   replayed, PostgreSQL's ``replay_lag``, and log positions: the primary's head minus the
   standby's), and the CPU each process group used;
3. wrk reads (vouchers, balances, payables) answered from the standby's views, every answer
   checked against the one read after the writes.

Everything shares the machine's two cores, the standby included: the figures say what a second
machine would take off this one, not what two machines would reach."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from benchmarks.common import drop_database, fresh_database_url
from benchmarks.http import seeded_server
from benchmarks.http_wrk import PGBENCH_CLIENTS, read_data, report_problems, run_wrk, write_data
from benchmarks.redeem import bench_redeem, pgbench_tps

VOUCHERS = 200
SAMPLE_S = 0.25
HEAD_SQL = "SELECT coalesce(max(notification_id), 0) FROM {schema}.voucherledger_events"
LAG_SQL = (
    "SELECT pg_wal_lsn_diff(sent_lsn, replay_lsn)::bigint,"
    " coalesce(extract(epoch FROM replay_lag) * 1000000, 0)::bigint"
    " FROM pg_stat_replication"
)


@contextmanager
def synchronous(primary: str, on: bool) -> Iterator[None]:
    """Every commit waits for the standby's apply (``on``), or replication stays asynchronous."""
    settings = ("'*'", "'remote_apply'") if on else ("''", "'on'")
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {settings[0]}")
        conn.execute(f"ALTER SYSTEM SET synchronous_commit = {settings[1]}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        if on:
            with psycopg.connect(primary, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
                conn.execute("ALTER SYSTEM RESET synchronous_commit")
                conn.execute("SELECT pg_reload_conf()")


@dataclass
class Lag:
    """Samples of the standby's lag behind the primary while the writes ran."""

    wal_bytes: list[int] = field(default_factory=list)
    replay_lag_us: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # the primary's head minus the standby's

    def line(self, name: str, values: list[int], unit: str, scale: int = 1) -> str:
        if not values:
            return f"  {name}: no samples"
        ordered = sorted(values)
        p50, p99 = (
            ordered[len(ordered) // 2],
            ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)],
        )
        return (
            f"  {name:<28} p50 {p50 / scale:>9,.1f} {unit}  p99 {p99 / scale:>9,.1f} {unit}"
            f"  max {ordered[-1] / scale:>9,.1f} {unit}  ({len(values)} samples)"
        )


def sample_lag(primary: str, standby: str, schema: str, stop: threading.Event, lag: Lag) -> None:
    head_sql = HEAD_SQL.format(schema=f'"{schema}"')
    with (
        psycopg.connect(primary, autocommit=True) as p,
        psycopg.connect(standby, autocommit=True) as s,
    ):
        while not stop.wait(SAMPLE_S):
            row = p.execute(LAG_SQL).fetchone()
            if row is not None and row[0] is not None:
                lag.wal_bytes.append(int(row[0]))
                lag.replay_lag_us.append(int(row[1]))
            # The standby's head first: the difference is never below the true lag.
            behind = s.execute(head_sql).fetchone()
            ahead = p.execute(head_sql).fetchone()
            if behind is not None and ahead is not None:
                lag.positions.append(int(ahead[0]) - int(behind[0]))


def cpu_ticks() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, what it is, user + system clock ticks), from /proc."""
    found: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), cmdline.strip(), int(fields[11]) + int(fields[12]))
    return found


def group_of(pid: int, procs: dict[int, tuple[int, str, int]], server: int) -> str | None:
    """The process group ``pid`` belongs to: the server's tree, the primary, the standby, wrk."""
    seen = 0
    while pid in procs and seen < 64:
        ppid, cmdline, _ = procs[pid]
        if pid == server:
            return "ledger server (all its processes)"
        if " -D " in cmdline and "postgres" in cmdline.split(" -D ")[0]:
            return "PostgreSQL standby" if "/standby/" in cmdline else "PostgreSQL primary"
        if cmdline.startswith("wrk "):
            return "wrk"
        pid, seen = ppid, seen + 1
    return None


def cpu_by_group(
    before: dict[int, tuple[int, str, int]], after: dict[int, tuple[int, str, int]], server: int
) -> dict[str, int]:
    """Clock ticks each group used between two snapshots (processes started since count whole)."""
    used: dict[str, int] = {}
    for pid, (_, _, ticks) in after.items():
        group = group_of(pid, after, server)
        if group is None:
            continue
        used[group] = used.get(group, 0) + ticks - before.get(pid, (0, "", 0))[2]
    return used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    args.workers = args.threads = None
    primary = os.environ.get("DATABASE_URL", "")
    standby = os.environ.get("DATABASE_REPLICA_URL", "")
    if not urlsplit(primary).scheme.startswith("postgres") or not standby:
        print("run it as scripts/with-postgres.sh --replica ...", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("benchmarks.replica needs wrk (make bench-replica installs it)", file=sys.stderr)
        return 2

    print("replication    pgbench tx/s   in-process redemptions/s (8 threads)")
    rates: dict[bool, tuple[float, float]] = {}
    for on in (False, True):
        with synchronous(primary, on):
            tps = pgbench_tps(primary, PGBENCH_CLIENTS, args.seconds) or 0.0
            redeemed = bench_redeem(primary, 8, args.seconds)["per_s"]
        rates[on] = (tps, redeemed)
        name = "remote_apply" if on else "asynchronous"
        print(f"  {name:<14} {tps:>10,.0f}   {redeemed:>10,.0f}")
    (tps_async, redeem_async), (tps_sync, redeem_sync) = rates[False], rates[True]
    print(
        f"  remote_apply costs {1 - tps_sync / tps_async:.0%} of pgbench's rate and "
        f"{1 - redeem_sync / redeem_async:.0%} of the ledger's"
    )

    url = fresh_database_url(primary)
    schema = urlsplit(url).query.removeprefix("schema=")
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-replica-"))
    lag, stop = Lag(), threading.Event()
    try:
        with seeded_server(url, args, work, VOUCHERS) as (base, data, _):
            server_pid = _server_pid(urlsplit(base).port)
            writes_data = write_data(work, data)
            sampler = threading.Thread(
                target=sample_lag, args=(primary, standby, schema, stop, lag), daemon=True
            )
            sampler.start()
            wal_before, head_before = _wal_and_head(primary, schema)
            before = cpu_ticks()
            writes = run_wrk(
                "writes", "wrk_redeem.lua", writes_data, base, args.seconds, args.connections
            )
            used = cpu_by_group(before, cpu_ticks(), server_pid)
            wal_after, head_after = _wal_and_head(primary, schema)
            stop.set()
            sampler.join()
            reads_data, head = read_data(work, base, data)
            before = cpu_ticks()
            reads = run_wrk(
                "reads", "wrk_read.lua", reads_data, base, args.seconds, args.connections
            )
            read_used = cpu_by_group(before, cpu_ticks(), server_pid)
    finally:
        stop.set()
        drop_database(url)
    hz = os.sysconf("SC_CLK_TCK")
    print(f"\nserved with DATABASE_REPLICA_URL (reads on the standby), wrk -c{args.connections}")
    for run, cpu in ((writes, used), (reads, read_used)):
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(run.statuses.items()))
        print(
            f"  {run.name:<7} {run.ok_per_s:>8,.0f}/s  p50 {run.p50_ms:6.1f} ms  "
            f"p99 {run.p99_ms:6.1f} ms  ratio to pgbench {run.ok_per_s / tps_async:.2f}  "
            f"statuses {statuses}"
        )
        for group, ticks in sorted(cpu.items()):
            print(f"      CPU {group:<34} {ticks / hz / run.seconds:5.0%} of a core")
    written = max(1, writes.statuses.get(201, 0))
    print(
        f"  per redemption: {(head_after - head_before) / written:.2f} events, "
        f"{(wal_after - wal_before) / written:,.0f} bytes of WAL "
        f"({(wal_after - wal_before) / writes.seconds / 2**20:.1f} MiB/s)"
    )
    print(f"standby lag while the writes ran (reads then waited for position {head}):")
    print(lag.line("WAL not replayed", lag.wal_bytes, "KiB", 1024))
    print(lag.line("replay_lag", lag.replay_lag_us, "ms", 1000))
    print(lag.line("log positions behind", lag.positions, "events"))
    return report_problems(writes.problems() + reads.problems(), work)


def _wal_and_head(primary: str, schema: str) -> tuple[int, int]:
    """The primary's WAL position (bytes) and the log's head."""
    with psycopg.connect(primary, autocommit=True) as conn:
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
        head = conn.execute(HEAD_SQL.format(schema=f'"{schema}"')).fetchone()
    assert wal is not None and head is not None
    return int(wal[0]), int(head[0])


def _server_pid(port: int | None) -> int:
    """The pid of the ``voucher-ledger serve`` listening on ``port`` (benchmarks.http starts it)."""
    wanted = [b"--port", str(port).encode()]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            at = cmdline.index(b"--port") if b"--port" in cmdline else -1
            if b"serve" in cmdline and at >= 0 and cmdline[at : at + 2] == wanted:
                return int(entry)
    raise RuntimeError(f"no server process listening on port {port}")


if __name__ == "__main__":
    sys.exit(main())
