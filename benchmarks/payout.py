"""A hot provider's payout: how long its creation and approval hold the writer's thread.

    DATABASE_URL=postgresql://... python -m benchmarks.payout [--lines 1500]

Redeems ``--lines`` small claims of one provider (``benchmarks.common``'s programme), then
opens a second ledger that has kept nothing, as after a restart or once the claims have left
the writer's cache, and times ``create_payout`` of all of them and its ``approve_payout``.
Every other write of the process waits while either runs (ledger/writer.py), so their times
are a stall of every redemption behind them."""

from __future__ import annotations

import argparse
import time

from benchmarks.common import (
    TODAY,
    drop_database,
    fresh_database_url,
    load,
    postgres_url,
    redeem_one,
)
from ledger.application import VoucherLedger
from ledger.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1500)
    args = parser.parse_args()
    url = fresh_database_url(postgres_url())
    try:
        loaded = load(url, vouchers=20, providers=1)
        payee = loaded.providers[0]
        candidates = [
            (redeem_one(loaded.app, loaded.vouchers, [payee], n, "PAY-").id, "subsidy")
            for n in range(args.lines)
        ]
        loaded.app.change_payment_details(
            payee, bank_account="6222000011112222", contact=None, reason="bench", actor="bench"
        )
        loaded.app.close()
        cold = VoucherLedger(Settings(database_url=url), clock=lambda: TODAY)
        try:
            started = time.perf_counter()
            payout, _ = cold.create_payout(
                payee_id=payee, source_id="prov", candidates=candidates, actor="clerk-1"
            )
            made_s = time.perf_counter() - started
            started = time.perf_counter()
            cold.approve_payout(payout.id, actor="clerk-2")
            approved_s = time.perf_counter() - started
        finally:
            cold.close()
    finally:
        drop_database(url)
    print(
        f"payout of {len(payout.lines)} lines: created in {made_s:.2f} s, "
        f"approved in {approved_s:.2f} s (a ledger that kept nothing)"
    )


if __name__ == "__main__":
    main()
