"""Render a fiscal-year audit report (a plain dict built elsewhere) as JSON, CSV, XLSX or HTML.

Money stays integer fen until the very last step: yuan strings for people, integer pixel
coordinates for the Sankey diagram. The HTML page is self-contained so that an auditor can open
it on a machine with no network, and so that it can never leak a request to anyone."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from audit.csv_cells import csv_row, csv_rows
from ledger.money import yuan

Report = Mapping[str, Any]
Row = Mapping[str, Any]

SOURCE_FIELDS = (
    "id",
    "name",
    "level",
    "document_ref",
    "appropriation_fen",
    "committed_fen",
    "disbursed_fen",
    "provider_bonus_fen",
    "paid_fen",
    "recovered_fen",
    "available_fen",
)
FLOW_FIELDS = (
    "source_id",
    "programme_id",
    "provider_id",
    "holder_id",
    "amount_fen",
    "clawed_back_fen",
    "paid_fen",
    "redemptions",
)
GUARANTEE_FIELDS = (
    "claim_id",
    "bank_id",
    "pool_id",
    "loan_id",
    "rule",
    "status",
    "loss_fen",
    "compensation_fen",
    "returned_fen",
    "exempt_net_loss_fen",
    "exemption_ref",
    "exempted_on",
)

# A page with tens of thousands of table rows is unreadable and slow to open; the CSV and XLSX
# carry every row, the HTML page says how many it left out.
MAX_HTML_ROWS = 1000

# Excel's own rules for sheet titles; "History" is reserved by Excel for change tracking.
MAX_SHEET_TITLE_CHARS = 31
_BAD_SHEET_TITLE = re.compile(r"[\[\]:*?/\\]")
_RESERVED_SHEET_TITLES = frozenset({"summary", "sources", "flows", "guarantee", "history"})


def render_json(report: Report) -> bytes:
    """The report as UTF-8 JSON, keys in the order given; NaN is refused, not written."""
    text = json.dumps(report, ensure_ascii=False, indent=2, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _finding_fields(rows: Sequence[Row]) -> tuple[str, ...]:
    """Every key of the rows, in order of first appearance (rows need not share all keys)."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return tuple(seen)


def _sections(report: Report) -> list[tuple[str, tuple[str, ...], Sequence[Row]]]:
    """(name, fields, rows) for each tabular section, in report order."""
    sections = [
        ("sources", SOURCE_FIELDS, report["sources"]),
        ("flows", FLOW_FIELDS, report["flows"]),
        ("guarantee", GUARANTEE_FIELDS, report.get("guarantee_claims", [])),
    ]
    for finding in report["findings"]:
        rows = finding["rows"]
        sections.append((f"finding:{finding['query']}", _finding_fields(rows), rows))
    return sections


# --- CSV -------------------------------------------------------------------------------------


def render_csv(report: Report) -> bytes:
    """The sources, flows and findings as UTF-8 CSV sections, money in integer fen.

    Each section is a one-cell row naming it (``sources``, ``flows``, ``finding:<query>``), a
    header row and the data rows; a blank line separates sections. A finding with no rows has
    no header row either, since its columns are only known from its rows. Every cell goes
    through ``audit.csv_cells.csv_cell``: text a spreadsheet would run as a formula is prefixed
    with an apostrophe, numbers stay numbers."""
    out = io.StringIO()
    writer = csv.writer(out)
    for index, (name, fields, rows) in enumerate(_sections(report)):
        if index:
            writer.writerow([])
        writer.writerow(csv_row([name]))
        if fields:
            writer.writerow(csv_row(fields))
            writer.writerows(csv_rows(rows, fields))
    return out.getvalue().encode("utf-8")


# --- XLSX ------------------------------------------------------------------------------------


def _sheet_title(name: str, taken: set[str]) -> str:
    """A valid Excel sheet title for ``name``, unique (case-insensitively) among ``taken``."""
    clean = ILLEGAL_CHARACTERS_RE.sub("_", _BAD_SHEET_TITLE.sub("_", name))
    base = clean[:MAX_SHEET_TITLE_CHARS].strip("'") or "finding"
    title, number = base, 1
    while title.casefold() in taken:
        number += 1
        suffix = f"~{number}"
        title = base[: MAX_SHEET_TITLE_CHARS - len(suffix)] + suffix
    taken.add(title.casefold())
    return title


