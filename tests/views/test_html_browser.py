"""report.html opened in headless Chromium with no network: the plotly graphs render and the page asks for nothing.

How "no network" is checked: Chromium runs behind a proxy on a closed port (so nothing could load) and writes a
NetLog. Requests made on behalf of a page carry the page's site (file://) in their network isolation key or have a
page initiator; Chromium's own background services (component updater, time and account queries) carry neither.
A positive control page with an <img> and a fetch() proves the detector sees page requests.
Skipped only when Chromium is absent outside CI; in CI (env CI set) a missing Chromium fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rpbench.views.html import write_html

from fake_runs import DEFAULT_ENV, make_row, scaling_rows, write_run

pytestmark = pytest.mark.slow  # the fast lane leaves these out: a headless Chromium per page

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def _chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is required in CI for the report.html browser test (apt-get install -y chromium)")
    pytest.skip("Chromium not installed (apt-get install -y chromium)")


def _open(page: Path, workdir: Path) -> tuple[str, dict]:
    """Load a page headless behind a dead proxy; return the rendered DOM and the parsed NetLog."""
    netlog = workdir / "netlog.json"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={workdir / 'profile'}",
        "--proxy-server=http://127.0.0.1:9",  # discard port: nothing listens, nothing can load
        f"--log-net-log={netlog}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, json.loads(netlog.read_text())


def page_requests(netlog: dict) -> list[str]:
    """http(s) URLs that a page (not the browser itself) asked for."""
    event_types = {value: name for name, value in netlog["constants"]["logEventTypes"].items()}
    urls = []
    for event in netlog["events"]:
        if event_types.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        url = params.get("url", "")
        from_page = "file://" in params.get("network_isolation_key", "") or params.get("initiator") != "not an origin"
        if url.startswith(("http://", "https://")) and from_page:
            urls.append(url)
    return urls


def test_detector_sees_requests_a_page_makes(tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.invalid/probe.png">'
        '<script>fetch("https://example.invalid/data.json").catch(() => {});</script></body></html>'
    )
    _, netlog = _open(page, tmp_path)
    assert set(page_requests(netlog)) == {"http://example.invalid/probe.png", "https://example.invalid/data.json"}


def test_report_renders_offline_without_requests(tmp_path):
    rows = scaling_rows(dense_oom_at=12544)
    rows += [make_row(attention="rpattention", m=m, knobs=f'{{"m": {m}}}', tokens=3136, latency_ms_median=m / 20)
             for m in (16, 128)]
    run_dir = write_run(tmp_path / "run", rows, env=dict(DEFAULT_ENV, ceilings={"bfloat16": 700.0}))
    report = write_html(run_dir)
    figures = int(re.search(r'name="rpbench-figures" content="(\d+)"', report.read_text()).group(1))
    assert figures == 8  # latency, memory, throughput vs resolution, latency vs M, FLOPs, TFLOP/s, 2 speedups

    dom, netlog = _open(report, tmp_path)

    plots = re.findall(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b', dom)  # class added by Plotly.newPlot
    assert len(plots) == figures
    assert len(re.findall(r'<svg[^>]*class="main-svg"', dom)) >= figures
    assert len(re.findall(r'class="trace scatter', dom)) >= figures  # traces were drawn, not just empty axes
    assert "Latency per call vs tokens" in dom
    assert page_requests(netlog) == []


# Injected into a copy of report.html: once plotly has drawn, write each figure's geometry into the DOM.
GEOMETRY = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const out = [...document.querySelectorAll(".js-plotly-plot")].map(plot => {
    const box = el => el.getBoundingClientRect();
    const areas = [...plot.querySelectorAll(".nsewdrag")].map(box);
    const legend = plot.querySelector(".legend");
    const entries = [...plot.querySelectorAll(".legend .traces")];
    const scroll = plot.querySelector(".legend .scrollbar");
    return {title: (plot.querySelector(".gtitle") || {}).textContent || "",
            areas_bottom: Math.max(...areas.map(a => a.bottom)), areas: areas.length,
            legend_top: legend ? box(legend).top : null, legend_bottom: legend ? box(legend).bottom : null,
            plot_bottom: box(plot).bottom, entries: entries.map(e => e.textContent),
            hidden: entries.filter(e => box(e).bottom > box(plot).bottom + 1 || box(e).height === 0).length,
            scrollbar: scroll ? box(scroll).height : 0,
            xticks: [...plot.querySelectorAll(".xtick text")].map(t => t.textContent)};
  });
  const pre = document.createElement("pre"); pre.id = "geometry"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500));
</script>"""


