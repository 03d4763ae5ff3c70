"""Projection speed on PostgreSQL: catch-up from a log of at least 200,000 events, and the lag of
a projector process under a steady stream of redemptions.

    DATABASE_URL=postgresql://... python -m benchmarks.projections [--events 200000] [--rate 1000]

1. Catch-up: fills a fresh ledger with redemptions (5 events each) until the log holds
   ``--events``, then rebuilds the views from position 0 in this process and prints events/s.
2. Lag: a ``voucher-ledger project`` process follows the log (as under ``voucher-ledger serve``)
   while this process redeems at ``--rate`` per second for ``--seconds``; the lag (positions and
   seconds behind the log's head) is sampled every 100 ms, once the process has brought the views
   and the audit chain up to the head. Targets: >= 20,000 events/s, < 1 s."""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import threading
import time
from typing import Any
from uuid import UUID

from audit.store import open_audit
from benchmarks.common import (
    Loaded,
    drop_database,
    fresh_database_url,
    load,
    postgres_url,
    redeem_one,
)
from ledger.application import VoucherLedger
from projections.runner import Projector, lag
from projections.store import open_views

FILL_THREADS = 8
PACED_THREADS = 16
SAMPLE_S = 0.1


def fill(app: VoucherLedger, vouchers: list[UUID], providers: list[str], events: int) -> int:
    """Redeem from several threads until the log holds ``events``; returns the head."""
    counter = itertools.count()

    def worker() -> None:
        while (app.recorder.max_notification_id() or 0) < events:
            for _ in range(200):
                redeem_one(app, vouchers, providers, next(counter))

    pool = [threading.Thread(target=worker) for _ in range(FILL_THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return app.recorder.max_notification_id() or 0


def catch_up(app: VoucherLedger) -> tuple[int, float]:
    store = open_views(app.settings)
    try:
        store.reset()
        started = time.perf_counter()
        done = Projector(app, store).catch_up()
        return done, time.perf_counter() - started
    finally:
        store.close()


def paced(
    app: VoucherLedger,
    vouchers: list[UUID],
    providers: list[str],
    rate: int,
    seconds: float,
    first: int,
) -> int:
    """Redeem at ``rate`` per second (open loop: each thread keeps its own schedule)."""
    counter = itertools.count(first)
    interval_s = PACED_THREADS / rate
    stop_at = time.perf_counter() + seconds
    done = [0] * PACED_THREADS

    def worker(t: int) -> None:
        due = time.perf_counter() + t * interval_s / PACED_THREADS
        while due < stop_at:
            pause_s = due - time.perf_counter()
            if pause_s > 0:
                time.sleep(pause_s)
            redeem_one(app, vouchers, providers, next(counter))
            done[t] += 1
            due += interval_s

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(PACED_THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done)


def measure_lag(app: VoucherLedger, url: str, args: argparse.Namespace, loaded: Loaded) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    projector = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project"], env=env, stderr=subprocess.DEVNULL
    )
    store = open_views(app.settings)
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            now = lag(app, store)
            samples.append((now.behind_events, now.behind_s))

    chain = open_audit(app.settings)
    try:
        # Let it catch up with the fill first: the views, and the audit chain, which the fill
        # left unbuilt (its catch-up speed is measured by benchmarks/audit.py).
        head = app.recorder.max_notification_id() or 0
        while store.position() < head or chain.position() < head:
            time.sleep(0.1)
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        done = paced(app, loaded.vouchers, loaded.providers, args.rate, args.seconds, 10**9)
        elapsed_s = time.perf_counter() - started
        stop.set()
        sampler.join()
    finally:
        projector.terminate()
        projector.wait(timeout=10)
        store.close()
        chain.close()
    seconds = sorted(s for _, s in samples)
    events = sorted(e for e, _ in samples)

    def pct(values: list[Any], p: float) -> Any:
        return values[min(len(values) - 1, int(len(values) * p))] if values else 0

    print(f"steady load: {done / elapsed_s:.0f} redemptions/s for {elapsed_s:.0f} s")
    print(
        f"lag seconds  p50 {pct(seconds, 0.5):.3f}  p99 {pct(seconds, 0.99):.3f}  "
        f"max {max(seconds, default=0):.3f}  (target < 1)"
    )
    print(
        f"lag events   p50 {pct(events, 0.5)}  p99 {pct(events, 0.99)}  "
        f"max {max(events, default=0)}  ({len(samples)} samples)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=1000, help="redemptions/s during the lag run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the lag run")
    args = parser.parse_args()
    url = fresh_database_url(postgres_url())
    loaded = load(url, vouchers=64)
    app = loaded.app
    try:
        started = time.perf_counter()
        head = fill(app, loaded.vouchers, loaded.providers, args.events)
        print(f"filled the log: {head} events in {time.perf_counter() - started:.0f} s")
        done, elapsed_s = catch_up(app)
        print(
            f"catch-up: {done} events in {elapsed_s:.1f} s = {done / elapsed_s:,.0f} events/s "
            "(target >= 20,000)"
        )
        measure_lag(app, url, args, loaded)
    finally:
        app.close()
        drop_database(url)


if __name__ == "__main__":
    main()