def _put(sheet: Any, row: int, column: int, value: object) -> None:
    """Write one cell; text is always stored as text, never as a formula."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = sheet.cell(row=row, column=column, value=value)
    if isinstance(value, str):
        cell.data_type = "s"


def _put_rows(sheet: Any, first_row: int, rows: Iterable[Sequence[object]]) -> None:
    for row_index, values in enumerate(rows, start=first_row):
        for column_index, value in enumerate(values, start=1):
            _put(sheet, row_index, column_index, value)


def _bold_row(sheet: Any, row: int) -> None:
    for cell in sheet[row]:
        cell.font = Font(bold=True)


def _fill_table(sheet: Any, fields: Sequence[str], rows: Sequence[Row]) -> None:
    """Header in bold, then one row per item; money as integer fen plus a yuan text column."""
    if not fields:
        _put(sheet, 1, 1, "none found")
        return
    money = [field for field in fields if field.endswith("_fen")]
    header = [*fields, *(field.removesuffix("_fen") + "_yuan" for field in money)]
    body = [
        [*(row.get(field) for field in fields), *(_yuan_or_blank(row.get(f)) for f in money)]
        for row in rows
    ]
    _put_rows(sheet, 1, [header, *body])
    _bold_row(sheet, 1)
    sheet.freeze_panes = "A2"
    for column_index, name in enumerate(header, start=1):
        sheet.column_dimensions[get_column_letter(column_index)].width = max(12, len(name) + 2)


def _yuan_or_blank(value: object) -> str | None:
    return yuan(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _ledger_fields(ledger: Mapping[str, Any]) -> list[tuple[str, object]]:
    checkpoint = ledger["checkpoint"] or {}
    return [
        ("ledger.position", ledger["position"]),
        ("ledger.head_hash", ledger["head_hash"]),
        ("ledger.verified", ledger["verified"]),
        ("ledger.events_checked", ledger["events_checked"]),
        ("ledger.first_bad_position", ledger["first_bad_position"]),
        ("ledger.checkpoint.position", checkpoint.get("position")),
        ("ledger.checkpoint.signed_at", checkpoint.get("signed_at")),
        ("ledger.checkpoint.signature", checkpoint.get("signature")),
    ]


def _fill_summary(sheet: Any, report: Report, finding_sheets: Sequence[str]) -> None:
    """Year, time and ledger integrity as field/value pairs, then an index of the findings."""
    pairs: list[tuple[str, object]] = [
        ("fiscal_year", report["fiscal_year"]),
        ("generated_at", report["generated_at"]),
        *_ledger_fields(report["ledger"]),
    ]
    _put_rows(sheet, 1, [("field", "value"), *pairs])
    _bold_row(sheet, 1)
    index_row = len(pairs) + 3
    index = [
        (finding["query"], finding["title"], len(finding["rows"]), title)
        for finding, title in zip(report["findings"], finding_sheets, strict=True)
    ]
    _put_rows(sheet, index_row, [("finding", "title", "rows", "sheet"), *index])
    _bold_row(sheet, index_row)
    sheet.column_dimensions["A"].width = 30
    sheet.column_dimensions["B"].width = 70


def render_xlsx(report: Report) -> bytes:
    """An .xlsx workbook: Summary, Sources, Flows and one sheet per finding; money in fen."""
    taken = set(_RESERVED_SHEET_TITLES)
    finding_sheets = [_sheet_title(finding["query"], taken) for finding in report["findings"]]
    workbook = Workbook()
    summary = workbook.active
    summary.title = "Summary"
    _fill_summary(summary, report, finding_sheets)
    sections = _sections(report)
    for title, (_name, fields, rows) in zip(
        ["Sources", "Flows", "Guarantee", *finding_sheets], sections, strict=True
    ):
        _fill_table(workbook.create_sheet(title), fields, rows)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- Sankey diagram --------------------------------------------------------------------------

SANKEY_STAGES = ("source_id", "programme_id", "provider_id", "holder_id")
# The last column carries the money on to the bank (seed 002 去向可查证): what bank lines paid,
# what is still owed, what was clawed back.
SANKEY_STAGE_TITLES = ("funding sources", "programmes", "providers", "enterprises", "bank")
SANKEY_COLUMNS = len(SANKEY_STAGE_TITLES)
PAID, OWED, CLAWED = "paid (bank lines)", "not yet paid", "clawed back"
# Beyond this many nodes a column is a smear of one-pixel bars; the smallest are lumped together.
MAX_SANKEY_NODES_PER_COLUMN = 40
SANKEY_WIDTH_PX = 1100
SANKEY_VALUE_SPAN_PX = 420  # the height that all the money of one column shares
SANKEY_TOP_PX = 40
SANKEY_BOTTOM_PX = 20
SANKEY_LEFT_PX = 10
SANKEY_LABEL_PX = 240  # room right of the last column for its labels
SANKEY_NODE_WIDTH_PX = 12
SANKEY_NODE_GAP_PX = 14  # wide enough that labels of neighbouring small nodes do not overlap
SANKEY_MIN_NODE_PX = 2


# One flow through the diagram: its node id in each column, and its amount in fen.
_Path = tuple[tuple[str, ...], int]


@dataclass(frozen=True)
class _Box:
    x: int
    y: int
    height_px: int
    value_fen: int


def _scale(part_fen: int, span_px: int, whole_fen: int) -> int:
    """``part_fen`` of ``whole_fen`` as a share of ``span_px``, rounded down; all integers."""
    return part_fen * span_px // whole_fen if whole_fen > 0 else 0


def _paths(flows: Sequence[Row]) -> list[_Path]:
    """(five node ids, amount in fen) per part of a flow that moved money: paid by bank lines,
    owed, clawed back. A negative amount is a bug."""
    paths = []
    for flow in flows:
        amount_fen = flow["amount_fen"]
        if type(amount_fen) is not int or amount_fen < 0:
            raise ValueError(f"flow amount must be a non-negative int of fen, got {amount_fen!r}")
        paid_fen, clawed_fen = int(flow.get("paid_fen", 0)), int(flow.get("clawed_back_fen", 0))
        ids = tuple(str(flow[stage]) for stage in SANKEY_STAGES)
        for end, part_fen in (
            (PAID, paid_fen),
            (OWED, amount_fen - paid_fen - clawed_fen),
            (CLAWED, clawed_fen),
        ):
            if part_fen > 0:
                paths.append(((*ids, end), part_fen))
    return paths


def _lump_small(paths: list[_Path]) -> list[_Path]:
    """Keep the largest nodes of each column and merge the rest into one "(n others)" node."""
    for column in range(SANKEY_COLUMNS):
        totals: dict[str, int] = defaultdict(int)
        for ids, amount_fen in paths:
            totals[ids[column]] += amount_fen
        if len(totals) <= MAX_SANKEY_NODES_PER_COLUMN:
            continue
        ranked = sorted(totals, key=lambda node: (-totals[node], node))
        kept = set(ranked[: MAX_SANKEY_NODES_PER_COLUMN - 1])
        others = f"({len(ranked) - len(kept)} others)"
        paths = [
            ((*ids[:column], node if node in kept else others, *ids[column + 1 :]), amount_fen)
            for ids, amount_fen in paths
            for node in [ids[column]]
        ]
    return paths


def _columns(paths: list[_Path]) -> list[dict[str, int]]:
    """Per column, node id to fen through it, largest first (ties by id, for a stable picture)."""
    columns: list[dict[str, int]] = [defaultdict(int) for _ in range(SANKEY_COLUMNS)]
    for ids, amount_fen in paths:
        for column, node in enumerate(ids):
            columns[column][node] += amount_fen
    return [dict(sorted(c.items(), key=lambda item: (-item[1], item[0]))) for c in columns]


def _links(paths: list[_Path]) -> dict[tuple[int, str, str], int]:
    """Fen per (left column, left node, right node), summed over flows."""
    links: dict[tuple[int, str, str], int] = defaultdict(int)
    for ids, amount_fen in paths:
        for column in range(len(ids) - 1):
            links[(column, ids[column], ids[column + 1])] += amount_fen
    return links


def _column_x(column: int) -> int:
    last_x = SANKEY_WIDTH_PX - SANKEY_LABEL_PX - SANKEY_NODE_WIDTH_PX
    return SANKEY_LEFT_PX + column * (last_x - SANKEY_LEFT_PX) // (SANKEY_COLUMNS - 1)


def _layout(columns: list[dict[str, int]]) -> tuple[dict[tuple[int, str], _Box], int]:
    """A box per node, each column centred on the tallest; returns the boxes and SVG height."""
    total_fen = sum(columns[0].values())
    heights = [
        [max(SANKEY_MIN_NODE_PX, _scale(v, SANKEY_VALUE_SPAN_PX, total_fen)) for v in c.values()]
        for c in columns
    ]
    column_px = [sum(h) + SANKEY_NODE_GAP_PX * (len(h) - 1) for h in heights]
    tallest_px = max(column_px)
    boxes: dict[tuple[int, str], _Box] = {}
    for column, nodes in enumerate(columns):
        y = SANKEY_TOP_PX + (tallest_px - column_px[column]) // 2
        for (node, value_fen), height_px in zip(nodes.items(), heights[column], strict=True):
            boxes[(column, node)] = _Box(_column_x(column), y, height_px, value_fen)
            y += height_px + SANKEY_NODE_GAP_PX
    return boxes, SANKEY_TOP_PX + tallest_px + SANKEY_BOTTOM_PX


def _band(left: _Box, right: _Box, left_y: tuple[int, int], right_y: tuple[int, int]) -> str:
    """A filled band from a slice of ``left`` to a slice of ``right``, edges cubic Béziers."""
    x0, x1 = left.x + SANKEY_NODE_WIDTH_PX, right.x
    xm = (x0 + x1) // 2
    (y0, y1), (y2, y3) = left_y, right_y
    return f"M{x0},{y0}C{xm},{y0} {xm},{y2} {x1},{y2}L{x1},{y3}C{xm},{y3} {xm},{y1} {x0},{y1}Z"


def _link_paths(
    links: dict[tuple[int, str, str], int],
    boxes: dict[tuple[int, str], _Box],
    order: dict[tuple[int, str], int],
) -> list[str]:
    """One <path> per link, stacked inside each node in the order of the nodes they join."""
    out_fen: dict[tuple[int, str], int] = defaultdict(int)
    in_fen: dict[tuple[int, str], int] = defaultdict(int)
    parts = []
    ranked = sorted(links, key=lambda k: (k[0], order[(k[0], k[1])], order[(k[0] + 1, k[2])]))
    for column, left_id, right_id in ranked:
        amount_fen = links[(column, left_id, right_id)]
        left, right = (column, left_id), (column + 1, right_id)
        left_y = _slice(boxes[left], out_fen[left], amount_fen)
        right_y = _slice(boxes[right], in_fen[right], amount_fen)
        out_fen[left] += amount_fen
        in_fen[right] += amount_fen
        label = f"{left_id} → {right_id}: ¥{yuan(amount_fen)}"
        parts.append(
            f'<path class="link s{column}" d="{_band(boxes[left], boxes[right], left_y, right_y)}">'
            f"<title>{_e(label)}</title></path>"
        )
    return parts


def _slice(box: _Box, before_fen: int, amount_fen: int) -> tuple[int, int]:
    """Top and bottom pixel of the share of ``box`` from ``before_fen`` to ``+ amount_fen``."""
    top = box.y + _scale(before_fen, box.height_px, box.value_fen)
    return top, box.y + _scale(before_fen + amount_fen, box.height_px, box.value_fen)


def _node_marks(boxes: dict[tuple[int, str], _Box]) -> list[str]:
    parts = []
    for (column, node), box in boxes.items():
        label = _e(f"{node}  ¥{yuan(box.value_fen)}")
        middle = box.y + box.height_px // 2
        parts.append(
            f'<rect class="node c{column}" x="{box.x}" y="{box.y}" '
            f'width="{SANKEY_NODE_WIDTH_PX}" height="{box.height_px}"><title>{label}</title></rect>'
            f'<text x="{box.x + SANKEY_NODE_WIDTH_PX + 4}" y="{middle}" dy="0.35em">{label}</text>'
        )
    return parts


def _svg(height_px: int, body: Iterable[str]) -> str:
    # Inline SVG in HTML5 needs no xmlns, and leaving it out keeps the page free of any URL.
    return (
        f'<svg class="sankey" viewBox="0 0 {SANKEY_WIDTH_PX} {height_px}" '
        f'width="{SANKEY_WIDTH_PX}" height="{height_px}" role="img" '
        f'aria-label="Sankey diagram of the money flows">{"".join(body)}</svg>'
    )


def _sankey_svg(flows: Sequence[Row]) -> str:
    """Flows as an inline SVG Sankey diagram: sources → programmes → providers → enterprises
    → the bank (paid, owed, clawed back).

    Node heights and band widths are integer shares of the money in fen; only the final pixel
    coordinates are derived from them. With no money moved it draws a "no flows" notice."""
    paths = _lump_small(_paths(flows))
    if not paths:
        return _svg(60, ['<text x="10" y="35">no flows</text>'])
    columns = _columns(paths)
    boxes, height_px = _layout(columns)
    order = {(c, node): rank for c, nodes in enumerate(columns) for rank, node in enumerate(nodes)}
    headings = [
        f'<text class="stage" x="{_column_x(column)}" y="20">{_e(title)}</text>'
        for column, title in enumerate(SANKEY_STAGE_TITLES)
    ]
    return _svg(
        height_px, [*headings, *_link_paths(_links(paths), boxes, order), *_node_marks(boxes)]
    )


# --- HTML ------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{word-break:break-all}
.ok{color:#17662b;font-weight:bold}
.bad{color:#b00020;font-weight:bold}
.sankey{max-width:100%;height:auto;font-size:11px}
.sankey .stage{font-weight:bold;font-size:13px}
.sankey text{paint-order:stroke;stroke:#fff;stroke-width:3px}
.sankey .node{fill:#3b5b92}
.sankey .link{fill-opacity:0.35;stroke:none}
.sankey .s0{fill:#4e79a7}.sankey .s1{fill:#59a14f}.sankey .s2{fill:#f28e2b}
"""


