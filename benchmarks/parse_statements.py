"""camt.053 parse speed: a synthetic camt.053.001.08 statement built in memory, parsed by
``treasury.parse_statement`` (the one door the import uses), in entries/s and peak memory.

    .venv/bin/python -m benchmarks.parse_statements [--entries 100000] [--repeat 3]
        [--batch-every 50] [--compact] [--iter] [--tracemalloc]

No database: this measures the parser alone, the first step of a statement import (the issue's
target for import + match + store is >= 5,000 lines/s, so the parser must be well above it).

The entries look like a bank's: NtryRef, Amt with Ccy, CdtDbtInd, Sts/Cd, BookgDt, ValDt,
AcctSvcrRef, BkTxCd (Domn/Fmly/SubFmlyCd), and NtryDtls/TxDtls with Refs (AcctSvcrRef,
EndToEndId, TxId), Amt, AmtDtls (InstdAmt, TxAmt), RltdPties (Dbtr/Cdtr with Pty/Nm, their
accounts by IBAN or Othr/Id) and RmtInf/Ustrd; every ``--batch-every``-th entry is a batch
(Btch with three TxDtls). The opening and closing balances add up, which the run checks.

Each run reports the parse time (median of ``--repeat``), entries/s, MB/s and the growth of the
peak resident set during the parses (Linux ``VmHWM``, reset after the file is built; it includes
the parsed result, which holds every line). ``--tracemalloc`` adds one more run under
tracemalloc for the peak of Python allocations (slower; libxml2's own memory is not counted).
``--iter`` also times ``treasury.camt053.iter_statement_lines``, which yields lines one at a
time and keeps none of them."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import io
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from treasury import ParsedStatement, parse_statement

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
OWN_IBAN = "CN7610200000000001234567"
FIRST_DAY = dt.date(2026, 3, 1)
_BETWEEN_ELEMENTS = re.compile(r">\s+<")
NAMES = (
    "某某科技服务有限公司",
    "Zhuhai Precision Instruments Co., Ltd.",
    "省财政厅",
    "Shenzhen Testing &amp; Certification Centre",
    "北京检测认证有限公司",
    "Nova Holdings",
)


def _amount(rng: random.Random) -> tuple[int, str]:
    """A random amount in fen and its ISO 20022 text (0, 1 or 2 decimals as banks write)."""
    fen = rng.randrange(1, 50_000_000)
    shape = rng.random()
    if shape < 0.1:
        fen -= fen % 100
        return fen, str(fen // 100)
    if shape < 0.2:
        fen -= fen % 10
        return fen, f"{fen // 100}.{(fen % 100) // 10}"
    return fen, f"{fen // 100}.{fen % 100:02d}"


def _party_account(rng: random.Random, n: int) -> str:
    if rng.random() < 0.7:
        return f"<Id><IBAN>CN{n % 97:02d}6222{n:016d}</IBAN></Id>"
    return f"<Id><Othr><Id>6222{n:015d}</Id></Othr></Id>"


def _transaction(rng: random.Random, n: int, k: int, fen: int, text: str, credit: bool) -> str:
    other = "Dbtr" if credit else "Cdtr"
    name = NAMES[(n + k) % len(NAMES)]
    return f"""
        <TxDtls>
          <Refs>
            <AcctSvcrRef>TX{n:09d}{k}</AcctSvcrRef>
            <EndToEndId>PO-{n:08X}-{k}</EndToEndId>
            <TxId>T{n:010d}{k}</TxId>
          </Refs>
          <Amt Ccy="CNY">{text}</Amt>
          <CdtDbtInd>{"CRDT" if credit else "DBIT"}</CdtDbtInd>
          <AmtDtls>
            <InstdAmt><Amt Ccy="CNY">{text}</Amt></InstdAmt>
            <TxAmt><Amt Ccy="CNY">{text}</Amt></TxAmt>
          </AmtDtls>
          <RltdPties>
            <{other}><Pty><Nm>{name}</Nm></Pty></{other}>
            <{other}Acct>{_party_account(rng, n * 7 + k)}</{other}Acct>
          </RltdPties>
          <RmtInf>
            <Ustrd>Voucher subsidy {fen % 9973} batch {n // 1000}</Ustrd>
          </RmtInf>
        </TxDtls>"""


def _entry(rng: random.Random, n: int, batch: bool) -> tuple[int, str]:
    """One ``<Ntry>`` and its signed amount in fen."""
    credit = rng.random() < 0.3
    day = (FIRST_DAY + dt.timedelta(days=n % 28)).isoformat()
    if batch:
        parts = [_amount(rng) for _ in range(3)]
        fen = sum(p[0] for p in parts)
        text = f"{fen // 100}.{fen % 100:02d}"
        details = f"""
        <Btch>
          <NbOfTxs>3</NbOfTxs>
          <TtlAmt Ccy="CNY">{text}</TtlAmt>
          <CdtDbtInd>{"CRDT" if credit else "DBIT"}</CdtDbtInd>
        </Btch>""" + "".join(
            _transaction(rng, n, k, f, t, credit) for k, (f, t) in enumerate(parts)
        )
    else:
        fen, text = _amount(rng)
        details = _transaction(rng, n, 0, fen, text, credit)
    entry = f"""
      <Ntry>
        <NtryRef>{n:010d}</NtryRef>
        <Amt Ccy="CNY">{text}</Amt>
        <CdtDbtInd>{"CRDT" if credit else "DBIT"}</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>{day}</Dt></BookgDt>
        <ValDt><Dt>{day}</Dt></ValDt>
        <AcctSvcrRef>BK{n // 3:09d}</AcctSvcrRef>
        <BkTxCd>
          <Domn>
            <Cd>PMNT</Cd>
            <Fmly><Cd>{"RCDT" if credit else "ICDT"}</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly>
          </Domn>
        </BkTxCd>
        <NtryDtls>{details}
        </NtryDtls>
      </Ntry>"""
    return (fen if credit else -fen), entry


def _balance(code: str, fen: int, day: dt.date) -> str:
    indicator = "CRDT" if fen >= 0 else "DBIT"
    return f"""
      <Bal>
        <Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>
        <Amt Ccy="CNY">{abs(fen) // 100}.{abs(fen) % 100:02d}</Amt>
        <CdtDbtInd>{indicator}</CdtDbtInd>
        <Dt><Dt>{day.isoformat()}</Dt></Dt>
      </Bal>"""


def synthetic_camt053(
    entries: int, *, batch_every: int = 50, compact: bool = False, seed: int = 20260401
) -> bytes:
    """A camt.053.001.08 message with one statement of ``entries`` entries whose opening and
    closing balances add up (deterministic for a given seed); indented as most banks write it
    (about 1.3 kB an entry), or without whitespace between elements (``compact``, 0.8 kB)."""
    rng = random.Random(seed)
    body = io.StringIO()
    total = 0
    for n in range(entries):
        signed, entry = _entry(rng, n, batch_every > 0 and n % batch_every == batch_every - 1)
        total += signed
        body.write(_BETWEEN_ELEMENTS.sub("><", entry) if compact else entry)
    opening = 10**12
    last = FIRST_DAY + dt.timedelta(days=27)
    head = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}">
  <BkToCstmrStmt>
    <GrpHdr>
      <MsgId>BENCH-{entries}</MsgId>
      <CreDtTm>2026-04-01T06:00:00+08:00</CreDtTm>
    </GrpHdr>
    <Stmt>
      <Id>STMT-{entries}</Id>
      <ElctrncSeqNb>1</ElctrncSeqNb>
      <CreDtTm>2026-04-01T06:00:00+08:00</CreDtTm>
      <FrToDt>
        <FrDtTm>{FIRST_DAY.isoformat()}T00:00:00+08:00</FrDtTm>
        <ToDtTm>{last.isoformat()}T23:59:59+08:00</ToDtTm>
      </FrToDt>
      <Acct>
        <Id><IBAN>{OWN_IBAN}</IBAN></Id>
        <Ccy>CNY</Ccy>
        <Svcr><FinInstnId><BICFI>BKCHCNBJ</BICFI></FinInstnId></Svcr>
      </Acct>{_balance("OPBD", opening, FIRST_DAY)}{_balance("CLBD", opening + total, last)}"""
    tail = """
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""
    if compact:
        head, tail = _BETWEEN_ELEMENTS.sub("><", head), _BETWEEN_ELEMENTS.sub("><", tail)
    return (head + body.getvalue() + tail).encode("utf-8")


def _peak_rss_reset() -> bool:
    """Reset the process's peak resident set (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int | None:
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    except OSError:
        pass
    return None


def _rss_kib() -> int | None:
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    except OSError:
        pass
    return None


def _timed(run: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    times: list[float] = []
    result: object = None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times, result


def _digest(parsed: ParsedStatement) -> str:
    """A short fingerprint of every line's key and amount (compare two implementations)."""
    h = hashlib.sha256()
    for line in parsed.lines:
        h.update(f"{line.key}{line.amount_fen}{line.credit_debit}".encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-every", type=int, default=50, help="0: no batch entries")
    parser.add_argument("--compact", action="store_true", help="no whitespace between tags")
    parser.add_argument("--iter", action="store_true", help="also time iter_statement_lines")
    parser.add_argument("--tracemalloc", action="store_true", help="peak Python allocations")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data = synthetic_camt053(args.entries, batch_every=args.batch_every, compact=args.compact)
    built = time.perf_counter() - start
    mb = len(data) / 1e6
    print(f"file: {args.entries:,} entries, {mb:.1f} MB camt.053.001.08 (built in {built:.1f} s)")
    limits = {"max_bytes": max(len(data), 1), "max_lines": max(args.entries, 1)}

    if args.iter:
        from treasury.camt053 import iter_statement_lines

        def consume() -> int:
            return sum(1 for _ in iter_statement_lines(data, **limits))

        rss_before = _rss_kib()
        resettable = _peak_rss_reset()
        times, count = _timed(consume, args.repeat)
        peak = _peak_rss_kib()
        median = statistics.median(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"iter_statement_lines: median {median:.2f} s of [{runs}] s ({count} lines)")
        print(f"  {args.entries / median:,.0f} entries/s, {mb / median:.1f} MB/s")
        if resettable and peak is not None and rss_before is not None:
            growth = max(0, peak - rss_before) / 1024
            print(f"  peak RSS {peak / 1024:.0f} MiB, {growth:+.0f} MiB (no line is kept)")

    rss_before = _rss_kib()
    resettable = _peak_rss_reset()
    times, result = _timed(lambda: parse_statement(data, "application/xml", **limits), args.repeat)
    peak = _peak_rss_kib()
    assert isinstance(result, ParsedStatement)
    statement = result.statements[0]
    if result.line_count != args.entries or statement.balances_add_up is not True:
        print("error: the parsed statement does not match the file", file=sys.stderr)
        return 1
    median = statistics.median(times)
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"parse_statement: median {median:.2f} s of [{runs}] s")
    print(f"  {args.entries / median:,.0f} entries/s, {mb / median:.1f} MB/s")
    print(f"  lines digest {_digest(result)}, balances add up: {statement.balances_add_up}")
    if resettable and peak is not None and rss_before is not None:
        growth = (peak - rss_before) / 1024
        print(f"  peak RSS {peak / 1024:.0f} MiB, {growth:+.0f} MiB over the process holding")
        print("  the file before parsing (the result holds every line)")
    del result, statement

    if args.tracemalloc:
        gc.collect()
        tracemalloc.start()
        parse_statement(data, "application/xml", **limits)
        _current, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"tracemalloc peak of one parse: {traced_peak / 2**20:.0f} MiB of Python objects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
