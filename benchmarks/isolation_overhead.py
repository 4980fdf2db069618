"""What isolation costs: the overhead of a pass in a worker process, and `--workers 2` against a plain sweep.

Every comparison runs interleaved (A B A B ...), so drift and other processes hit both sides alike; read the
ratios, and run it on an idle machine for numbers worth quoting.

    python benchmarks/isolation_overhead.py passes            # one pass: in process / persistent worker / fresh process
    python benchmarks/isolation_overhead.py sweep             # a tiny suite: plain vs --isolate, overhead per pass
    python benchmarks/isolation_overhead.py workers           # the quick suite: plain vs --workers 2 (minutes)
    python benchmarks/isolation_overhead.py workers --suite my.toml --pairs 3

`passes` times the same later pass of a tiny case N times each way: in this process (`runner.measure_again`),
through one persistent worker (`isolated.Slots`, what `--isolate` does now), and in a fresh process per pass
(`isolated.run_again`, what `--isolate` did before workers persisted). `sweep` and `workers` time whole
`rpbench sweep` commands (a new Python each, `--no-report`) and count the passes each took from rounds.csv.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {  # 4 tiny cases, 3 rounds, no retries: every sweep takes the same 12 passes
    "name": "overhead", "description": "isolation overhead probe",
    "axes": {"tokens": [16, 64], "dim": [32], "heads": [4], "device": "cpu"},
    "measure": {"warmup_ms": 1, "repeat": 5, "rounds": 3, "retries": 0},
    "attention": [{"name": "dense"}, {"name": "linear"}],
}


def time_passes(n: int, pairs: int) -> None:
    from rpbench.core.case import CaseFlags, Timing
    from rpbench.measure import isolated
    from rpbench.measure.runner import measure_again, run_case
    from rpbench.suites import case_from_flags

    case = case_from_flags(CaseFlags(attention="dense", tokens=16, dim=32, heads=4, device="cpu"))
    timing = Timing(warmup_ms=1, repeat=5, rounds=1)
    like = run_case(case, timing)
    with isolated.Slots([{}], timeout_s=300) as slots:
        slots.later(case, timing, like)  # the worker started and warm: its start is paid once per sweep

        ways = {
            "in process": lambda: measure_again(case, timing, like),
            "persistent worker": lambda: slots.later(case, timing, like),
            "fresh process": lambda: isolated.run_again(case, timing, like, timeout_s=300),
        }
        per_pass: dict[str, list[float]] = {name: [] for name in ways}
        for pair in range(pairs):
            for name, way in ways.items():
                count = n if name != "fresh process" else max(2, n // 10)
                began = time.perf_counter()
                for _ in range(count):
                    way()
                per_pass[name].append((time.perf_counter() - began) / count)
                print(f"pair {pair + 1}: {name:17s} {per_pass[name][-1] * 1e3:9.1f} ms per pass", flush=True)
        started = slots.started
    base = statistics.median(per_pass["in process"])
    print(f"\nmedian per pass over {pairs} pairs (in process {base * 1e3:.1f} ms):")
    for name in ("persistent worker", "fresh process"):
        ratios = [a - b for a, b in zip(per_pass[name], per_pass["in process"])]
        print(f"  {name:17s} overhead {statistics.median(ratios) * 1e3:8.1f} ms per pass "
              f"(each pair: {', '.join(f'{r * 1e3:.1f}' for r in ratios)} ms)")
    print(f"persistent worker processes started: {started}")


def run_sweep(suite: str, out: Path, extra: list[str]) -> tuple[float, int]:
    """Seconds of `rpbench sweep SUITE --out OUT --no-report EXTRA`, and how many passes it took."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rpbench", "sweep", suite, "--out", str(out), "--no-report", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - began
    passes = len((out / "rounds.csv").read_text().splitlines()) - 1
    return seconds, passes


def compare_sweeps(suite: str, a: list[str], b: list[str], pairs: int, per_pass: bool) -> None:
    names = ("plain", " ".join(b) or "plain")
    times: dict[str, list[tuple[float, int]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="rpbench-overhead-") as scratch:
        for pair in range(pairs):
            for name, extra in zip(names, (a, b)):
                seconds, passes = run_sweep(suite, Path(scratch) / f"{pair}-{len(times[name])}-{name[:9]}", extra)
                times[name].append((seconds, passes))
                print(f"pair {pair + 1}: {name:12s} {seconds:7.1f} s, {passes} passes", flush=True)
    plain, other = times[names[0]], times[names[1]]
    ratios = [o[0] / p[0] for p, o in zip(plain, other)]
    print(f"\n{names[1]} / plain, each pair: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}")
    if per_pass:
        overheads = [(o[0] - p[0]) / o[1] for p, o in zip(plain, other)]
        print(f"overhead per pass, each pair: {', '.join(f'{x * 1e3:.0f}' for x in overheads)} ms; "
              f"median {statistics.median(overheads) * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("passes", "sweep", "workers"))
    parser.add_argument("--pairs", type=int, default=2, help="A/B pairs, interleaved (default 2)")
    parser.add_argument("--n", type=int, default=20, help="passes: later passes per way and pair (default 20)")
    parser.add_argument("--suite", default="quick", help="workers: the suite (default quick)")
    args = parser.parse_args()
    if args.what == "passes":
        time_passes(args.n, args.pairs)
        return
    if args.what == "sweep":
        from rpbench.api import to_toml

        with tempfile.TemporaryDirectory(prefix="rpbench-overhead-suite-") as scratch:
            suite = Path(scratch) / "overhead.toml"
            suite.write_text(to_toml(TINY))
            compare_sweeps(str(suite), [], ["--isolate"], args.pairs, per_pass=True)
        return
    compare_sweeps(args.suite, [], ["--workers", "2"], args.pairs, per_pass=False)


if __name__ == "__main__":
    main()
