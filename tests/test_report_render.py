"""The audit report renderers: yuan formatting, JSON, CSV, XLSX and the offline HTML page."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from audit.report_render import (
    MAX_SANKEY_NODES_PER_COLUMN,
    SANKEY_VALUE_SPAN_PX,
    render_csv,
    render_html,
    render_json,
    render_xlsx,
    yuan,
)

ENTERPRISE_1 = "91371500MA3C00001J"
ENTERPRISE_2 = "91371500MA3C00002M"
ENTERPRISE_3 = "91371500MA3C00003Q"
PROVIDER_1 = "12371500MB28000019"
PROVIDER_2 = "12371500MB2800002C"
MALICIOUS = "<script>alert(1)</script>"


def sample_report() -> dict[str, Any]:
    """Two sources, two programmes, two providers, three enterprises; one finding has rows."""
    return {
        "fiscal_year": 2026,
        "generated_at": "2026-11-24T07:00:00+00:00",
        "ledger": {
            "position": 1234,
            "head_hash": "ab12" * 16,
            "verified": True,
            "events_checked": 1234,
            "first_bad_position": None,
            "checkpoint": {
                "position": 1200,
                "signed_at": "2026-11-24T06:59:00+00:00",
                "signature": "c2lnbmF0dXJl",
            },
        },
        "sources": [
            source(
                "province-2026", "Province", "province", "鲁科字〔2026〕1号", 100_000_000, 900_000
            ),
            source(
                "city-2026", "City of Liaocheng", "city", "聊科字〔2026〕3号", 20_000_000, 350_000
            ),
        ],
        "flows": [
            flow("province-2026", "innovation-2026", PROVIDER_1, ENTERPRISE_1, 600_000),
            flow("province-2026", "innovation-2026", PROVIDER_1, ENTERPRISE_2, 300_000),
            flow("city-2026", "innovation-2026", PROVIDER_2, ENTERPRISE_2, 200_000),
            flow("city-2026", "talent-2026", PROVIDER_2, ENTERPRISE_3, 150_000),
        ],
        "findings": [
            {
                "query": "self-dealing",
                "title": "Self-dealing attempts",
                "rows": [{"provider_id": PROVIDER_1, "holder_id": ENTERPRISE_1, "position": 12}],
            },
            {"query": "velocity", "title": "Redemptions per provider per day above 20", "rows": []},
        ],
    }


def source(
    source_id: str, name: str, level: str, ref: str, appropriation_fen: int, disbursed_fen: int
) -> dict[str, Any]:
    committed_fen = disbursed_fen * 2
    return {
        "id": source_id,
        "name": name,
        "level": level,
        "document_ref": ref,
        "appropriation_fen": appropriation_fen,
        "committed_fen": committed_fen,
        "disbursed_fen": disbursed_fen,
        "recovered_fen": 0,
        "available_fen": appropriation_fen - committed_fen,
    }


def flow(source_id: str, programme: str, provider: str, holder: str, fen: int) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "programme_id": programme,
        "provider_id": provider,
        "holder_id": holder,
        "amount_fen": fen,
        "clawed_back_fen": 0,
        "paid_fen": 0,
        "redemptions": 1,
    }


def svg_of(page: bytes) -> str:
    text = page.decode("utf-8")
    match = re.search(r"<svg\b.*?</svg>", text, re.DOTALL)
    assert match, "the page has no <svg> element"
    return match.group(0)


def node_heights(svg: str, column: int) -> dict[str, int]:
    """Node label (id and amount) to its rect height, for one column of the Sankey diagram."""
    pattern = rf'<rect class="node c{column}" [^>]*height="(\d+)"><title>([^<]*)</title>'
    return {label: int(height) for height, label in re.findall(pattern, svg)}


class TagBalance(HTMLParser):
    """Records every element that is closed out of order or never closed."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "meta", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.misplaced: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.misplaced.append(tag)


def balance_of(page: bytes) -> TagBalance:
    parser = TagBalance()
    parser.feed(page.decode("utf-8"))
    parser.close()
    return parser


# --- yuan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (100, "1.00"),
        (123_456_789, "1,234,567.89"),
        (100_000_000, "1,000,000.00"),
        (-5, "-0.05"),
        (-123_456, "-1,234.56"),
    ],
)
def test_fen_are_shown_as_yuan_with_two_decimals_and_thousands_separators(
    fen: int, text: str
) -> None:
    assert yuan(fen) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_the_yuan_text_reads_back_as_the_same_number_of_fen(fen: int) -> None:
    assert int(yuan(fen).replace(",", "").replace(".", "")) == fen


@pytest.mark.parametrize("amount", [1.5, True, "100"])
def test_yuan_refuses_anything_but_an_integer_number_of_fen(amount: Any) -> None:
    with pytest.raises(TypeError):
        yuan(amount)


# --- HTML ------------------------------------------------------------------------------------


