"""A long run at half the measured maximum rate: does memory, latency or the views' lag creep?

    DATABASE_URL=postgresql://... python -m benchmarks.soak [--minutes 10] [--max-rate R]
        [--measure-seconds 20] [--sample-s 5] [--window-start-s 120] [--vouchers 100000] ...

Starts and seeds the server as ``benchmarks.load`` does. Unless ``--max-rate`` gives it, measures
the maximum first: the providers' scenario back to back for ``--measure-seconds``, its answered
requests a second. Then runs the user groups of ``--classes`` (all but auditors and inspectors,
whose whole-log reads grow with the log) together for ``--minutes``, the provider users
paced to half that rate in all (the others at their own think times), and every ``--sample-s``
seconds samples the RSS of every process of the server (psutil: the serve process and all under
it, the projector included) and ``GET /v1/health`` (the views' ``behind_ms``, and the audit
chain's); the p99 latency comes from locust's time slices of the same length.

From ``--window-start-s`` (the 2nd minute) to the end it fits a line to each series and checks:
each process's RSS, and their sum, grows by at most 10%, the p99 by at most 20%, and the views
stay less than 1 s behind in every sample. Prints each slope (per minute) and verdict, writes
``soak.json`` and ``soak.html`` into a folder of ``--out``, and exits 1 if a check failed."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from benchmarks.load import (
    ALL_CLASSES,
    ROOT,
    SCENARIO_FILE,
    Scenario,
    Served,
    add_server_arguments,
    postgres_or_exit,
    rss_mb,
    run_locust,
    served_and_seeded,
)
from load_tests.report_html import Series, line_chart, page, table

RSS_GROWTH_MAX, P99_GROWTH_MAX, LAG_MAX_MS = 0.10, 0.20, 1000
# Auditors and inspectors verify the whole chain and pull the year's report: their cost grows
# with the log by design (a verify recomputes every hash), so their p99 grows over any soak;
# docs/SCALING.md sends them to a standby. The soak's p99 check is of the steady groups.
WHOLE_LOG_CLASSES = ("AuditorUser", "InspectorUser")
MEASURE_USERS = 16  # provider users back to back, as in benchmarks.load's providers scenario
SOAK_USERS = 36  # every class by its weight: about 22 provider users, enough to keep the pace
REDEEM = "POST /v1/redemptions"


@dataclass(frozen=True)
class Fit:
    """A least-squares line through (t_s, value) points."""

    slope_per_s: float
    intercept: float
    start_s: float
    end_s: float

    def at(self, t_s: float) -> float:
        return self.intercept + self.slope_per_s * t_s

    @property
    def growth(self) -> float:
        """How much the fitted value grew from the window's start to its end, as a fraction."""
        start = self.at(self.start_s)
        return (self.at(self.end_s) - start) / start if start > 0 else float("inf")


def fit(points: list[tuple[float, float]]) -> Fit | None:
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t
    return Fit(slope, mean_v - slope * mean_t, points[0][0], points[-1][0])


