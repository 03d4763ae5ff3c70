"""The load run's summary and its HTML page (benchmarks/load.py): locust's statistics become the
JSON figures exactly (rates, percentiles, failures by status and slug, time slices), and the page
drawn from them shows every chart in a real headless Chromium, fetching nothing.

Chromium is Debian's ``chromium`` package; without it these tests fail, they never skip."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# Importing locust patches the whole process with gevent unless told not to: the test suite's
# threads, sockets and servers must stay as they are. Only its statistics classes are used.
_PATCH_ENV = "LOCUST_SKIP_MONKEY_PATCH"
_PATCH_WAS = os.environ.get(_PATCH_ENV)
os.environ[_PATCH_ENV] = "1"
from locust.exception import CatchResponseError  # noqa: E402
from locust.stats import RequestStats  # noqa: E402

from load_tests.report_html import COLOURS, FAILED_COLOUR, OK_COLOUR, render_report  # noqa: E402
from load_tests.summary import scenario_summary  # noqa: E402

if _PATCH_WAS is None:
    del os.environ[_PATCH_ENV]  # the processes other tests start never see it
else:
    os.environ[_PATCH_ENV] = _PATCH_WAS

CHROMIUM_TIMEOUT_S = 30

# Runs in the page after it loaded: for every chart, its marks, their extent, and how many
# pixels of a series colour the chart has once Chromium rasterises it on a canvas. The answer
# goes into the DOM, which --dump-dom prints.
PROBE = """
<script>
(async () => {
  const colours = %(colours)s.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
  const found = [];
  for (const svg of document.querySelectorAll('svg[data-chart]')) {
    const marks = [...svg.querySelectorAll('.mark')];
    let width = 0, height = 0;
    for (const m of marks) {
      const b = m.getBBox();
      width = Math.max(width, b.width); height = Math.max(height, b.height);
    }
    const image = new Image();
    image.src = 'data:image/svg+xml;charset=utf-8,' +
      encodeURIComponent(new XMLSerializer().serializeToString(svg));
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = svg.width.baseVal.value; canvas.height = svg.height.baseVal.value;
    const g = canvas.getContext('2d');
    g.drawImage(image, 0, 0);
    const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let coloured = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (colours.some(c => Math.abs(c[0] - px[i]) + Math.abs(c[1] - px[i + 1]) +
                            Math.abs(c[2] - px[i + 2]) < 24 && px[i + 3] > 200)) coloured++;
    }
    found.push({chart: svg.dataset.chart, marks: marks.length, width, height, coloured});
  }
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
</script>
"""

# A screenshot given back to Chromium as a data URL: how many of its pixels are not white, and
# how many distinct colours (to 4 bits a channel) it has.
SCREENSHOT_CHECK = """<!DOCTYPE html><html><body><img id="shot" src="data:image/png;base64,%s">
<script>
addEventListener('load', () => {
  const img = document.getElementById('shot');
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d');
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let notWhite = 0; const colours = new Set();
  for (let i = 0; i < px.length; i += 4) {
    if (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250) notWhite++;
    colours.add((px[i] >> 4) << 8 | (px[i + 1] >> 4) << 4 | (px[i + 2] >> 4));
  }
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({width: canvas.width, height: canvas.height, notWhite,
                                    colours: colours.size});
  document.body.appendChild(out);
});
</script></body></html>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium); this test needs it")
    return found


def run_chromium(args: list[str], profile: Path) -> str:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--hide-scrollbars", "--disable-extensions", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe_of(dom: str) -> Any:
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the page's probe wrote nothing: its script did not run to the end"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def error(outcome: str) -> CatchResponseError:
    return CatchResponseError(outcome)


def recorded_run(
    seed: int, duration_s: int, slice_s: int
) -> tuple[RequestStats, dict[int, RequestStats]]:
    """What locust records in a short providers-and-treasury run: claims at about 150/s with a
    tail, balance reads, a few slow payouts, and refusals named by status and slug."""
    rng = random.Random(seed)
    stats, slices = RequestStats(), dict[int, RequestStats]()
    plan = [
        ("POST", "/v1/redemptions", 150, (20, 90), ["409 duplicate-claim", "422 payee-frozen"]),
        ("GET", "/v1/institutions/{id}/balances", 30, (5, 40), []),
        ("POST", "/v1/payouts", 1, (300, 2500), ["422 nothing-to-pay"]),
    ]
    for second in range(duration_s):
        index = second // slice_s
        part = slices.setdefault(index, RequestStats(use_response_times_cache=False))
        for method, name, per_s, (low_ms, high_ms), refusals in plan:
            for _ in range(per_s):
                response_time = rng.randint(low_ms, high_ms) * (3 if rng.random() < 0.02 else 1)
                for target in (stats, part):
                    target.log_request(method, name, response_time, 200)
                if refusals and rng.random() < 0.03:
                    refusal = error(rng.choice(refusals))
                    for target in (stats, part):
                        target.log_error(method, name, refusal)
    return stats, slices