def test_the_sankey_diagram_draws_one_band_per_aggregated_link_with_its_amount() -> None:
    svg = svg_of(render_html(sample_report()))

    # 3 source→programme, 3 programme→provider, 4 provider→enterprise and 3 enterprise→bank
    # ("not yet paid": nothing of the sample is paid) pairs.
    assert svg.count("<path ") == 13
    assert "<title>province-2026 → innovation-2026: ¥9,000.00</title>" in svg
    assert f"<title>{PROVIDER_2} → {ENTERPRISE_2}: ¥2,000.00</title>" in svg
    assert re.search(r'<path [^>]*d="M\d+,\d+C[\d, ]+L[\d,]+C[\d, ]+Z"', svg)


def test_the_last_column_carries_the_money_on_to_the_bank_paid_owed_or_clawed_back() -> None:
    report = sample_report()
    report["flows"][0]["paid_fen"] = 400_000
    report["flows"][1]["clawed_back_fen"] = 100_000

    svg = svg_of(render_html(report))

    assert "<title>paid (bank lines)  ¥4,000.00</title>" in svg
    assert "<title>clawed back  ¥1,000.00</title>" in svg
    # 12,500 yuan of flows in all: 4,000 paid, 1,000 clawed back, the rest owed.
    assert "<title>not yet paid  ¥7,500.00</title>" in svg


def test_every_node_is_labelled_with_its_id_and_the_money_through_it() -> None:
    svg = svg_of(render_html(sample_report()))

    for label in [
        "province-2026  ¥9,000.00",
        "city-2026  ¥3,500.00",
        "innovation-2026  ¥11,000.00",
        "talent-2026  ¥1,500.00",
        f"{PROVIDER_1}  ¥9,000.00",
        f"{ENTERPRISE_2}  ¥5,000.00",
        f"{ENTERPRISE_3}  ¥1,500.00",
    ]:
        assert f">{label}</text>" in svg, label


def test_a_node_is_as_tall_as_its_share_of_the_money_in_whole_pixels() -> None:
    svg = svg_of(render_html(sample_report()))

    assert node_heights(svg, 0) == {
        "province-2026  ¥9,000.00": 900_000 * SANKEY_VALUE_SPAN_PX // 1_250_000,
        "city-2026  ¥3,500.00": 350_000 * SANKEY_VALUE_SPAN_PX // 1_250_000,
    }


def test_the_page_references_nothing_outside_itself() -> None:
    page = render_html(sample_report()).decode("utf-8")

    for needle in ("http://", "https://", "src=", "<link", "url(", "<script", "<img", "@import"):
        assert needle not in page, needle


def test_the_page_closes_every_element_it_opens_including_the_svg() -> None:
    parser = balance_of(render_html(sample_report()))

    assert {"html", "style", "svg", "path", "rect", "text", "table"} <= parser.seen
    assert parser.misplaced == []
    assert parser.open == []


def test_names_and_ids_are_escaped_so_a_script_in_them_never_runs() -> None:
    report = sample_report()
    report["sources"][0]["name"] = MALICIOUS
    report["flows"][0]["holder_id"] = MALICIOUS

    page = render_html(report).decode("utf-8")

    assert "<script" not in page
    # the sources table, the flows table, and in the svg the node label, its tooltip and the
    # links into it and out of it (to the bank)
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 6
    assert balance_of(page.encode("utf-8")).misplaced == []


def test_the_page_with_no_flows_still_draws_an_svg_saying_so() -> None:
    report = sample_report()
    report["flows"] = []

    page = render_html(report)

    svg = svg_of(page)
    assert "no flows" in svg
    assert "<path" not in svg
    assert balance_of(page).open == []


def test_a_failed_chain_without_a_checkpoint_is_shown_as_not_verified() -> None:
    report = sample_report()
    report["ledger"].update(verified=False, first_bad_position=77, checkpoint=None)

    page = render_html(report).decode("utf-8")

    assert '<span class="bad">no</span>' in page
    assert "<th>First bad position</th><td>77</td>" in page
    assert "no signed checkpoint" in page


def test_a_finding_without_rows_says_none_found_and_one_with_rows_lists_them() -> None:
    page = render_html(sample_report()).decode("utf-8")

    velocity = page.split("Redemptions per provider per day above 20")[1]
    assert velocity.split("</h3>")[1].startswith("<p>none found</p>")
    self_dealing = page.split("Self-dealing attempts")[1].split("</table>")[0]
    assert f'<td>{PROVIDER_1}</td><td>{ENTERPRISE_1}</td><td class="num">12</td>' in self_dealing


def test_a_column_with_too_many_nodes_lumps_the_smallest_into_one() -> None:
    report = sample_report()
    count = MAX_SANKEY_NODES_PER_COLUMN + 5
    report["flows"] = [
        flow("province-2026", "innovation-2026", PROVIDER_1, f"holder-{i:03d}", 1_000 + i)
        for i in range(count)
    ]

    svg = svg_of(render_html(report))

    assert len(node_heights(svg, 3)) == MAX_SANKEY_NODES_PER_COLUMN
    assert "(6 others)" in svg
    assert "holder-000" not in svg  # the smallest holder is among the lumped ones


