"""Are rpbench's intervals honest on this machine? One command measures it and writes the committed evidence.

    python benchmarks/noise_calibration.py                      # about 3 minutes on an idle 2-core CPU
    python benchmarks/noise_calibration.py --out /tmp/calib     # somewhere else

What it does, on a subset of the quick suite (SUBSET: eight mechanisms at its three sizes, fp32 forward):

1. Three *default* runs (`rpbench sweep quick --filter SUBSET`, the shipped settings: 3 rounds, adaptive rounds
   toward ±target_ci_pct) and one long *reference* run of the same cases with REFERENCE_ROUNDS rounds and no
   extra ones, in the order default, reference, default, default (so a slow trend of the machine does not line up
   with one kind of run).
2. For every default run, against the reference run's medians (the best estimate of each case's latency here):
   - coverage: the share of rows whose 95 % interval (latency_ms_ci_low–high) holds the reference median
     (goal ≥ 90 %); and agreement: the share whose median is within both runs' interval half-widths combined of
     the reference's (log scale: the reference median is an estimate too);
   - the median ± of the intervals (ci_pct), the mean rounds a row took and the share that met the target;
   - the share of rows flagged (any flag), and of rows `unstable`;
   - speedup order: over every pair of mechanisms at one size (unflagged in both runs), the share ordered as in
     the reference by their speedup over dense; and the share of speedups whose interval holds the reference's;
   - wall time of the sweep, and the machine's drift (the reference kernel) and others' load during it.
3. Writes OUT/calibration.json (every number), OUT/calibration.md (the table for the README) and OUT/rows.csv
   (per case: the reference median, and each default run's median, interval and flags). The run dirs stay under
   results/noise-calibration-runs/ (git-ignored: results/ is, except results/reference/).

The whole script stays under 15 minutes: it stops taking default runs (keeping at least three) once
TIME_LIMIT_S would be passed, and says so.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "reference" / "cpu-calibration"
SUBSET = "dense,dense-naive,window,linear,agent,sra,efficient,rpattention"
REFERENCE_ROUNDS = 12
DEFAULT_RUNS = 3
TIME_LIMIT_S = 15 * 60
GOAL_COVERAGE = 0.90


def quick_suite() -> Path:
    from rpbench.suites import find_suite

    return Path(find_suite("quick"))


def reference_suite(scratch: Path) -> Path:
    """The quick suite with REFERENCE_ROUNDS rounds and no extra ones: the long run the defaults are judged by."""
    text = quick_suite().read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(rounds|max_rounds|extra_time_pct) = .*\n", "", text)  # the quick suite's own
    extra = f"rounds = {REFERENCE_ROUNDS}\nmax_rounds = {REFERENCE_ROUNDS}\n"
    text = text.replace("[measure]\n", "[measure]\n" + extra, 1).replace('name = "quick"', 'name = "quick-reference"')
    path = scratch / "quick-reference.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sweep(suite: Path | str, out: Path) -> float:
    """`rpbench sweep SUITE --filter SUBSET` in a fresh process; its wall time, s."""
    began = time.perf_counter()
    command = [sys.executable, "-m", "rpbench", "sweep", str(suite), "--out", str(out), "--filter", SUBSET,
               "--no-report"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    seconds = time.perf_counter() - began
    (out.parent / f"{out.name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}); see {out.parent / (out.name + '.log')}")
    return seconds


def analysed(run_dir: Path) -> pd.DataFrame:
    """The case table of a run as `rpbench report` computes it (flags, intervals, speedups vs dense)."""
    from rpbench.analysis import analyse_run
    from rpbench.results import store

    run = store.load_run(run_dir)
    return analyse_run(run.frame, run.env, "dense", "latency", samples=run.samples).summary.set_index("case_id")


def _concordant(ours: pd.Series, theirs: pd.Series) -> tuple[int, int]:
    """(pairs ordered alike, pairs compared) of two series of speedups indexed alike."""
    same = total = 0
    for a, b in combinations(ours.index, 2):
        mine, ref = ours[a] - ours[b], theirs[a] - theirs[b]
        if mine == 0 or ref == 0:
            continue
        total += 1
        same += (mine > 0) == (ref > 0)
    return same, total


def judge(reference: pd.DataFrame, run: pd.DataFrame) -> dict[str, float]:
    """The numbers of one default run against the reference run (see the module docstring)."""
    timed = run[run["ok"]]
    shared = timed.index.intersection(reference[reference["ok"]].index)
    truth = reference.loc[shared, "latency_ms_median"].astype(float)
    low, high = timed.loc[shared, "latency_ms_ci_low"].astype(float), timed.loc[shared, "latency_ms_ci_high"].astype(float)
    has = low.notna() & high.notna()
    covered = (low <= truth) & (truth <= high)
    # The reference median is an estimate too (its own interval): the two runs agree when their medians are closer
    # than both half-widths together allow (log scale), the test `compare` makes with a threshold of 0.
    ref_low = reference.loc[shared, "latency_ms_ci_low"].astype(float)
    ref_high = reference.loc[shared, "latency_ms_ci_high"].astype(float)
    gap = (np.log(timed.loc[shared, "latency_ms_median"].astype(float)) - np.log(truth)).abs()
    allowed = np.sqrt((np.log(high / low) / 2) ** 2 + (np.log(ref_high / ref_low) / 2) ** 2)
    both = has & ref_low.notna() & ref_high.notna()
    agree = gap <= allowed
    # The machine's level moves between runs minutes apart (every case of a run slower together): the common shift,
    # as `rpbench compare --shift` takes it out, is the median ratio run / reference over the rows usable in both.
    usable_both = shared[timed.loc[shared, "usable"].to_numpy() & reference.loc[shared, "usable"].to_numpy()]
    shift = float(np.exp(np.median(np.log(timed.loc[usable_both, "latency_ms_median"].astype(float)
                                          / truth[usable_both])))) if len(usable_both) else 1.0
    covered_shifted = (low / shift <= truth) & (truth <= high / shift)
    agree_shifted = (np.log(timed.loc[shared, "latency_ms_median"].astype(float) / shift) - np.log(truth)).abs() \
        <= allowed
    same = total = 0
    speedup_covered = speedup_total = 0
    usable = shared[timed.loc[shared, "usable"].to_numpy() & reference.loc[shared, "usable"].to_numpy()]
    for _, rows in timed.loc[usable].groupby("tokens"):
        ours = rows["speedup"].astype(float).dropna()
        theirs = reference.loc[ours.index, "speedup"].astype(float).dropna()
        ours = ours.loc[theirs.index]
        pair = _concordant(ours, theirs)
        same, total = same + pair[0], total + pair[1]
        others = rows.loc[theirs.index]
        others = others[others["mechanism"] != "dense"]
        inside = (others["speedup_low"].astype(float) <= theirs[others.index]) & \
                 (theirs[others.index] <= others["speedup_high"].astype(float))
        speedup_covered, speedup_total = speedup_covered + int(inside.sum()), speedup_total + len(others)
    return {
        "rows": int(len(timed)),
        "coverage": float(covered[has].mean()) if has.any() else float("nan"),
        "agreement": float(agree[both].mean()) if both.any() else float("nan"),
        "shift": shift,
        "coverage_shifted": float(covered_shifted[has].mean()) if has.any() else float("nan"),
        "agreement_shifted": float(agree_shifted[both].mean()) if both.any() else float("nan"),
        "with_interval": int(has.sum()),
        "median_ci_pct": float(timed["ci_pct"].astype(float).median()),
        "mean_rounds": float(timed["rounds"].astype(float).mean()),
        "target_met": float(timed["target_met"].astype("boolean").fillna(False).astype(bool).mean()),
        "flagged": float(timed["flagged"].mean()),
        "unstable": float(timed["unstable"].astype("boolean").fillna(False).astype(bool).mean()),
        "speedup_order_agreement": same / total if total else float("nan"),
        "speedup_pairs": total,
        "speedup_coverage": speedup_covered / speedup_total if speedup_total else float("nan"),
        "paired_share": float((timed["speedup_method"] == "paired-t").sum() / max(1, timed["speedup"].notna().sum())),
    }


def machine_state(run_dir: Path) -> dict[str, float | None]:
    from rpbench.results import store

    frame = store.load(run_dir)
    drift = store.run_drift(run_dir)
    return {"drift_pct": None if drift is None else drift.sd_pct,
            "others_busy_cores_median": float(frame["others_busy_cores"].astype(float).median()),
            "disturbed_rows": float(frame["disturbed"].astype("boolean").fillna(False).astype(bool).mean())}


def table(results: dict) -> str:
    """The markdown table of calibration.md and the README."""
    lines = ["| run | wall s | coverage of the reference median | agrees with the reference | common shift vs the "
             "reference | coverage, shift out | agrees, shift out | median ± | rounds (mean) | target met | flagged | "
             "unstable | speedup order vs dense | speedup coverage | drift ± | others' cores |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for run in results["runs"]:
        j, m = run["judged"], run["machine"]
        drift = "—" if m["drift_pct"] is None else f"{m['drift_pct']:.1f} %"
        lines.append(f"| {run['name']} | {run['wall_s']:.0f} | {j['coverage']:.0%} ({j['with_interval']} rows) | "
                     f"{j.get('agreement', float('nan')):.0%} | {100 * (j.get('shift', 1.0) - 1):+.0f} % | "
                     f"{j.get('coverage_shifted', float('nan')):.0%} | {j.get('agreement_shifted', float('nan')):.0%} | "
                     f"{j['median_ci_pct']:.1f} % | {j['mean_rounds']:.1f} | {j['target_met']:.0%} | {j['flagged']:.0%} | "
                     f"{j['unstable']:.0%} | {j['speedup_order_agreement']:.0%} of {j['speedup_pairs']} pairs | "
                     f"{j['speedup_coverage']:.0%} | {drift} | {m['others_busy_cores_median']:.2f} |")
    ref = results["reference"]
    drift = "—" if ref["machine"]["drift_pct"] is None else f"{ref['machine']['drift_pct']:.1f} %"
    lines.append(f"| reference ({REFERENCE_ROUNDS} rounds) | {ref['wall_s']:.0f} | — | — | — | — | — | "
                 f"{ref['median_ci_pct']:.1f} % | "
                 f"{ref['mean_rounds']:.1f} | — | {ref['flagged']:.0%} | — | — | — | {drift} | "
                 f"{ref['machine']['others_busy_cores_median']:.2f} |")
    return "\n".join(lines)


def rows_table(reference: pd.DataFrame, runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    out = reference[["mechanism", "tokens", "latency_ms_median", "latency_ms_ci_low", "latency_ms_ci_high",
                     "flags"]].add_prefix("reference_")
    for name, frame in runs.items():
        part = frame[["latency_ms_median", "latency_ms_ci_low", "latency_ms_ci_high", "rounds", "speedup",
                      "speedup_low", "speedup_high", "speedup_method", "flags"]].add_prefix(f"{name}_")
        out = out.join(part, how="left")
    return out.sort_values(["reference_tokens", "reference_mechanism"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the evidence goes (default {OUT})")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="default runs to take (at least 3)")
    parser.add_argument("--again", action="store_true", help="judge the last runs taken again, measuring nothing")
    args = parser.parse_args()
    began = time.perf_counter()
    out = args.out
    scratch = ROOT / "results" / "noise-calibration-runs"
    scratch.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    order = ["default-1", "reference"] + [f"default-{i}" for i in range(2, max(3, args.runs) + 1)]
    walls: dict[str, float] = {}
    if args.again:  # the newest stamp's runs and walls, as the last measuring call left them
        saved = sorted(scratch.glob("*-walls.json"))
        if not saved:
            raise SystemExit(f"--again: no runs under {scratch}")
        stamp = saved[-1].name.removesuffix("-walls.json")
        walls = json.loads(saved[-1].read_text(encoding="utf-8"))
        load_before = tuple(walls.pop("loadavg_before", (0.0, 0.0, 0.0)))
        order = []
    for name in order:
        if name != "reference" and len([n for n in walls if n != "reference"]) >= 3 \
                and time.perf_counter() - began > TIME_LIMIT_S * 0.8:
            print(f"{name}: skipped, the script would pass {TIME_LIMIT_S / 60:.0f} minutes", flush=True)
            continue
        suite = reference_suite(scratch) if name == "reference" else "quick"
        walls[name] = sweep(suite, scratch / f"{stamp}-{name}")
        print(f"{name}: {walls[name]:.0f} s", flush=True)
        (scratch / f"{stamp}-walls.json").write_text(json.dumps({**walls, "loadavg_before": load_before}),
                                                      encoding="utf-8")
    reference = analysed(scratch / f"{stamp}-reference")
    runs = {name: analysed(scratch / f"{stamp}-{name}") for name in walls if name != "reference"}
    timed_ref = reference[reference["ok"]]
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "subset": SUBSET, "goal_coverage": GOAL_COVERAGE,
        "reference": {"wall_s": walls["reference"], "rows": int(len(timed_ref)),
                      "median_ci_pct": float(timed_ref["ci_pct"].astype(float).median()),
                      "mean_rounds": float(timed_ref["rounds"].astype(float).mean()),
                      "flagged": float(timed_ref["flagged"].mean()),
                      "machine": machine_state(scratch / f"{stamp}-reference")},
        "runs": [{"name": name, "wall_s": walls[name], "judged": judge(reference, frame),
                  "machine": machine_state(scratch / f"{stamp}-{name}")} for name, frame in runs.items()],
        "script_s": sum(walls.values()) if args.again else time.perf_counter() - began,  # --again: the sweeps'
    }
    coverages = [run["judged"]["coverage"] for run in results["runs"]]
    results["coverage_mean"] = float(np.nanmean(coverages))
    results["agreement_mean"] = float(np.nanmean([run["judged"]["agreement"] for run in results["runs"]]))
    results["coverage_shifted_mean"] = float(np.nanmean([run["judged"]["coverage_shifted"] for run in results["runs"]]))
    (out / "calibration.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    rows_table(reference, runs).to_csv(out / "rows.csv")
    others = max(run["machine"]["others_busy_cores_median"] for run in [*results["runs"], results["reference"]])
    note = (f"Measured {results['measured_at']} on {os.cpu_count()} CPUs; other processes kept at most "
            f"{others:.2f} cores busy during a run (median over its passes)" +
            (": the machine was busy." if others >= 0.25 else ": the machine was otherwise idle."))
    text = (f"# Noise calibration (benchmarks/noise_calibration.py)\n\n{note} Subset: {SUBSET} × the quick suite's "
            f"sizes. Mean coverage {results['coverage_mean']:.0%} (goal ≥ {GOAL_COVERAGE:.0%}), mean agreement "
            f"{results['agreement_mean']:.0%}; with each run's common shift against the reference taken out (as "
            f"`rpbench compare` does for runs of the same code), mean coverage {results['coverage_shifted_mean']:.0%}; "
            f"the script took "
            f"{results['script_s'] / 60:.1f} min.\n\n{table(results)}\n")
    (out / "calibration.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
