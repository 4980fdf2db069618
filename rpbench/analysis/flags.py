"""Which rows must not be believed, and why: every row gets `flags` (reasons, "; "-joined) and `flagged`.

A row is flagged when its output is `inaccurate` (its status: rel_err above the dtype's tolerance), when other
processes disturbed every pass pooled into it (`disturbed`), its passes disagree by more than the machine's own
drift explains (`unstable`, see `core.drift`), a GPU clock limit was active (`throttled`), or it is implausible
within its curve: latency that falls
by more than IMPLAUSIBLE_DROP× while tokens and FLOPs grow. Fits, crossovers, speedups and compare leave flagged
rows out and say how many. `noisy` (a wide IQR) is marked in every table but does not flag a row: a sub-millisecond
CPU case is often noisy yet right, and its spread already widens every interval built from it.
"""
from __future__ import annotations

import pandas as pd

IMPLAUSIBLE_DROP = 2.0
FLAG_KINDS = ("inaccurate", "disturbed", "unstable", "throttled", "implausible")


def _true(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(False, index=frame.index)
    return frame[column].astype("boolean").fillna(False).astype(bool)


def _number(value: object, digits: int = 3) -> str:
    return f"{float(value):.{digits}g}"


def _disturbed_reason(row: pd.Series) -> str:
    parts = []
    if pd.notna(row.get("others_busy_cores")):
        parts.append(f"other processes kept {row['others_busy_cores']:.2f} cores busy")
    if pd.notna(row.get("gpu_others")) and row["gpu_others"]:
        parts.append(f"{int(row['gpu_others'])} other process(es) on the GPU")
    return "disturbed: " + (" and ".join(parts) or "other processes were busy")


def _unstable_reason(row: pd.Series) -> str:
    spread, drift = row.get("round_spread_pct"), row.get("drift_pct")
    if pd.isna(spread):
        return "unstable"
    if pd.isna(drift):
        return f"unstable: passes {spread:.0f} % apart"
    return f"unstable: passes {spread:.0f} % apart, beyond the machine's drift (±{drift:.1f} %)"


def implausible_pairs(frame: pd.DataFrame) -> dict[int, str]:
    """Row index -> why it is implausible, from every pair of ok rows of one curve where the larger case (more
    tokens, no fewer FLOPs) is more than IMPLAUSIBLE_DROP× faster. When one row of the pair is already flagged
    for another reason it alone is blamed; otherwise both are, since either may be the wrong one."""
    found: dict[int, list[str]] = {}
    flops = frame["flops_analytic"].astype("Float64").fillna(frame["flops_counted"].astype("Float64"))
    latency = frame["latency_ms_median"].astype("Float64")
    usable = frame["ok"] & latency.notna() & (latency > 0) & flops.notna() & frame["tokens"].notna()
    already = (_true(frame, "disturbed") | _true(frame, "unstable") | _true(frame, "throttled")
               | (frame["status"] == "inaccurate"))
    for _, rows in frame[usable].groupby(["_context", "_variant"], sort=False):
        ordered = rows.sort_values("tokens")
        for small in ordered.index:
            for large in ordered.index:
                if not (frame.at[large, "tokens"] > frame.at[small, "tokens"] and flops[large] >= flops[small]):
                    continue
                if latency[large] * IMPLAUSIBLE_DROP >= latency[small]:
                    continue
                why = (f"implausible: N={int(frame.at[small, 'tokens'])} took {_number(latency[small])} ms but "
                       f"N={int(frame.at[large, 'tokens'])} (more tokens and FLOPs) {_number(latency[large])} ms")
                blamed = [i for i in (small, large) if already[i]] or [small, large]
                for index in blamed:
                    found.setdefault(index, []).append(why)
    return {index: "; ".join(dict.fromkeys(reasons)) for index, reasons in found.items()}


def flag_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """`implausible`, `flags` (the reasons), `flag_kinds` (their kinds, comma-joined) and `flagged` for a prepared
    table (needs ok, _context, _variant)."""
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    kinds: list[list[str]] = [[] for _ in range(len(frame))]
    position = {index: i for i, index in enumerate(frame.index)}

    def add(index, kind: str, why: str) -> None:
        reasons[position[index]].append(why)
        kinds[position[index]].append(kind)

    for index, row in frame[frame["status"] == "inaccurate"].iterrows():
        add(index, "inaccurate", f"inaccurate: rel_err {row['rel_err']:.3g}" if pd.notna(row.get("rel_err"))
            else "inaccurate")
    for index, row in frame[frame["ok"] & _true(frame, "disturbed")].iterrows():
        add(index, "disturbed", _disturbed_reason(row))
    for index, row in frame[frame["ok"] & _true(frame, "unstable")].iterrows():
        add(index, "unstable", _unstable_reason(row))
    for index in frame[frame["ok"] & _true(frame, "throttled")].index:
        add(index, "throttled", "throttled: GPU clocks were pulled down in every pass")
    implausible = implausible_pairs(frame)
    for index, why in implausible.items():
        add(index, "implausible", why)
    text = ["; ".join(found) for found in reasons]
    return pd.DataFrame({
        "implausible": pd.array([index in implausible for index in frame.index], dtype="boolean"),
        "flags": pd.array([t or pd.NA for t in text], dtype="string"),
        "flag_kinds": [",".join(found) for found in kinds],  # the kinds of `flags`, in FLAG_KINDS order
        "flagged": [bool(t) for t in text],
    }, index=frame.index)


def flag_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many ok rows carry each kind of flag, plus `flagged` (any) and `noisy` (marked, not flagged)."""
    ok = frame[frame["ok"]]
    counts = {kind: int(_true(ok, kind).sum()) for kind in FLAG_KINDS if kind != "inaccurate"}
    counts["inaccurate"] = int((ok["status"] == "inaccurate").sum())
    counts["flagged"] = int(ok["flagged"].sum()) if "flagged" in ok else 0
    counts["noisy"] = int(_true(ok, "noisy").sum())
    counts["launch_bound"] = int(_true(ok, "launch_bound").sum())
    return counts


def flag_summary(frame: pd.DataFrame) -> str:
    """One line for the end of a sweep and the top of a report: how many rows are flagged, and why."""
    counts = flag_counts(frame)
    total = int(frame["ok"].sum())
    kinds = ", ".join(f"{counts[kind]} {kind}" for kind in FLAG_KINDS if counts[kind])
    head = (f"{counts['flagged']} of {total} measured rows flagged ({kinds}); fits, crossovers and speedups leave "
            f"them out" if counts["flagged"] else f"no row flagged among {total} measured")
    noisy = f"; {counts['noisy']} noisy (IQR > 10 %, marked, kept)" if counts["noisy"] else ""
    launch = (f"; {counts['launch_bound']} launch-bound (eager CUDA timing of launch overhead; try timer = "
              f"\"cudagraph\"; marked, kept)" if counts["launch_bound"] else "")
    return head + noisy + launch
