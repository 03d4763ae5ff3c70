"""Import and match a large camt.053 on PostgreSQL: lines per second and memory.

    DATABASE_URL=postgresql://... python -m benchmarks.reconcile [--lines 100000] [--payouts 10000]

It opens a fresh ledger, makes ``--payouts`` approved payouts (a redemption each, 8 threads),
writes a camt.053.001.08 of ``--lines`` entries in memory (the first ``--payouts`` pay those
payouts by their end-to-end reference, a tenth of the rest are money in, the others pay
accounts the ledger does not know), then times one import through the same path as
``POST /v1/statements``: parse, find the candidate payouts in the views, match and store every
line and every settlement in one atomic command. The issue's target is 5,000 lines/s."""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from typing import Any

from api.reconcile import import_file
from benchmarks.common import drop_database, fresh_database_url, load, postgres_url
from ledger.application import VoucherLedger
from ledger.views import PayoutView
from projections.runner import Projector
from projections.store import open_views

THREADS = 8
TREASURY = "CN12TREASURY0000000001"


def make_payouts(
    app: VoucherLedger, vouchers: list[Any], providers: list[str], n: int
) -> list[PayoutView]:
    """``n`` approved payouts: each a fresh redemption's province subsidy, to its provider."""
    made: list[PayoutView] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        provider = providers[t % len(providers)]
        for i in range(t, n, THREADS):
            r, _ = app.redeem(
                voucher_id=vouchers[i % len(vouchers)],
                provider_id=provider,
                contract_no=f"RC-{i}",
                invoice_no=f"RI-{i}",
                service_category="testing",
                contract_amount_fen=10_000 + i % 997,
                service_date="2026-04-01",
                actor="bench",
            )
            p, _ = app.create_payout(
                payee_id=provider, source_id="prov", candidates=[(r.id, "subsidy")], actor="clerk-a"
            )
            a, _ = app.approve_payout(p.id, actor="clerk-b")
            with lock:
                made.append(a)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return made


def camt053(payouts: list[PayoutView], lines: int) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><Document '
        'xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><GrpHdr>'
        "<MsgId>BENCH</MsgId><CreDtTm>2026-04-02T00:00:00</CreDtTm></GrpHdr><Stmt><Id>BENCH</Id>"
        f"<CreDtTm>2026-04-02T00:00:00</CreDtTm><Acct><Id><IBAN>{TREASURY}</IBAN></Id></Acct>"
    ]
    signed = 0
    body = []
    for n in range(lines):
        if n < len(payouts):
            p = payouts[n]
            amount, cd, e2e, account = p.amount_fen, "DBIT", p.end_to_end_id, p.bank_account
        elif n % 10 == 0:
            amount, cd, e2e, account = 1_000 + n % 9_000, "CRDT", f"IN-{n}", f"DEBTOR-{n % 500}"
        else:
            amount, cd, e2e, account = 1_000 + n % 9_000, "DBIT", f"OUT-{n}", f"ELSEWHERE-{n}"
        signed += amount if cd == "CRDT" else -amount
        body.append(
            f'<Ntry><NtryRef>{n}</NtryRef><Amt Ccy="CNY">{amount // 100}.{amount % 100:02d}</Amt>'
            f"<CdtDbtInd>{cd}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-04-01</Dt>"
            f"</BookgDt><ValDt><Dt>2026-04-01</Dt></ValDt><AcctSvcrRef>REF{n}</AcctSvcrRef>"
            f"<BkTxCd><Prtry><Cd>TRF</Cd></Prtry></BkTxCd><NtryDtls><TxDtls><Refs>"
            f"<EndToEndId>{e2e}</EndToEndId></Refs><RltdPties><Cdtr><Pty><Nm>payee {n}</Nm>"
            f"</Pty></Cdtr><CdtrAcct><Id><Othr><Id>{account}</Id></Othr></Id></CdtrAcct>"
            f"</RltdPties></TxDtls></NtryDtls></Ntry>"
        )
    opening = 10**13

    def bal(code: str, fen: int) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">'
            f"{fen // 100}.{fen % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
            "<Dt><Dt>2026-04-01</Dt></Dt></Bal>"
        )

    parts += [bal("OPBD", opening), bal("CLBD", opening + signed), *body]
    parts.append("</Stmt></BkToCstmrStmt></Document>")
    return "".join(parts).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--payouts", type=int, default=10_000)
    args = parser.parse_args()
    url = fresh_database_url(postgres_url())
    loaded = load(url, vouchers=64)
    app = loaded.app
    for uscc in loaded.providers:
        app.change_payment_details(
            uscc, bank_account=f"ACCT-{uscc}", contact=None, reason="bench", actor="bench"
        )
    started = time.perf_counter()
    payouts = make_payouts(app, loaded.vouchers, loaded.providers, args.payouts)
    print(f"set-up: {len(payouts)} approved payouts in {time.perf_counter() - started:.1f} s")
    store = open_views(app.settings)
    Projector(app, store).catch_up()
    data = camt053(payouts, args.lines)
    print(f"statement: {args.lines} entries, {len(data) / 1e6:.1f} MB")
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    answer, _ = import_file(app, store, data, "application/xml", actor="bench")
    elapsed_s = time.perf_counter() - started
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"import and match: {answer['line_count']} lines in {elapsed_s:.1f} s = "
        f"{answer['line_count'] / elapsed_s:,.0f} lines/s (target >= 5,000); "
        f"matched {answer['matched']}, unmatched {answer['unmatched']}, "
        f"ignored {answer['ignored']}"
    )
    print(
        f"memory: process peak RSS {rss_after_kb / 1024:.0f} MB "
        f"(before the import {rss_before_kb / 1024:.0f} MB)"
    )
    store.close()
    app.close()
    drop_database(url)
    return 0 if answer["matched"] == len(payouts) else 1


if __name__ == "__main__":
    sys.exit(main())
