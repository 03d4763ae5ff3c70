"""A scenario's figures from locust's own statistics, as plain JSON: per endpoint the requests,
requests per second, p50/p95/p99/max in ms and the failures by status and problem slug; and the
same per time slice (the latency and throughput over time the HTML page draws).

Percentiles are locust's (``StatsEntry.get_response_time_percentile``): response times are kept
rounded to two significant digits above 100 ms, so a p99 of 1,234 ms reads 1,200."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from locust.exception import CatchResponseError
from locust.stats import RequestStats, StatsEntry, StatsError

PERCENTILES = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}
_OUTCOME = re.compile(r"^(\d{1,3}) (\S+)$")  # what load_tests.outcomes names a failure


def endpoint_key(method: str, name: str) -> str:
    return f"{method} {name}"


def outcome_name(error: Any) -> str:
    """The failure's name as the user classes gave it (``"409 duplicate-claim"``), or, for an
    exception locust caught itself, ``"0 <exception class>"``."""
    if isinstance(error, CatchResponseError) and error.args:
        return str(error.args[0])
    if isinstance(error, str):
        inner = re.fullmatch(r"CatchResponseError\('(.*)'\)", error)
        return inner.group(1) if inner else error
    return f"0 {type(error).__name__}"


def split_outcome(outcome: str) -> tuple[int, str]:
    """``"409 duplicate-claim"`` -> ``(409, "duplicate-claim")``; anything else is status 0."""
    match = _OUTCOME.match(outcome)
    return (int(match.group(1)), match.group(2)) if match else (0, outcome)


def failures_by_endpoint(errors: Mapping[str, StatsError]) -> dict[str, dict[str, int]]:
    """``{"POST /v1/redemptions": {"409 duplicate-claim": 3}}`` from locust's error records."""
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for error in errors.values():
        outcomes = found[endpoint_key(error.method, error.name)]
        name = outcome_name(error.error)
        outcomes[name] = outcomes.get(name, 0) + error.occurrences
    return dict(found)


def figures(entry: StatsEntry, seconds: float) -> dict[str, Any]:
    """Requests, failures, rate over ``seconds`` and the latency percentiles of one entry."""
    answered = entry.num_requests - entry.num_none_requests
    result: dict[str, Any] = {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "per_s": round(entry.num_requests / seconds, 2) if seconds > 0 else 0.0,
        "ok_per_s": (
            round((entry.num_requests - entry.num_failures) / seconds, 2) if seconds > 0 else 0.0
        ),
    }
    for label, fraction in PERCENTILES.items():
        result[label] = entry.get_response_time_percentile(fraction) if answered else None
    result["max_ms"] = round(entry.max_response_time) if answered else None
    return result


def _entries(stats: RequestStats) -> list[StatsEntry]:
    return sorted(
        (e for e in stats.entries.values() if e.num_requests or e.num_failures),
        key=lambda e: (e.name, e.method or ""),
    )


def timeline(
    slices: Mapping[int, RequestStats], slice_s: float, duration_s: float
) -> list[dict[str, Any]]:
    """One row per slice of ``slice_s`` seconds from the start (the last one may be shorter):
    its figures over all requests and per endpoint."""
    rows = []
    for index in sorted(slices):
        start_s = index * slice_s
        length_s = max(min(slice_s, duration_s - start_s), 1e-9)
        stats = slices[index]
        rows.append(
            {
                "t_s": round(start_s, 3),
                "seconds": round(length_s, 3),
                "all": figures(stats.total, length_s),
                "endpoints": {
                    endpoint_key(e.method or "", e.name): figures(e, length_s)
                    for e in _entries(stats)
                },
            }
        )
    return rows


def scenario_summary(
    name: str,
    users: dict[str, int],
    stats: RequestStats,
    slices: Mapping[int, RequestStats],
    slice_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """Everything the JSON file and the HTML page say about one scenario. ``duration_s`` is
    how long the users ran (the rates' denominator); ``users`` counts them by class."""
    assert duration_s > 0 and slice_s > 0
    failures = failures_by_endpoint(stats.errors)
    endpoints = []
    for entry in _entries(stats):
        key = endpoint_key(entry.method or "", entry.name)
        endpoints.append(
            {
                "endpoint": key,
                "method": entry.method,
                "name": entry.name,
                **figures(entry, duration_s),
                "failures_by_outcome": dict(sorted(failures.get(key, {}).items())),
            }
        )
    by_outcome: dict[str, int] = defaultdict(int)
    for outcomes in failures.values():
        for outcome, n in outcomes.items():
            by_outcome[outcome] += n
    return {
        "scenario": name,
        "users": users,
        "duration_s": round(duration_s, 3),
        "slice_s": slice_s,
        "total": figures(stats.total, duration_s),
        "endpoints": endpoints,
        "failures_by_outcome": dict(sorted(by_outcome.items())),
        "failures_by_status": _by_status(by_outcome),
        "timeline": timeline(slices, slice_s, duration_s),
    }


def _by_status(by_outcome: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{"409": {"duplicate-claim": 3}}``: the same failures grouped by status."""
    grouped: dict[str, dict[str, int]] = defaultdict(dict)
    for outcome, n in sorted(by_outcome.items()):
        status, slug = split_outcome(outcome)
        grouped[str(status)][slug] = grouped[str(status)].get(slug, 0) + n
    return dict(grouped)