def test_figures_legends_sit_below_the_plots_whole_and_ticks_at_measured_sizes(tmp_path):
    """Eleven mechanisms: every legend entry is drawn below the plot area, none scrolled out of sight (the
    complaint was a scrolling legend that hid some), and the x ticks are exactly the measured sizes."""
    names = ["dense", "rpattention", "window", "agent", "linear", "focused", "efficient", "sra", "cbsa", "grid",
             "neighborhood"]
    rows = [make_row(attention=name, tokens=n, latency_ms_median=(i + 1) * 1e-4 * n) for i, name in enumerate(names)
            for n in (196, 784, 3136, 12544)]
    run_dir = write_run(tmp_path / "run", rows)
    page = write_html(run_dir)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", GEOMETRY + "</body>"))
    dom, _ = _open(probe, tmp_path)
    geometry = json.loads(re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S).group(1).replace("&amp;", "&"))
    assert len(geometry) >= 2
    for figure in geometry:
        assert figure["legend_top"] >= figure["areas_bottom"], figure["title"]
        assert figure["legend_bottom"] <= figure["plot_bottom"] + 1, figure["title"]
        assert figure["hidden"] == 0 and figure["scrollbar"] == 0, figure["title"]
        assert figure["xticks"] == ["196", "784", "3,136", "12,544"], figure["title"]
    latency = next(f for f in geometry if f["title"].startswith("Latency per call"))
    assert sorted(latency["entries"]) == sorted(names)
    speedup = next(f for f in geometry if "speedup" in f["title"])
    assert sorted(speedup["entries"]) == sorted(set(names) - {"dense"})


def test_routing_map_page_renders_offline_with_every_image_decoded(tmp_path):
    """maps.html in headless Chromium behind the dead proxy: every embedded panel decodes (naturalWidth > 0) and the
    page asks for nothing."""
    from rpbench.views.maps import write_maps

    from test_map_page import hand_made

    page = write_maps(hand_made(), tmp_path / "maps")[0]
    probe = tmp_path / "maps" / "probe.html"
    probe.write_text(page.read_text().replace("</body>", """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const pre = document.createElement("pre"); pre.id = "decoded";
  pre.textContent = JSON.stringify(images.map(i => i.naturalWidth));
  document.body.appendChild(pre);
});
</script></body>"""))
    dom, netlog = _open(probe, tmp_path)
    widths = json.loads(re.search(r'<pre id="decoded">(.*?)</pre>', dom, re.S).group(1))
    assert len(widths) >= 4 and all(w > 0 for w in widths), widths
    assert page_requests(netlog) == []


def test_report_of_several_runs_renders_offline_as_one_file(tmp_path):
    """The page of several runs (two device models, two runs on one of them): every figure drawn, a panel per
    device model, the run legend and matrix present, and nothing asked of the network."""
    from rpbench.analysis import get_metric
    from rpbench.analysis.matrix import run_matrix
    from rpbench.analysis.runs import analyse_runs
    from rpbench.results.runs import load_runs
    from rpbench.views.runs_html import render_runs_html

    from multi_runs import A100, commit_runs, device_runs

    dirs = [*device_runs(tmp_path / "devices"), commit_runs(tmp_path / "commits")[2]]
    runs = analyse_runs(load_runs(dirs))
    page = tmp_path / "runs.html"
    page.write_text(render_runs_html(runs, run_matrix(runs.runs, get_metric("latency"))))
    assert not list(page.parent.glob("*.js"))  # one file: plotly.js is inside it
    figures = int(re.search(r'name="rpbench-figures" content="(\d+)"', page.read_text()).group(1))
    assert figures == 7

    dom, netlog = _open(page, tmp_path)

    assert len(re.findall(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b', dom)) == figures
    assert len(re.findall(r'class="trace scatter', dom)) >= figures
    assert dom.count(f">{A100}<") >= figures and dom.count(">NVIDIA H100 80GB HBM3<") >= figures  # panel titles
    assert "rpattention · run-c3" in dom and "0.50× [0.45–0.55]" in dom  # a curve per run on the H100; the matrix
    assert page_requests(netlog) == []


def test_history_page_renders_offline_with_the_change_marked(tmp_path):
    from rpbench.analysis import get_metric
    from rpbench.analysis.history import history
    from rpbench.results.runs import load_runs
    from rpbench.views.runs_html import render_history_html

    from multi_runs import commit_runs

    found = history(load_runs(commit_runs(tmp_path / "commits")), get_metric("latency"), by="commit")
    page = tmp_path / "history.html"
    page.write_text(render_history_html(found))

    dom, netlog = _open(page, tmp_path)

    assert len(re.findall(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b', dom)) == 2  # dense, rpattention
    # One big red triangle (the regression) in the rpattention figure, none anywhere else.
    assert len(re.findall(r'<path class="point"[^>]*style="[^"]*fill: rgb\(214, 39, 40\)', dom)) == 1
    assert re.findall(r'class="regression">([^<]*)<', dom) == ["1.57 (+100 %)"]
    assert page_requests(netlog) == []
