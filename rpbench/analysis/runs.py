"""Several runs side by side: each run analysed exactly as `rpbench report RUN` analyses it (its own baseline rows,
its own samples, its own fits), then laid into one table whose curves never cross a run.

Case identity across runs is `case_id`: the hash of the case's defining fields (`core.case.CASE_ID_FIELDS`: scope,
mechanism and label, knobs, batch, grid, dim, heads, dtype, mode, device kind, m, resolution, patch, backbone,
layout, and compile / precision / channels_last when not their defaults). Where the case ran (the device model,
host, torch, commit, timer) is not part of it: those are the run facets that tell the same case apart across runs.

In the joined table (`combined`) every row keeps its run's columns (`run`, `run_device`, ... see
`results.runs.RunFacets.as_columns`) and its context key gets the run (so speedups, best marks and fits stay inside
one run). Where the rows ran on more than one device model, the device model leads the panel (`facet`): one panel
per device. Where each device model was measured by one run, the run joins the panel's title and the curves keep
the mechanisms' names; where runs share a device (commits, torch versions on one GPU), each curve's name ends in
its run's name (told apart by dash, the colour staying the mechanism's). A curve never joins points of two runs,
two device models or two timers (a run that mixed timers in one curve gets one curve per timer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..core.errors import AnalysisError
from ..results.runs import LabelledRun, RunFacets
from .metrics import Metric, get_metric
from .run import RunAnalysis, analyse_run

# Facets that may tell runs apart, in the order the legends list them.
RUN_FACETS = ("device", "host", "torch", "commit", "timer", "date")


@dataclass(frozen=True)
class AnalysedRun:
    facets: RunFacets
    rows: pd.DataFrame  # the run's table as the store read it
    analysis: RunAnalysis
    samples: pd.DataFrame | None = None  # samples.csv (the bootstrap draws of a comparison with another run)


@dataclass(frozen=True)
class RunsAnalysis:
    runs: list[AnalysedRun]
    metric: Metric
    baseline: str | None
    combined: RunAnalysis  # every run's rows and case summary in one table (see the module docstring)

    @property
    def names(self) -> list[str]:
        return [run.facets.name for run in self.runs]

    def varying(self) -> list[str]:
        """The run facets whose values differ between the runs (what the legends must show)."""
        return [name for name in RUN_FACETS if len({str(getattr(r.facets, name)) for r in self.runs}) > 1]


def _with_runs(parts: list[tuple[RunFacets, pd.DataFrame]]) -> pd.DataFrame:
    """Prepared tables (or case summaries) of several runs as one, curves told apart by run, device and timer."""
    frames = []
    for facets, frame in parts:
        part = frame.copy()
        for column, value in facets.as_columns().items():
            part[column] = pd.Series([value] * len(part), index=part.index, dtype="string" if column != "run_dirty"
                                     else "boolean")
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    device = out["device_name"].astype("string").fillna(out["run_device"])
    alone = bool((out.groupby(device)["run"].nunique() == 1).all())  # each device model measured by one run
    if device.nunique() > 1:
        panel = [f"{d} · {r}" if alone else str(d) for d, r in zip(device, out["run"])]
        out["facet"] = [f"{p} · {f}" if f else p for p, f in zip(panel, out["facet"])]
    if not (alone and device.nunique() > 1):  # runs share a panel: the curve names the run
        out["setting"] = [f"{s} · {r}" if s else str(r) for s, r in zip(out["setting"], out["run"])]
    timers = out["timer"].astype("string").fillna("")
    mixed = timers.groupby([out["run"], out["series"], out["setting"], out["facet"]]).transform("nunique") > 1
    out["setting"] = [f"{s} · timer={t}" if m else s for s, t, m in zip(out["setting"], timers, mixed)]
    out["line"] = [f"{name} · {s}" if s else str(name) for name, s in zip(out["series"], out["setting"])]
    out["_context"] = out["_context"] + "\x1f" + out["run"].astype(str)
    return out


def combine(runs: Sequence[AnalysedRun], metric: Metric, baseline: str | None) -> RunAnalysis:
    """One RunAnalysis holding every run's rows and summary (see `_with_runs`), for the figures of several runs."""
    frame = _with_runs([(r.facets, r.analysis.frame) for r in runs])
    summary = _with_runs([(r.facets, r.analysis.summary) for r in runs])
    empty = pd.DataFrame()
    return RunAnalysis(frame=frame, env={}, baseline=baseline, metric=metric, summary=summary, exponents=empty,
                       crossings=empty)


def analyse_runs(runs: Sequence[LabelledRun], baseline: str | None = None, metric: str = "latency") -> RunsAnalysis:
    """Every run analysed on its own (`analyse_run`), then joined. AnalysisError naming the run for a baseline
    one of them lacks."""
    chosen = get_metric(metric)
    analysed = []
    for labelled in runs:
        run = labelled.run
        try:
            analysis = analyse_run(run.frame, run.env, baseline, metric, samples=run.samples)
        except AnalysisError as err:
            raise AnalysisError(f"run {labelled.facets.name} ({run.directory}): {err}") from None
        analysed.append(AnalysedRun(labelled.facets, run.frame, analysis, run.samples))
    resolved = next((r.analysis.baseline for r in analysed if r.analysis.baseline is not None), None)
    return RunsAnalysis(analysed, chosen, resolved, combine(analysed, chosen, resolved))
