"""The figures as data (views.figures), drawn interactively (views.interactive) and as static files (views.static):
looks, ticks, shared axes, flagged points, the speedup figure, and the SVG/PDF/PNG files with their contents."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

import attentions
from rpbench.analysis import analyse_run
from rpbench.results import store
from rpbench.views.figures import build_figures, fmt_tick, log_ticks, measured_ticks
from rpbench.views.interactive import to_plotly
from rpbench.views.palette import HIGHLIGHT, LOOKS, looks_for
from rpbench.views.static import render, write_figures

from cli_helpers import invoke
from fake_runs import make_row, scaling_rows, write_run

SVG = "{http://www.w3.org/2000/svg}"


def _grid(side: int) -> dict:
    return dict(tokens=side * side, resolution=side * 16, height=side, width=side, patch=16)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """dense and rpattention (m=64) on four sizes, rpattention m=16 on two, agent on three with one disturbed, and
    a float32 copy of dense and rpattention m=64: two facets."""
    rows = scaling_rows()
    rows += [make_row(attention="rpattention", m=16, knobs='{"m": 16}', latency_ms_median=lat, **_grid(side))
             for side, lat in ((28, 0.6), (56, 2.0))]
    rows += [make_row(attention="agent", latency_ms_median=0.2, **_grid(14)),
             make_row(attention="agent", latency_ms_median=0.7, disturbed=True, others_busy_cores=1.5, **_grid(28)),
             make_row(attention="agent", latency_ms_median=2.7, **_grid(56))]
    rows += [dict(row, dtype="float32", case_id=row["case_id"] + "f", latency_ms_median=row["latency_ms_median"] * 3,
                  latency_ms_p20=row["latency_ms_p20"] * 3, latency_ms_p80=row["latency_ms_p80"] * 3)
             for row in scaling_rows()]
    return write_run(tmp_path_factory.mktemp("figures") / "run", rows)


@pytest.fixture(scope="module")
def analysed(run_dir):
    run = store.load_run(run_dir)
    return analyse_run(run.frame, run.env, samples=run.samples)


@pytest.fixture(scope="module")
def figures(analysed):
    return {figure.key: figure for figure in build_figures(analysed)}


def test_every_builtin_mechanism_has_its_own_colour_and_marker():
    builtin = sorted(attentions.builtin())
    missing = [name for name in builtin if name not in LOOKS]
    assert not missing, f"give these a look in views/palette.py: {missing}"
    colours = [LOOKS[name].color for name in builtin]
    assert len(set(colours)) == len(colours)
    assert LOOKS["window"].color != LOOKS["agent"].color and LOOKS["window"].marker != LOOKS["agent"].marker
    plugins = looks_for(["zeta", "alpha", "rpattention"])
    assert plugins["rpattention"] == LOOKS["rpattention"] and plugins["alpha"].color not in colours
    assert plugins["alpha"] != plugins["zeta"]


def test_one_look_per_mechanism_in_every_figure_and_rpattention_highlighted(figures):
    seen: dict[str, set] = {}
    for figure in figures.values():
        for panel in figure.panels:
            for series in panel.series:
                seen.setdefault(series.mechanism, set()).add((series.color, series.marker))
                assert series.highlight == (series.mechanism == HIGHLIGHT)
            assert not panel.series[-1].highlight or panel.series[-1].mechanism == HIGHLIGHT  # drawn last: on top
    assert all(len(looks) == 1 for looks in seen.values()), seen
    assert seen["rpattention"] == {(LOOKS["rpattention"].color, "circle")}
    latency = figures["latency-vs-tokens"].panels[0].series
    dashes = {s.name: s.dash for s in latency if s.mechanism == "rpattention"}
    assert sorted(dashes.values()) == ["dash", "solid"]  # the two variants of one mechanism tell apart by dash


def test_ticks_at_the_measured_sizes_and_panels_share_the_y_axis(figures):
    latency = figures["latency-vs-tokens"]
    assert latency.x_ticks == (196, 784, 3136, 12544)
    assert figures["throughput-vs-resolution"].x_ticks == (224, 448, 896, 1792)
    assert [p.title for p in latency.panels] == ["dtype=bfloat16", "dtype=float32"]
    low = min(v for p in latency.panels for s in p.series for v in (*s.low, *s.y))
    high = max(v for p in latency.panels for s in p.series for v in (*s.high, *s.y))
    assert low <= latency.y_ticks[0] <= low * 10 and high / 10 <= latency.y_ticks[-1] <= high  # both panels
    plot = to_plotly(latency)
    assert plot.layout.xaxis.tickvals == (196, 784, 3136, 12544)
    assert plot.layout.xaxis.ticktext == ("196", "784", "3,136", "12,544")
    assert plot.layout.yaxis2.matches == "y"  # one y range for both panels
    assert plot.layout.legend.orientation == "h" and plot.layout.legend.y < 0  # below the plots, outside them


def test_flagged_points_are_drawn_hollow_and_not_joined(figures):
    agent = next(s for s in figures["latency-vs-tokens"].panels[0].series if s.mechanism == "agent")
    assert agent.x == (196, 784, 3136) and agent.flagged == (False, True, False)
    assert agent.notes[1].startswith("disturbed")
    traces = [t for t in to_plotly(figures["latency-vs-tokens"]).data if t.legendgroup == "agent"]
    line = next(t for t in traces if t.mode == "lines+markers")
    hollow = next(t for t in traces if t.mode == "markers")
    assert tuple(line.x) == (196, 3136) and tuple(hollow.x) == (784,)
    assert hollow.marker.symbol.endswith("-open") and "disturbed" in hollow.customdata[0]


def test_speedup_figure_holds_the_summary_speedups_and_their_intervals(figures, analysed):
    speedup = figures["speedup-vs-tokens"]
    assert speedup.reference == 1.0 and speedup.interval == "bars"
    assert "bars: 95 % interval (one pass))" in speedup.title  # one pass each: every interval from it
    assert set(analysed.summary["speedup_method"].dropna()) == {"within-pass"}
    summary = analysed.summary
    for panel in speedup.panels:
        assert "dense" not in {s.mechanism for s in panel.series}
        for series in panel.series:
            rows = summary[(summary["line"] == series.name) & (summary["facet"] == panel.title)
                           & summary["speedup"].notna()].sort_values("tokens")
            assert series.x == tuple(rows["tokens"].astype(float))
            assert series.y == pytest.approx(tuple(rows["speedup"].astype(float)))
            assert series.low == pytest.approx(tuple(rows["speedup_low"].astype(float)))
            assert series.high == pytest.approx(tuple(rows["speedup_high"].astype(float)))
    agent = next(s for s in speedup.panels[0].series if s.mechanism == "agent")
    assert agent.x == (196, 3136)  # the disturbed case has no speedup
    plot = to_plotly(speedup)
    assert any(shape.y0 == 1.0 and shape.y1 == 1.0 for shape in plot.layout.shapes)
    bars = next(t for t in plot.data if t.name == "agent")
    assert bars.error_y.array[0] == pytest.approx(agent.high[0] - agent.y[0])


def test_svg_has_one_series_per_curve_and_marks_flagged_points(figures):
    svg = ET.fromstring(render(figures["latency-vs-tokens"], "svg"))
    ids = [g.get("id") for g in svg.iter(f"{SVG}g") if g.get("id")]
    series = sorted(i for i in ids if i.startswith("series:"))
    names = figures["latency-vs-tokens"].names
    assert len(series) == sum(len(p.series) for p in figures["latency-vs-tokens"].panels)
    assert sorted(set(series)) == sorted({"series:" + n.replace(" ", "_").replace("(", "_").replace(")", "_")
                                          for n in names})
    assert [i for i in ids if i.startswith("flagged:")] == ["flagged:agent"]
    text = " ".join(t.text or "" for t in svg.iter(f"{SVG}text")) + " ".join(
        "".join(t.itertext()) for t in svg.iter(f"{SVG}text"))
    for label in ("3,136", "12,544", "tokens N", "dtype=float32", "flagged (hollow): left out of fits"):
        assert label in text, label


def test_static_files_pdf_svg_png_on_request_and_reproducible(figures, tmp_path):
    chosen = [figures["latency-vs-tokens"], figures["speedup-vs-tokens"]]
    written = write_figures(chosen, tmp_path / "a")
    assert sorted(p.name for p in written) == sorted(f"{f.key}.{ext}" for f in chosen for ext in ("svg", "pdf"))
    again = write_figures(chosen, tmp_path / "b", ("svg", "pdf", "png"))
    for path in written:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name  # same run, same bytes
    assert (tmp_path / "a" / "speedup-vs-tokens.pdf").read_bytes().startswith(b"%PDF-")
    png = [p for p in again if p.suffix == ".png"]
    assert len(png) == 2 and all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in png)


def test_tick_helpers():
    assert [fmt_tick(v) for v in (196, 3136, 262144, 1.5e9, 0.5)] == ["196", "3,136", "262k", "1.5G", "0.5"]
    assert measured_ticks([4, 1, 2, 2]) == (1, 2, 4)
    many = measured_ticks([2.0**i for i in range(20)])
    assert len(many) == 10 and many[0] == 1 and many[-1] == 2.0**19
    assert log_ticks(0.06, 25) == (0.1, 0.2, 0.5, 1, 2, 5, 10, 20)
    assert log_ticks(0.06, 250) == (0.1, 1, 10, 100)  # past 3 decades: decades only
    assert log_ticks(1e3, 1e9) == (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
    assert log_ticks(0.62, 0.8) == (0.7, 0.8)
    assert log_ticks(0.62, 0.65) == (0.6, 0.7)  # inside one step: the neighbours frame it


def test_report_and_export_write_the_figures(run_dir, tmp_path):
    small = write_run(tmp_path / "small", [make_row(attention=name, tokens=n, latency_ms_median=f(n))
                                           for name, f in (("dense", lambda n: 1e-5 * n * n), ("rpattention", float))
                                           for n in (64, 256, 1024)])
    result = invoke("report", str(small), "--figures", str(tmp_path / "figs"), "--png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(
        f"{key}.{ext}" for key in ("latency-vs-tokens", "speedup-vs-tokens") for ext in ("svg", "pdf", "png"))
    result = invoke("export", str(small), "--format", "figures")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (small / "figures").iterdir()) == sorted(
        f"{key}.{ext}" for key in ("latency-vs-tokens", "speedup-vs-tokens") for ext in ("svg", "pdf"))
    for args, message in ((("report", str(run_dir), "--png"), "--png needs --figures"),
                          (("export", str(run_dir), "--format", "md", "--png"), "--png is for --format figures"),
                          (("report", str(run_dir), "--figures", str(run_dir / "results.csv")), "is a file")):
        result = invoke(*args)
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_export_figures_of_a_run_without_a_successful_case(tmp_path):
    write_run(tmp_path / "failed", [make_row(attention="dense", status="error", notes="boom")])
    result = invoke("export", str(tmp_path / "failed"), "--format", "figures")
    assert result.exit_code == 2 and "no successful case to draw" in result.output
    assert not (tmp_path / "failed" / "figures").exists()
