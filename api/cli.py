"""``voucher-ledger``: the command line (API_CONTRACT.md §1)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from api import memory_probe
from api.parent import die_with_parent
from audit import report_render
from audit.service import Auditor
from ledger.application import VoucherLedger
from ledger.demo import PROGRAMME_A, PROGRAMME_B, demo_secret, load_demo
from ledger.errors import LedgerError
from ledger.money import yuan
from ledger.settings import Settings
from projections.runner import PAGE_SIZE, Projector
from projections.store import open_views


def print_summary(app: VoucherLedger, source_ids: Sequence[str]) -> None:
    header = (
        f"{'funding source':<16} {'appropriation':>16} {'committed':>16} "
        f"{'recovered':>12} {'available':>16}"
    )
    print(header)
    print("-" * len(header))
    for source_id in source_ids:
        s = app.funding_source(source_id)
        print(
            f"{s.id:<16} {yuan(s.appropriation_fen):>16} {yuan(s.committed_fen):>16} "
            f"{yuan(s.recovered_fen):>12} {yuan(s.available_fen):>16}"
        )


def cmd_demo(app: VoucherLedger, _: argparse.Namespace) -> int:
    from ledger.demo import CITY, COUNTY, PROVINCE

    result = load_demo(app, demo_secret(app.settings.demo_secret_path))
    print("demo data loaded" if result.loaded else "demo data already present: nothing changed")
    r = app.redemption(result.worked_redemption_id)
    print(f"\nworked example (API_CONTRACT.md §5): redemption {r.id}")
    print(
        f"  contract {yuan(r.contract_amount_fen)} yuan -> subsidy {yuan(r.subsidy_fen)} "
        f"({', '.join(f'{s} {yuan(a)}' for s, a in r.splits)}), enterprise pays "
        f"{yuan(r.enterprise_pays_fen)}, provider bonus {yuan(r.post_subsidy_fen)}"
    )
    print(f"  programmes: {PROGRAMME_A}, {PROGRAMME_B}\n")
    print_summary(app, [PROVINCE, CITY, COUNTY])
    print("\ndemo tokens, one per role (the same each time; `serve` prints the admin's):")
    for role, token in result.tokens.items():
        print(f"  {role:<16} {token}")
    print(
        "\ntry: curl -s -H 'Authorization: Bearer <auditor token>' "
        "http://127.0.0.1:8080/v1/funding-sources/city-2026"
    )
    return 0


def cmd_expire(app: VoucherLedger, args: argparse.Namespace) -> int:
    expired = app.expire_vouchers(args.as_of, actor=args.actor)
    print(f"expired {len(expired)} voucher(s)")
    return 0


def cmd_project(app: VoucherLedger, args: argparse.Namespace) -> int:
    """Follow the log into the views and the audit chain until SIGTERM or SIGINT (``--once``:
    catch up, then exit). ``--only`` follows one of them: ``serve`` runs one process for each,
    so that either can die and be started again while the other goes on."""
    die_with_parent()
    memory_probe.install()
    store = open_views(app.settings)
    projector = Projector(app, store, page_size=args.page_size)
    auditor = Auditor(app, store, embedded=False)
    chain = auditor.chain_projector()
    views, chained = args.only in (None, "views"), args.only in (None, "audit-chain")
    try:
        if views and chained and not args.once:
            # The chain catches up in its own thread: the views must not wait for it (a log
            # written before the audit chain existed takes a while to chain).
            chain.start("audit-chain")
        if views:
            with progress_bar("catching up") as bar:
                projector.catch_up(bar)
            print(f"views at position {projector.position or 0}", flush=True)
        if args.once:
            if chained:
                chain.catch_up()
            return 0
        follower = projector if views else chain
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: follower.stopping.set())
        follower.run()
    finally:
        chain.stop()
        auditor.close()
        store.close()
    return 0


def cmd_verify(app: VoucherLedger, _: argparse.Namespace) -> int:
    """Bring the chain up to the log's head, then recompute it from the stored events."""
    with audit_of(app) as auditor:
        auditor.chain_projector().catch_up()
        with progress_bar("verifying") as bar:
            verdict = auditor.verify(bar)
    print(json.dumps(verdict.as_dict()))
    if not verdict.ok:
        print(
            f"TAMPERED at position {verdict.first_bad_position}: {verdict.detail}", file=sys.stderr
        )
        return 1
    print(f"intact: {verdict.events_checked} events, head {verdict.head_hash}", file=sys.stderr)
    return 0


def cmd_prove(app: VoucherLedger, args: argparse.Namespace) -> int:
    """Print the inclusion proof of the event at a position (signing a checkpoint if none
    covers it yet), with the public key that verifies it."""
    with audit_of(app) as auditor:
        chain = auditor.chain_projector()
        chain.catch_up()
        if auditor.chain.checkpoint_covering(args.position) is None:
            chain.follower.checkpoint_now()  # type: ignore[attr-defined]
            chain.step()
        proof = auditor.prove(args.position)
        proof["public_key_pem"] = auditor.signer.public_pem
    print(json.dumps(proof, indent=2, ensure_ascii=False))
    return 0