def realistic_summary() -> dict[str, Any]:
    scenarios = []
    for n, name in enumerate(("providers", "mixed")):
        stats, slices = recorded_run(n, duration_s=20, slice_s=2)
        scenarios.append(scenario_summary(name, {"ProviderUser": 16}, stats, slices, 2, 20))
    return {
        "generated_at": "2026-12-02T12:00:00+00:00",
        "cores": 2,
        "database": "PostgreSQL",
        "sizes": {"institutions": 10_000, "vouchers": 100_000},
        "seeding": {
            "seconds": 250.0,
            "phases": [{"phase": "vouchers", "requests": 100_000, "seconds": 240.0}],
        },
        "scenarios": scenarios,
    }


def test_locust_stats_become_per_endpoint_rates_percentiles_and_failures_by_slug() -> None:
    stats = RequestStats()
    for response_time_ms, count in ((10, 180), (50, 18), (300, 2)):
        for _ in range(count):
            stats.log_request("POST", "/v1/redemptions", response_time_ms, 100)
    for _ in range(20):
        stats.log_request("GET", "/v1/payables", 7, 100)
    for outcome, count in (("409 duplicate-claim", 3), ("422 voucher-not-active", 2)):
        for _ in range(count):
            stats.log_error("POST", "/v1/redemptions", error(outcome))
    stats.log_error("GET", "/v1/payables", ConnectionResetError("reset"))

    summary = scenario_summary("providers", {"ProviderUser": 16}, stats, {}, 2.0, 10.0)

    redeem, payables = (
        next(e for e in summary["endpoints"] if e["endpoint"] == key)
        for key in ("POST /v1/redemptions", "GET /v1/payables")
    )
    assert (redeem["requests"], redeem["failures"], redeem["per_s"]) == (200, 5, 20.0)
    assert redeem["ok_per_s"] == 19.5
    # locust's percentiles: 180 at 10 ms, 18 at 50 ms, the 2 slowest at 300 ms
    assert (redeem["p50_ms"], redeem["p95_ms"], redeem["p99_ms"], redeem["max_ms"]) == (
        10, 50, 300, 300,
    )  # fmt: skip
    assert redeem["failures_by_outcome"] == {"409 duplicate-claim": 3, "422 voucher-not-active": 2}
    assert payables["failures_by_outcome"] == {"0 ConnectionResetError": 1}
    assert (payables["per_s"], payables["p99_ms"]) == (2.0, 7)
    assert summary["total"]["requests"] == 220 and summary["total"]["failures"] == 6
    assert summary["failures_by_status"] == {
        "0": {"ConnectionResetError": 1},
        "409": {"duplicate-claim": 3},
        "422": {"voucher-not-active": 2},
    }


def test_each_time_slice_has_its_own_rates_and_percentiles_and_the_last_slice_its_length() -> None:
    slices = {0: RequestStats(use_response_times_cache=False)}
    slices[1] = RequestStats(use_response_times_cache=False)
    for _ in range(40):
        slices[0].log_request("POST", "/v1/redemptions", 20, 100)
    for _ in range(10):
        slices[1].log_request("POST", "/v1/redemptions", 80, 100)
    slices[1].log_error("POST", "/v1/redemptions", "CatchResponseError('409 duplicate-claim')")

    rows = scenario_summary("providers", {}, RequestStats(), slices, 2.0, 3.0)["timeline"]

    assert [(r["t_s"], r["seconds"]) for r in rows] == [(0, 2.0), (2.0, 1.0)]
    assert [r["all"]["per_s"] for r in rows] == [20.0, 10.0]
    assert [r["all"]["p99_ms"] for r in rows] == [20, 80]
    assert rows[1]["endpoints"]["POST /v1/redemptions"]["failures"] == 1


def test_the_html_page_fetches_nothing_from_anywhere() -> None:
    page = render_report(realistic_summary())

    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(|@import", page)


def test_every_chart_of_the_page_draws_in_headless_chromium(tmp_path: Path) -> None:
    summary = realistic_summary()
    page = render_report(summary)
    colours = [*COLOURS[:2], OK_COLOUR, FAILED_COLOUR]
    probed = page.replace("</body>", PROBE % {"colours": json.dumps(colours)} + "</body>")
    (tmp_path / "report.html").write_text(probed, encoding="utf-8")
    url = (tmp_path / "report.html").as_uri()

    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", url], tmp_path / "p1")

    charts = probe_of(dom)
    expected = {f"{kind}-{n}" for kind in ("latency", "throughput") for n in range(2)}
    assert {c["chart"] for c in charts} == expected
    for chart in charts:
        assert chart["marks"] >= 2, chart  # two lines, or one bar per endpoint
        assert chart["width"] > 50 and chart["height"] > 10, chart
        assert chart["coloured"] > 200, chart  # pixels of a series colour, rasterised


def test_a_screenshot_of_the_page_is_not_blank(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text(render_report(realistic_summary()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    run_chromium(
        [f"--screenshot={shot}", "--window-size=1000,1600", (tmp_path / "report.html").as_uri()],
        tmp_path / "p1",
    )
    check = tmp_path / "check.html"
    check.write_text(SCREENSHOT_CHECK % base64.b64encode(shot.read_bytes()).decode())

    seen = probe_of(
        run_chromium(["--virtual-time-budget=5000", "--dump-dom", check.as_uri()], tmp_path / "p2")
    )

    assert (seen["width"], seen["height"]) == (1000, 1600)
    assert seen["notWhite"] > 20_000  # text, tables, axes and the series
    assert seen["colours"] >= 5