def test_a_negative_flow_amount_is_refused_rather_than_drawn() -> None:
    report = sample_report()
    report["flows"][0]["amount_fen"] = -1

    with pytest.raises(ValueError, match="non-negative"):
        render_html(report)


# --- XLSX ------------------------------------------------------------------------------------


def test_the_workbook_has_a_summary_the_tables_and_one_sheet_per_finding() -> None:
    workbook = load_workbook(io.BytesIO(render_xlsx(sample_report())))

    assert workbook.sheetnames == [
        "Summary",
        "Sources",
        "Flows",
        "Guarantee",
        "self-dealing",
        "velocity",
    ]
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True)}
    assert summary["fiscal_year"] == 2026
    assert summary["ledger.verified"] is True
    assert summary["ledger.checkpoint.position"] == 1200
    assert workbook["velocity"]["A1"].value == "none found"
    assert workbook["self-dealing"]["A2"].value == PROVIDER_1


def test_money_in_the_workbook_is_integer_fen_beside_a_yuan_text_column() -> None:
    sources = load_workbook(io.BytesIO(render_xlsx(sample_report())))["Sources"]

    header = [cell.value for cell in sources[1]]
    province = dict(zip(header, [cell.value for cell in sources[2]], strict=True))
    assert type(province["disbursed_fen"]) is int
    assert province["disbursed_fen"] == 900_000
    assert province["disbursed_yuan"] == "9,000.00"
    assert province["document_ref"] == "鲁科字〔2026〕1号"
    assert all(cell.font.bold for cell in sources[1])


def test_text_that_looks_like_a_formula_is_stored_as_text_in_the_workbook() -> None:
    report = sample_report()
    report["sources"][0]["name"] = "=HYPERLINK(1)"

    sources = load_workbook(io.BytesIO(render_xlsx(report)))["Sources"]

    assert sources["B2"].value == "=HYPERLINK(1)"
    assert sources["B2"].data_type == "s"


def test_finding_sheet_titles_are_valid_excel_titles_and_unique() -> None:
    report = sample_report()
    awkward = "by/day:[x]*?\\'" + "y" * 40
    report["findings"] = [
        {"query": awkward, "title": "one", "rows": []},
        {"query": awkward, "title": "two", "rows": []},
        {"query": "Flows", "title": "three", "rows": []},
    ]

    titles = load_workbook(io.BytesIO(render_xlsx(report))).sheetnames[4:]

    assert len({title.casefold() for title in titles}) == 3
    assert "flows" not in [title.casefold() for title in titles]
    for title in titles:
        assert len(title) <= 31
        assert not set("[]:*?/\\") & set(title)
        assert not title.startswith("'")
        assert not title.endswith("'")


# --- CSV -------------------------------------------------------------------------------------


def csv_sections(data: bytes) -> dict[str, list[list[str]]]:
    """Section name to its rows after the name row, split on blank lines."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for row in csv.reader(io.StringIO(data.decode("utf-8"))):
        if not row:
            current = None
        elif current is None:
            current = sections.setdefault(row[0], [])
        else:
            current.append(row)
    return sections


def test_the_csv_has_named_sections_with_a_header_and_integer_fen() -> None:
    sections = csv_sections(render_csv(sample_report()))

    assert list(sections) == [
        "sources",
        "flows",
        "guarantee",
        "finding:self-dealing",
        "finding:velocity",
    ]
    header, first, *rest = sections["flows"]
    assert header == [
        "source_id",
        "programme_id",
        "provider_id",
        "holder_id",
        "amount_fen",
        "clawed_back_fen",
        "paid_fen",
        "redemptions",
    ]
    assert first == [
        "province-2026",
        "innovation-2026",
        PROVIDER_1,
        ENTERPRISE_1,
        "600000",
        "0",
        "0",
        "1",
    ]
    assert len(rest) == 3
    assert sections["finding:self-dealing"] == [
        ["provider_id", "holder_id", "position"],
        [PROVIDER_1, ENTERPRISE_1, "12"],
    ]
    assert sections["finding:velocity"] == []


def test_csv_text_that_a_spreadsheet_would_run_is_prefixed_with_an_apostrophe() -> None:
    report = sample_report()
    report["sources"][1]["name"] = "=HYPERLINK(1)"

    sources = csv_sections(render_csv(report))["sources"]

    assert sources[2][1] == "'=HYPERLINK(1)"
    assert sources[1][4] == "100000000"


# --- JSON ------------------------------------------------------------------------------------


def test_the_json_parses_back_to_the_same_report_in_the_same_key_order() -> None:
    report = sample_report()

    data = render_json(report)

    parsed = json.loads(data.decode("utf-8"))
    assert parsed == report
    assert list(parsed) == list(report)
    assert list(parsed["sources"][0]) == list(report["sources"][0])
    assert "鲁科字〔2026〕1号".encode() in data  # not \u escapes


def test_rendering_leaves_the_report_unchanged() -> None:
    report = sample_report()
    before = copy.deepcopy(report)

    for render in (render_json, render_csv, render_xlsx, render_html):
        render(report)

    assert report == before
