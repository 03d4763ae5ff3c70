"""The served API beside pgbench, measured with wrk: redemptions and reads per second, p50/p99.

    DATABASE_URL=postgresql://... python -m benchmarks.http_wrk [--seconds 20] [--connections 16]
        [--workers N] [--threads T] [--profile]

In one run on one PostgreSQL: pgbench's 4-row insert transaction at 8 clients (the yardstick),
then the real ``voucher-ledger serve`` (its projector running) on a free port of 127.0.0.1,
seeded over HTTP as benchmarks/http.py does (200 vouchers, 200 enterprises, 20 providers), then
``wrk -t2 -c16`` for writes (benchmarks/wrk_redeem.lua: a fresh contract and invoice number
every time, at random over the vouchers and providers) and for reads (benchmarks/wrk_read.lua:
vouchers, balances and payables, a third each, every answer compared with the one read after
the writes at their position). wrk's client costs little CPU, so the figure is the server's;
it shares the machine's cores with the server, its projector and PostgreSQL, as users would.

``--profile`` records the server's processes with py-spy (``pip install -e '.[profile]'``)
while wrk writes and while it reads, the interpreter lock held only (``--gil``), and prints
the share of samples per thread, the functions most often on the stack and those most often
at its top (their own time): where a request's time goes.

Prints each rate with p50/p99, its status counts and its ratio to pgbench, the CPU each kind of
process used meanwhile (serve, each follower, PostgreSQL: which one bounds the rate), what the
writer did during the writes (commands per transaction, commands run one by one), and the issue's
targets (writes >= 0.6 x pgbench with p99 <= 50 ms; reads >= 1.5 x with p99 <= 20 ms). Exits 1
on anything wrong: a 5xx, a 409 (every contract is fresh), a socket error or a read whose
answer is not what the writes before it left."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.observability import WRITER_COUNTS
from benchmarks.common import drop_database, fresh_database_url
from benchmarks.http import seeded_server, server_problems
from benchmarks.redeem import pgbench_tps

HERE = Path(__file__).resolve().parent
COMMON_LUA = HERE / "wrk_common.lua"
PGBENCH_CLIENTS = 8
WRK_THREADS = 2
VOUCHERS = 200
PAYABLES_PAGE = 20
TARGETS = {"writes": (0.6, 50.0), "reads": (1.5, 20.0)}  # ratio to pgbench, p99 ms


@dataclass(frozen=True)
class WrkRun:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    mismatches: int
    statuses: dict[int, int]

    @property
    def ok_per_s(self) -> float:
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return ok / self.seconds

    def problems(self) -> list[str]:
        found = [f"{n} answers {s}" for s, n in sorted(self.statuses.items()) if s >= 300]
        if self.socket_errors:
            found.append(f"{self.socket_errors} socket errors")
        if self.mismatches:
            found.append(f"{self.mismatches} answers unlike what the writes left")
        return found


def lua_string(text: str) -> str:
    """A Lua long-bracket string holding ``text`` exactly (no escapes to get wrong)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[\n{text}]{eq}]"


def lua_list(items: list[str]) -> str:
    return "{" + ",\n".join(items) + "}"


def run_wrk(
    name: str, script: str, data: Path, base: str, seconds: int, connections: int
) -> WrkRun:
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(HERE / script), base,
    ]  # fmt: skip
    env = {
        **os.environ,
        "LEDGER_WRK_DATA": str(data),
        "LEDGER_WRK_COMMON": str(COMMON_LUA),
        # Each run's own: claim numbers of two runs within one second must not meet.
        "LEDGER_WRK_RUN": uuid.uuid4().hex[:12],
    }
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRK-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    figures = json.loads(line.removeprefix("WRK-JSON "))
    return WrkRun(
        name=name,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        socket_errors=figures["socket_errors"],
        mismatches=figures["mismatches"],
        statuses={int(s): n for s, n in figures["statuses"].items()},
    )


