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
    assert figures == 6

    dom, netlog = _open(report, tmp_path)

    plots = re.findall(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b', dom)  # class added by Plotly.newPlot
    assert len(plots) == figures
    assert len(re.findall(r'<svg[^>]*class="main-svg"', dom)) >= figures
    assert len(re.findall(r'class="trace scatter', dom)) >= figures  # traces were drawn, not just empty axes
    assert "Latency per call vs tokens" in dom
    assert page_requests(netlog) == []