def health(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/v1/health", timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
        return found


def sample(served: Served) -> dict[str, Any]:
    """One sample: wall time, RSS by process (MB) and the lag /v1/health reports."""
    taken = {"unix": time.time(), "rss_mb": rss_mb(served.server)}
    try:
        answer = health(served.base)
        for part in ("projections", "audit_chain"):
            lag = answer.get(part) or {}
            taken[f"{part}_behind_ms"] = lag.get("behind_ms")
            taken[f"{part}_behind_events"] = lag.get("behind_events")
    except OSError as e:
        taken["health_error"] = str(e)
    return taken


def soak_locust(
    served: Served, args: argparse.Namespace, rate: float, share: tuple[int, int]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The user groups of ``--classes`` at once for the soak's length, sampled every
    ``--sample-s``."""
    seconds = int(args.minutes * 60)
    report_path = served.work / "soak-locust.json"
    users = SOAK_USERS
    command = [
        sys.executable, "-m", "locust", "-f", str(SCENARIO_FILE), "--headless",
        "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--host", served.base,
        "--only-summary", "--stop-timeout", "10", *args.classes.split(","),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LEDGER_LOAD_SEED": str(served.seed_path),
        "LEDGER_LOAD_REPORT": str(report_path),
        "LEDGER_LOAD_SCENARIO": "soak",
        "LEDGER_LOAD_SLICE_S": str(args.sample_s),
        "LEDGER_LOAD_VOUCHERS": f"{share[0]}:{share[1]}",
        "LEDGER_LOAD_PROVIDER_RATE": f"{rate:.3f}",
    }
    samples = []
    with (served.work / "soak.locust.log").open("wb") as out:
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        deadline, next_at, minutes_told = started + seconds + 180, started, 0
        while child.poll() is None and time.monotonic() < deadline:
            samples.append(sample(served))
            elapsed_min = int((time.monotonic() - started) // 60)
            if elapsed_min > minutes_told:
                minutes_told = elapsed_min
                print(f"  soak: {elapsed_min} of {args.minutes:g} min", flush=True)
            next_at += args.sample_s  # on a fixed beat, however long the sample took
            time.sleep(max(0.0, next_at - time.monotonic()))
        if child.poll() is None:
            child.kill()
        child.wait()
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return report, samples


def series(report: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each measure as (t_s since locust started, value) points."""
    started = report["started_at_unix"]
    found: dict[str, list[Any]] = {"p99_ms": [], f"p99_ms {REDEEM}": []}
    found["projections_behind_ms"], found["audit_chain_behind_ms"] = [], []
    for row in report["timeline"]:
        if row["seconds"] < report["slice_s"] / 2:
            continue  # the last slice, cut short: too few requests for a p99
        redeem = row["endpoints"].get(REDEEM, {}).get("p99_ms")
        for name, value in (("p99_ms", row["all"]["p99_ms"]), (f"p99_ms {REDEEM}", redeem)):
            if value is not None:
                found[name].append((row["t_s"], float(value)))
    for s in samples:
        t_s = s["unix"] - started
        if t_s < 0:
            continue
        for label, mb in s["rss_mb"].items():
            found.setdefault(f"rss_mb {label}", []).append((t_s, mb))
        found.setdefault("rss_mb total", []).append((t_s, sum(s["rss_mb"].values())))
        for part in ("projections", "audit_chain"):
            if s.get(f"{part}_behind_ms") is not None:
                found[f"{part}_behind_ms"].append((t_s, float(s[f"{part}_behind_ms"])))
    return found


def verdicts(found: dict[str, list[Any]], window_start_s: float) -> list[dict[str, Any]]:
    """One check per RSS series, p99 and the views' lag, over the window."""
    checks = []
    for name, points in found.items():
        window = [(t, v) for t, v in points if t >= window_start_s]
        line = fit(window)
        row: dict[str, Any] = {
            "measure": name,
            "points": len(window),
            "slope_per_min": round(line.slope_per_s * 60, 3) if line else None,
            "first": round(window[0][1], 1) if window else None,
            "last": round(window[-1][1], 1) if window else None,
            "max": round(max(v for _, v in window), 1) if window else None,
        }
        if name.startswith("rss_mb") or name == "p99_ms":
            limit = RSS_GROWTH_MAX if name.startswith("rss_mb") else P99_GROWTH_MAX
            row["growth"] = round(line.growth, 4) if line else None
            row["limit"] = f"growth <= {limit:.0%}"
            row["ok"] = line is not None and line.growth <= limit
        elif name == "projections_behind_ms":
            row["limit"] = f"every sample < {LAG_MAX_MS} ms"
            row["ok"] = bool(window) and all(v < LAG_MAX_MS for _, v in window)
        checks.append(row)
    return checks


CHECK_COLUMNS = ("measure", "points", "slope/min", "first", "last", "max", "growth", "limit")


def check_row(c: dict[str, Any]) -> list[Any]:
    """A check as the table's cells; measures that are only reported have no limit."""
    verdict = "(reported)" if "ok" not in c else "ok" if c["ok"] else "FAILED"
    growth = f"{c['growth']:.1%}" if c.get("growth") is not None else ""
    cells = (c["slope_per_min"], c["first"], c["last"], c["max"])
    return [c["measure"], c["points"], *("" if v is None else v for v in cells), growth,
            c.get("limit", ""), verdict]  # fmt: skip


def render_soak(soak: dict[str, Any]) -> str:
    found = soak["series"]
    rss = [Series(k.removeprefix("rss_mb "), v) for k, v in found.items() if k.startswith("rss")]
    lags = [Series(k, found[k]) for k in ("projections_behind_ms", "audit_chain_behind_ms")]
    p99 = [Series("all requests", found["p99_ms"]), Series(REDEEM, found[f"p99_ms {REDEEM}"])]
    intro = (
        f"<p>{soak['minutes']:g} min at {soak['provider_rate_per_s']:.1f} provider task runs a "
        f"second (half of the {soak['max_rate_per_s']:.1f}/s measured); checks from "
        f"{soak['window_start_s']:g} s on.</p>"
    )
    body = (
        intro
        + table((*CHECK_COLUMNS, "verdict"), [check_row(c) for c in soak["checks"]])
        + line_chart("rss", "RSS of every server process (MB)", rss, "s since start", "MB")
        + line_chart("p99", "p99 latency per slice", p99, "s since start", "ms")
        + line_chart("lag", "views and audit chain behind (ms)", lags, "s since start", "ms")
    )
    return page("voucher-ledger soak run", body)


def measure_max(served: Served, args: argparse.Namespace, share: tuple[int, int]) -> float:
    scenario = Scenario("measure-max", ("ProviderUser",), MEASURE_USERS)
    print(f"measuring the maximum: providers back to back for {args.measure_seconds} s")
    report = run_locust(served, scenario, args.measure_seconds, args.sample_s, share)
    if report is None:
        raise RuntimeError("the measuring run wrote no report")
    rate = float(report["total"]["ok_per_s"])
    print(f"  maximum: {rate:.1f} answered requests/s (p99 {report['total']['p99_ms']} ms)")
    return rate


def print_checks(checks: list[dict[str, Any]]) -> None:
    widths = (34, 6, 10, 9, 9, 9, 8, 22, 10)
    header = [*CHECK_COLUMNS, "verdict"]
    print("\n" + " ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for c in checks:
        cells = check_row(c)
        cells[0] = str(cells[0])[:34]
        print(" ".join(f"{v!s:>{w}}" for v, w in zip(cells, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--classes",
        default=",".join(c for c in ALL_CLASSES if c not in WHOLE_LOG_CLASSES),
        help="user classes of load_tests/scenarios.py (comma list; default: all but the audit "
        f"side; all: {','.join(ALL_CLASSES)})",
    )
    parser.add_argument(
        "--max-rate", type=float, default=None, help="provider task runs/s; no measuring"
    )
    parser.add_argument("--measure-seconds", type=int, default=20)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--window-start-s", type=float, default=120.0)
    add_server_arguments(parser)
    args = parser.parse_args()
    postgres_or_exit()
    if args.minutes * 60 < args.window_start_s + 6 * args.sample_s:
        sys.exit("--minutes is too short for the window the checks look at (--window-start-s)")
    out = args.out / ("soak-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True)
    with served_and_seeded(args, out) as served:
        first, last = len(served.data["redemptions"]), len(served.data["vouchers"])
        measure_share = (first, first + (last - first) // 10)
        max_rate = args.max_rate or measure_max(served, args, measure_share)
        rate = max_rate / 2
        print(f"soak: {args.minutes:g} min, provider users paced at {rate:.1f}/s in all")
        report, samples = soak_locust(served, args, rate, (measure_share[1], last))
        served.seed_path.unlink()
    if report is None:
        print("the soak's locust wrote no report", file=sys.stderr)
        return 1
    found = series(report, samples)
    checks = verdicts(found, args.window_start_s)
    soak = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "max_rate_per_s": max_rate,
        "provider_rate_per_s": rate,
        "window_start_s": args.window_start_s,
        "sizes": served.data["sizes"],
        "checks": checks,
        "series": found,
        "samples": samples,
        "locust": {k: report[k] for k in ("total", "endpoints", "failures_by_outcome", "users")},
    }
    (out / "soak.json").write_text(json.dumps(soak, indent=1))
    (out / "soak.html").write_text(render_soak(soak), encoding="utf-8")
    total = report["total"]
    print(
        f"\nsoak traffic: {total['per_s']:.1f} requests/s, p50 {total['p50_ms']} ms, "
        f"p99 {total['p99_ms']} ms, {total['failures']} failures"
    )
    redeem = next((e for e in report["endpoints"] if e["endpoint"] == REDEEM), None)
    if redeem:
        print(
            f"{REDEEM}: {redeem['ok_per_s']:.1f}/s answered 201 (provider users paced at "
            f"{rate:.1f} task runs/s, 20 of every 27 a claim), p99 {redeem['p99_ms']} ms"
        )
    for outcome, n in report["failures_by_outcome"].items():
        print(f"  failure {outcome}: {n}")
    print_checks(checks)
    print(f"\nsoak: {out / 'soak.json'}\n      {out / 'soak.html'}")
    failed = [c["measure"] for c in checks if c.get("ok") is False]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