def _e(value: object) -> str:
    """Escaped text of any value; None shows as an empty cell."""
    return "" if value is None else html.escape(str(value))


def _html_cell(field: str, value: object) -> str:
    if field.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{yuan(value)}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{_e(value)}</td>"


def _html_heading(field: str) -> str:
    return _e(field.removesuffix("_fen") + " (yuan)" if field.endswith("_fen") else field)


def _html_table(fields: Sequence[str], rows: Sequence[Row]) -> str:
    """A table of ``rows``, money columns in yuan, at most MAX_HTML_ROWS rows shown."""
    if not rows:
        return "<p>none found</p>"
    head = "".join(f"<th>{_html_heading(field)}</th>" for field in fields)
    body = "".join(
        "<tr>" + "".join(_html_cell(field, row.get(field)) for field in fields) + "</tr>"
        for row in rows[:MAX_HTML_ROWS]
    )
    more = len(rows) - MAX_HTML_ROWS
    note = f"<p>{more} more rows are in the CSV and XLSX reports.</p>" if more > 0 else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _html_integrity(ledger: Mapping[str, Any]) -> str:
    verified = (
        '<span class="ok">yes</span>' if ledger["verified"] else '<span class="bad">no</span>'
    )
    checkpoint = ledger["checkpoint"]
    signed = (
        f"position {_e(checkpoint['position'])}, signed at {_e(checkpoint['signed_at'])}, "
        f"signature <code>{_e(checkpoint['signature'])}</code>"
        if checkpoint
        else '<span class="bad">no signed checkpoint</span>'
    )
    items = [
        ("Hash chain verified", verified),
        ("Events checked", _e(ledger["events_checked"])),
        ("Last log position", _e(ledger["position"])),
        ("Head hash", f"<code>{_e(ledger['head_hash'])}</code>"),
        ("First bad position", _e(ledger["first_bad_position"]) or "none"),
        ("Last signed checkpoint", signed),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in items)
    return f"<section><h2>Ledger integrity</h2><table>{rows}</table></section>"


