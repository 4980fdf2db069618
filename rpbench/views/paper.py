"""The table a paper prints, in LaTeX (booktabs) and markdown: mechanism rows × size columns of one metric, best
per column in bold, the speedup over the baseline with its 95 % interval beside each value, flagged cells marked,
one table per setting (dtype, mode, batch, ...) and a caption that states the setting.

The numbers are the case table's (`format`), so a paper, the terminal report and report.html print the same digits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from ..analysis import RunAnalysis
from .format import BAND_MARK, CI_NAMES, MISSING, fmt_int, fmt_number, fmt_speedup, md_cell

FLAG_MARK = "*"
QUANTITY = {"latency": "Median latency per call (ms)", "throughput": "Throughput (img/s)",
            "memory": "Peak memory of one call (MiB)"}


@dataclass
class Cell:
    """One mechanism at one size: the value as displayed, bold when best, its flag mark, and its speedup."""

    value: str = MISSING
    best: bool = False
    flagged: bool = False
    speedup: str = ""


@dataclass
class PaperTable:
    caption: str
    columns: list[str]  # size headers: "N = 196" or "224 px"
    unit: str = ""
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)  # (mechanism, one cell per column)
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)


def _first(rows: pd.DataFrame, column: str) -> Any:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
    return values.iloc[0] if len(values) else None


def _device(rows: pd.DataFrame, env: Mapping[str, Any]) -> str:
    """The rows' GPU or CPU model, else env.json's."""
    name = _first(rows, "device_name")
    if name:
        return str(name)
    gpus = env.get("gpus") or []
    if gpus and isinstance(gpus[0], Mapping) and gpus[0].get("name"):
        return str(gpus[0]["name"])
    cpu = env.get("cpu") if isinstance(env.get("cpu"), Mapping) else {}
    return str(cpu.get("model") or "device not recorded")


def _setting(rows: pd.DataFrame, env: Mapping[str, Any]) -> str:
    """What the table was measured on and with, for its caption."""
    parts = [_device(rows, env)]
    labels = (("dtype", "{}"), ("mode", "{}"), ("batch", "batch {}"), ("backbone", "{}"))
    parts += [form.format(_first(rows, col)) for col, form in labels if _first(rows, col) is not None]
    dim, heads = _first(rows, "dim"), _first(rows, "heads")
    if dim is not None and _first(rows, "scope") != "backbone":
        parts.append(f"C = {dim}" + (f", {heads} heads" if heads is not None else ""))
    parts.append(f"torch {env.get('torch') or 'not recorded'}")
    parts.append(f"timer {_first(rows, 'timer') or 'not recorded'}")
    return "; ".join(parts)


def _sizes(rows: pd.DataFrame) -> tuple[str, list[Any], list[str]]:
    """The size axis: image side when every row of the setting has one (a resolution sweep), else tokens N."""
    if rows["resolution"].notna().all() and rows["resolution"].nunique() > 1:
        sizes = sorted(rows["resolution"].dropna().unique())
        return "resolution", sizes, [f"{fmt_int(s)} px" for s in sizes]
    sizes = sorted(rows["tokens"].dropna().unique())
    return "tokens", sizes, [f"N = {fmt_int(s)}" for s in sizes]


def _best(rows: pd.DataFrame, axis: str, column: str, higher_is_better: bool) -> set[Any]:
    """Index of the rows with the best value of their column (same size), among the usable ones; none where a
    column has fewer than two distinct values (nothing was beaten)."""
    usable = rows[rows["usable"] & rows[column].notna()]
    found: set[Any] = set()
    for _, same in usable.groupby(axis):
        values = same[column].astype(float)
        if values.nunique() > 1:
            found |= set(values.index[values == (values.max() if higher_is_better else values.min())])
    return found


def _cell(row: pd.Series, best: bool, metric_column: str, baseline: str | None) -> Cell:
    if not row["ok"]:
        return Cell(value=str(row["status"]))
    speedup = ""
    if baseline is not None:
        speedup = "1.00×" if row["mechanism"] == baseline and not row["flagged"] else fmt_speedup(row)
    return Cell(value=fmt_number(row[metric_column]), best=best, flagged=bool(row["flagged"]), speedup=speedup)


def paper_tables(run: RunAnalysis) -> list[PaperTable]:
    """One table per setting (context) of the run, in the order the case table lists them."""
    summary, metric = run.summary, run.metric
    tables = []
    for _, rows in summary.groupby("_context", sort=False):
        axis, sizes, headers = _sizes(rows)
        best = _best(rows, axis, metric.column, metric.higher_is_better)
        baseline = run.baseline if run.baseline in set(rows["mechanism"]) else None
        table = PaperTable(caption="", columns=headers, unit=metric.unit, baseline=baseline)
        # The baseline first, then the other curves by name (rpattention (m=16) before (m=64)), as a paper lists them.
        curves = sorted(rows.groupby("_variant", sort=False),
                        key=lambda item: (item[1]["mechanism"].iloc[0] != baseline, str(item[1]["series"].iloc[0])))
        for _, curve in curves:
            by_size = {value: row for value, (_, row) in zip(curve[axis], curve.iterrows())}
            cells = [_cell(by_size[s], by_size[s].name in best, metric.column, baseline) if s in by_size
                     else Cell() for s in sizes]
            table.rows.append((str(curve["series"].iloc[0]), cells))
        table.caption = (f"{QUANTITY[metric.name]}; {_setting(rows, run.env)}. Bold: best in its column"
                         + (f"; beside each value, its {metric.label} speedup over {baseline} with its 95 % interval"
                            if baseline else "") + ".")
        if baseline:
            methods = sorted({m for m in rows["speedup_method"].dropna() if m != "p20-p80"})
            table.notes.append("Speedups round-paired where both cases were timed in the same rounds (the ratio per "
                               "round, combined with a 95 % t interval); otherwise the ratio of medians with a 95 % "
                               "interval from both cases' pass medians. Methods here: "
                               + (", ".join(CI_NAMES.get(m, m) for m in methods) or "none") + ".")
        if any(c.speedup.endswith(BAND_MARK) for _, cells in table.rows for c in cells):
            table.notes.append(f"{BAND_MARK} Interval from the p20–p80 ends paired least favourably (no samples).")
        if any(c.flagged for _, cells in table.rows for c in cells):
            table.notes.append(f"{FLAG_MARK} Flagged (disturbed, unstable, throttled or implausible): not to be "
                               f"believed; left out of bold and speedups.")
        tables.append(table)
    return tables


# ---------------------------------------------------------------- LaTeX

# Characters LaTeX reads as commands, and the typographic ones the reports print, as text-mode LaTeX. Brackets are
# braced: a row that starts with `[` would otherwise be read as the optional argument of the `\\` before it.
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "[": "{[}", "]": "{]}",
          "×": r"$\times$", "–": "--", "—": "---", "·": r"$\cdot$", "≈": r"$\approx$", "†": r"$^\dagger$",
          "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "\n": " "}


def latex_escape(text: str) -> str:
    """Any text (labels come from suite files) as literal LaTeX text."""
    return "".join(_LATEX.get(char, char) for char in str(text))


def _latex_value(cell: Cell) -> str:
    text = latex_escape(cell.value)
    text = rf"\textbf{{{text}}}" if cell.best else text
    return text + (r"$^{*}$" if cell.flagged else "")


def to_latex(tables: list[PaperTable]) -> str:
    """Each table in its own `table` float with booktabs rules (\\usepackage{booktabs} in the preamble)."""
    out = ["% rpbench export --format latex; needs \\usepackage{booktabs}"]
    for number, table in enumerate(tables, 1):
        width = 2 if table.baseline else 1
        spec = "l" + "r" * width * len(table.columns)
        header = ["Mechanism"]
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.caption)}}}",
                 rf"\label{{tab:rpbench-{number}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        if table.baseline:
            tops = [rf"\multicolumn{{2}}{{c}}{{{latex_escape(c)}}}" for c in table.columns]
            lines.append(" & ".join([""] + tops) + r" \\")
            lines.append(" ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(table.columns))))
            header += [latex_escape(table.unit), latex_escape(f"× {table.baseline}")] * len(table.columns)
        else:
            header += [latex_escape(c) for c in table.columns]
        lines += [" & ".join(header) + r" \\", r"\midrule"]
        for label, cells in table.rows:
            parts = [latex_escape(label)]
            for cell in cells:
                parts.append(_latex_value(cell))
                if table.baseline:
                    parts.append(latex_escape(cell.speedup))
            lines.append(" & ".join(parts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if table.notes:
            lines.append(r"\par\smallskip\footnotesize " + " ".join(latex_escape(n) for n in table.notes))
        lines.append(r"\end{table}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------- markdown


def to_paper_markdown(tables: list[PaperTable]) -> str:
    """Each table as a caption line, a GitHub-flavoured table and its notes."""
    out = []
    for number, table in enumerate(tables, 1):
        header = ["mechanism"]
        for column in table.columns:
            header += [column] + ([f"{column} × {table.baseline}"] if table.baseline else [])
        lines = [f"**Table {number}.** {md_cell(table.caption)}", "",
                 "| " + " | ".join(md_cell(h) for h in header) + " |", "|---|" + "--:|" * (len(header) - 1)]
        for label, cells in table.rows:
            parts = [md_cell(label)]
            for cell in cells:
                value = md_cell(cell.value)
                value = f"**{value}**" if cell.best else value
                parts.append(value + (f"\\{FLAG_MARK}" if cell.flagged else ""))
                if table.baseline:
                    parts.append(md_cell(cell.speedup))
            lines.append("| " + " | ".join(parts) + " |")
        lines += [""] + [md_cell(note) for note in table.notes]
        out.append("\n".join(lines).rstrip() + "\n")
    return "\n".join(out)