def cmd_reconcile(app: VoucherLedger, args: argparse.Namespace) -> int:
    """Import a bank statement file (camt.053 or CSV) and print its reconciliation: what its
    lines settled, suggested or left unmatched."""
    from api.reconcile import import_file

    path = Path(args.file)
    content_type = args.content_type or (
        "text/csv" if path.suffix.lower() == ".csv" else "application/xml"
    )
    store = open_views(app.settings)
    try:
        Projector(app, store).catch_up()  # the approved payouts the lines may settle
        with progress_bar("importing") as bar:
            answer, _ = import_file(
                app, store, path.read_bytes(), content_type, actor=args.actor, progress=bar
            )
    finally:
        store.close()
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    print(
        f"{answer['line_count']} lines: {answer['matched']} matched, {answer['suggested']} "
        f"suggested, {answer['unmatched']} unmatched, {answer['ignored']} ignored"
        + (" (imported before: nothing changed)" if answer.get("replayed") else ""),
        file=sys.stderr,
    )
    return 0


def cmd_report(app: VoucherLedger, args: argparse.Namespace) -> int:
    """The fiscal-year audit report, to --output or standard output."""
    renderers = {
        "json": report_render.render_json,
        "csv": report_render.render_csv,
        "xlsx": report_render.render_xlsx,
        "html": report_render.render_html,
    }
    with audit_of(app) as auditor:
        auditor.chain_projector().catch_up()
        data = renderers[args.format](auditor.report(args.year))
    if args.output:
        with open(args.output, "wb") as out:
            out.write(data)
        print(f"wrote {args.output} ({len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


@contextmanager
def audit_of(app: VoucherLedger) -> Iterator[Auditor]:
    """The auditor over ``app``, with the views caught up (reports and traces read them)."""
    store = open_views(app.settings)
    auditor = Auditor(app, store, embedded=False)
    try:
        Projector(app, store).catch_up()
        yield auditor
    finally:
        auditor.close()
        store.close()


def cmd_rebuild(app: VoucherLedger, _: argparse.Namespace) -> int:
    """Drop every view row and the position, then apply the whole log again."""
    store = open_views(app.settings)
    try:
        store.reset()
        projector = Projector(app, store)
        started = time.perf_counter()
        with progress_bar("rebuilding") as bar:
            done = projector.catch_up(bar)
        elapsed_s = time.perf_counter() - started
        rate = int(done / elapsed_s) if elapsed_s > 0 else done
        print(f"rebuilt the views from {done} events in {elapsed_s:.1f} s ({rate} events/s)")
    finally:
        store.close()
    return 0


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar (events done, events/s, ETA) fed with (position, head)."""
    bar = tqdm(desc=what, unit="ev", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def update(position: int, head: int) -> None:
        bar.total = head
        bar.update(position - bar.n)

    try:
        yield update
    finally:
        bar.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voucher-ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="load the demo data (idempotent) and print balances")
    expire = sub.add_parser("expire", help="record expiry of vouchers past their use-by date")
    expire.add_argument("--as-of", required=True, help="YYYY-MM-DD")
    expire.add_argument("--actor", default="cli")
    serve = sub.add_parser("serve", help="serve the HTTP API (api.front on uvicorn, threaded)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=None, help="default: one per two cores")
    serve.add_argument("--threads", type=int, default=None, help="per worker (default 32)")
    project = sub.add_parser("project", help="follow the log into the read models")
    project.add_argument("--once", action="store_true", help="catch up, then exit")
    project.add_argument(
        "--only", choices=("views", "audit-chain"), help="follow one of the two (default: both)"
    )
    project.add_argument(
        "--page-size", type=int, default=PAGE_SIZE, help="events per transaction (1-10000)"
    )
    sub.add_parser("rebuild-projections", help="drop the read models and rebuild them from 0")
    sub.add_parser("verify", help="recompute the audit chain; exit 1 naming the first bad position")
    prove = sub.add_parser("prove", help="print the inclusion proof of the event at a position")
    prove.add_argument("position", type=int)
    reconcile = sub.add_parser("reconcile", help="import a bank statement and match its lines")
    reconcile.add_argument("file", help="camt.053 XML or CSV")
    reconcile.add_argument("--content-type", help="default: by the file's suffix")
    reconcile.add_argument("--actor", default="cli")
    report = sub.add_parser("report", help="the fiscal-year audit report")
    report.add_argument("--year", type=int, required=True)
    report.add_argument("--format", choices=("html", "xlsx", "csv", "json"), default="html")
    report.add_argument("--output", help="file to write (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from api.server import DEFAULT_THREADS, default_workers, serve

        return serve(
            args.host, args.port, args.workers or default_workers(), args.threads or DEFAULT_THREADS
        )
    handlers = {
        "demo": cmd_demo,
        "expire": cmd_expire,
        "project": cmd_project,
        "rebuild-projections": cmd_rebuild,
        "verify": cmd_verify,
        "prove": cmd_prove,
        "report": cmd_report,
        "reconcile": cmd_reconcile,
    }
    app = VoucherLedger(Settings.from_env())
    try:
        return handlers[args.command](app, args)
    except LedgerError as exc:
        print(f"error [{exc.slug}]: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