def _html_findings(findings: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<section><h2>Findings</h2>"]
    for finding in findings:
        rows = finding["rows"]
        parts.append(
            f"<h3>{_e(finding['title'])} <small>({_e(finding['query'])})</small></h3>"
            f"{_html_table(_finding_fields(rows), rows)}"
        )
    parts.append("</section>")
    return "".join(parts)


def render_html(report: Report) -> bytes:
    """One self-contained UTF-8 HTML5 page: no scripts, links, images or URLs of any kind."""
    year = _e(report["fiscal_year"])
    body = [
        f"<h1>Innovation voucher audit report, fiscal year {year}</h1>",
        f"<p>Generated at {_e(report['generated_at'])}.</p>",
        _html_integrity(report["ledger"]),
        "<section><h2>Funding sources</h2>",
        _html_table(SOURCE_FIELDS, report["sources"]),
        "</section><section><h2>Money flows</h2>",
        _sankey_svg(report["flows"]),
        _html_table(FLOW_FIELDS, report["flows"]),
        "</section><section><h2>Guarantee fund claims (容错纠错: an exempt net loss)</h2>",
        _html_table(GUARANTEE_FIELDS, report.get("guarantee_claims", [])),
        "</section>",
        _html_findings(report["findings"]),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>Audit report {year}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    return page.encode("utf-8")