def py_spy() -> str | None:
    """py-spy beside this interpreter (the virtual environment's), else on the PATH."""
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def start_profile(base: str, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording the serve process and its children (workers, followers) for
    ``seconds``, samples taken only while a thread holds the interpreter lock."""
    port = urlsplit(base).port
    pid = subprocess.run(
        ["pgrep", "-f", f"serve --host 127.0.0.1 --port {port}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip
    command = [
        py_spy() or "py-spy", "record", "--pid", pid, "--duration", str(seconds), "--subprocesses",
        "--gil", "--threads", "--nonblocking", "--format", "raw", "-o", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(raw: Path, run: str, top: int = 25) -> None:
    """Samples per thread, then the functions on the stack of most samples (inclusive)."""
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        thread = next((f for f in frames if f.startswith("thread ")), frames[0])
        threads[thread] += n
        code = [f.split(":")[0] for f in frames if not f.startswith(("process ", "thread "))]
        for function in set(code):
            functions[function] += n
        if code:
            own[code[-1]] += n
    total = sum(threads.values()) or 1
    print(f"\nprofile of the {run} (py-spy --gil, {total:,} samples, 100 a second a thread):")
    for thread, n in threads.most_common(8):
        print(f"  {100 * n / total:5.1f}%  {thread}")
    print("  functions on the stack (inclusive):")
    for function, n in functions.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {function}")
    print("  functions at the top of the stack (their own time):")
    for function, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {function}")


def write_data(work: Path, data: dict[str, Any]) -> Path:
    path = work / "redeem-data.lua"
    vouchers = lua_list([lua_string(v) for v in data["vouchers"]])
    tokens = lua_list([lua_string(p["token"]) for p in data["providers"]])
    path.write_text(
        f"vouchers = {vouchers}\nproviders = {tokens}\n"
        f"service_date = {lua_string(data['service_date'])}\n"
    )
    return path


def read_data(work: Path, base: str, data: dict[str, Any]) -> tuple[Path, int]:
    """The reads wrk makes, each with the answer it must get: read here once the views include
    the last write (``min_position`` = the log's head), while nothing writes any more."""
    year = data["fiscal_year"]
    officer, treasury = data["officer_token"], data["treasury_token"]
    kinds: dict[str, list[tuple[str, str]]] = {
        "vouchers": [(f"/v1/vouchers/{v}", officer) for v in data["vouchers"]],
        "balances": [
            (f"/v1/institutions/{p['id']}/balances?fiscal_year={year}", p["token"])
            for p in data["providers"]
        ]
        + [
            (f"/v1/institutions/{e}/balances?fiscal_year={year}", officer)
            for e in data["enterprises"]
        ],
        "payables": [
            (f"/v1/payables?provider_id={p['id']}&limit={PAYABLES_PAGE}", treasury)
            for p in data["providers"]
        ],
    }
    with httpx.Client(base_url=base, timeout=30) as client:
        head = int(client.get("/v1/health").json()["projections"]["head"])
        lua_kinds = []
        for reads in kinds.values():
            entries = []
            for target, token in reads:
                sep = "&" if "?" in target else "?"
                answer = client.get(
                    f"{target}{sep}min_position={head}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {target} -> {answer.status_code} {answer.text}")
                entries.append("{" + ",".join(map(lua_string, (target, token, answer.text))) + "}")
            lua_kinds.append(lua_list(entries))
    path = work / "read-data.lua"
    path.write_text(f"reads = {lua_list(lua_kinds)}\n")
    return path, head


def cpu_ticks() -> Counter[str]:
    """CPU time (clock ticks, user + system) of this machine's server processes so far, by
    kind: the serve process and its workers, the views' and the audit chain's followers,
    PostgreSQL's backends. Read from /proc (Linux)."""
    ticks: Counter[str] = Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        if "--only views" in command:
            kind = "views follower"
        elif "--only audit-chain" in command:
            kind = "audit follower"
        elif "voucher-ledger serve" in command or "multiprocessing" in command:
            kind = "serve"
        elif name == "postgres":
            kind = name
        else:
            continue
        ticks[kind] += int(fields[11]) + int(fields[12])
    return ticks


def print_cpu(before: Counter[str], after: Counter[str], seconds: float) -> None:
    """Each kind's share of one core between the two readings: what bounds the rate."""
    per_core = os.sysconf("SC_CLK_TCK") * seconds
    shares = {kind: 100 * (after[kind] - before[kind]) / per_core for kind in after}
    print(
        "  CPU, % of one core: "
        + ", ".join(f"{kind} {share:.0f}" for kind, share in sorted(shares.items()))
        + f" (of {100 * (os.cpu_count() or 1)})"
    )


def writer_counts(base: str) -> dict[str, int]:
    """The server's writer counts from /metrics (one worker's: the one that answered)."""
    counts = dict.fromkeys((name for name, _, _ in WRITER_COUNTS), 0)
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        name = name.removesuffix("_total")
        if name in counts:
            counts[name] = int(float(value))  # a count, printed by prometheus as 12.0
    return counts


def print_writer(before: dict[str, int], after: dict[str, int]) -> None:
    """What the writer did during the writes: commands per transaction, and how many ran one
    by one (each its own transaction) after a batch fell back."""
    d = {name.removeprefix("ledger_writer_"): after[name] - before[name] for name in after}
    per_batch = d["batched_commands"] / d["batches"] if d["batches"] else 0
    print(
        f"  writer: {d['batches']:,} batches of {per_batch:.1f} commands on average, "
        f"{d['careful_commands']:,} commands one by one, {d['fallbacks']:,} fallbacks, "
        f"{d['retries']:,} retries"
    )


def print_run(run: WrkRun, pgbench: float | None) -> None:
    ratio = run.ok_per_s / pgbench if pgbench else None
    statuses = " ".join(f"{s}:{n}" for s, n in sorted(run.statuses.items()))
    target_ratio, target_p99 = TARGETS[run.name]
    met = ratio is not None and ratio >= target_ratio and run.p99_ms <= target_p99
    print(
        f"  {run.name:<7} {run.ok_per_s:>9,.0f}/s  p50 {run.p50_ms:6.1f} ms  "
        f"p99 {run.p99_ms:6.1f} ms  max {run.max_ms:7.1f} ms  "
        f"ratio {ratio if ratio is None else f'{ratio:.2f}'}  statuses {statuses}  "
        f"(target >= {target_ratio} x, p99 <= {target_p99:.0f} ms: {'met' if met else 'NOT met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of writes not counted")
    parser.add_argument("--workers", type=int, default=None, help="passed to serve")
    parser.add_argument("--threads", type=int, default=None, help="passed to serve")
    parser.add_argument("--profile", action="store_true", help="py-spy the writes and the reads")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not urlsplit(base_url).scheme.startswith("postgres"):
        print("benchmarks.http_wrk needs DATABASE_URL=postgresql://...", file=sys.stderr)
        return 2
    if args.profile and py_spy() is None:
        print("--profile needs py-spy: pip install -e '.[profile]'", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("benchmarks.http_wrk needs wrk (make bench-http installs it)", file=sys.stderr)
        return 2
    url = fresh_database_url(base_url)
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-wrk-"))
    pgbench = pgbench_tps(url, PGBENCH_CLIENTS, args.seconds)
    print(f"pgbench 4-row insert, {PGBENCH_CLIENTS} clients: {pgbench or 0:,.0f} tx/s")
    try:
        with seeded_server(url, args, work, VOUCHERS) as (base, data, log_bytes):
            writes_data = write_data(work, data)
            if args.warmup:
                warmup = args.warmup
                run_wrk("writes", "wrk_redeem.lua", writes_data, base, warmup, args.connections)
            profiler = (
                start_profile(base, args.seconds, work / "writes.pyspy") if args.profile else None
            )
            writer_before, cpu_before = writer_counts(base), cpu_ticks()
            writes = run_wrk(
                "writes", "wrk_redeem.lua", writes_data, base, args.seconds, args.connections
            )
            writer_after, cpu_writes = writer_counts(base), (cpu_before, cpu_ticks())
            if profiler is not None:
                profiler.wait(timeout=60)
            reads_data, head = read_data(work, base, data)
            profiler = (
                start_profile(base, args.seconds, work / "reads.pyspy") if args.profile else None
            )
            cpu_before = cpu_ticks()
            reads = run_wrk(
                "reads", "wrk_read.lua", reads_data, base, args.seconds, args.connections
            )
            cpu_reads = (cpu_before, cpu_ticks())
            if profiler is not None:
                profiler.wait(timeout=60)
    finally:
        drop_database(url)
    server_5xx, joined, odd = server_problems(work / "server.log", log_bytes)
    shape = f"workers {args.workers or 'default'}, threads {args.threads or 'default'}"
    print(
        f"\nwrk -t{WRK_THREADS} -c{args.connections} -d{args.seconds}s, {shape}, PostgreSQL; "
        f"reads after the writes at position {head}"
    )
    for run, cpu in ((writes, cpu_writes), (reads, cpu_reads)):
        print_run(run, pgbench)
        print_cpu(*cpu, run.seconds)
        if run is writes:
            print_writer(writer_before, writer_after)
    if args.profile:
        print_profile(work / "writes.pyspy", "writes")
        print_profile(work / "reads.pyspy", "reads")
    problems = writes.problems() + reads.problems()
    if server_5xx:
        problems.append(f"server log: {server_5xx} answers 5xx")
    if joined:
        problems.append(f"server log: {joined} lines hold several JSON objects")
    problems += [f"server log: {line}" for line in odd[:20]]
    return report_problems(problems, work)


def report_problems(problems: list[str], work: Path) -> int:
    """Print each problem; keep ``work`` (the server log, wrk's data) if any, else remove it.
    The benchmark's exit code."""
    for problem in problems:
        print(f"  problem: {problem}")
    if problems:
        print(f"server log and wrk data kept in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
