"""The table a paper prints, in LaTeX (booktabs) and markdown: mechanism rows × size columns of one metric, best
per column in bold, the speedup over the baseline with its 95 % interval beside each value, flagged cells marked,
one table per setting (dtype, mode, batch, ...) and a caption that states the setting.

The numbers are the case table's (`format`), so a paper, the terminal report and report.html print the same digits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..analysis import RunAnalysis
from .format import BAND_MARK, CI_NAMES, md_cell
from .grid import Cell, MetricGrid, metric_grids

FLAG_MARK = "*"


@dataclass
class PaperTable:
    """A metric grid with the caption and notes a paper prints under it."""

    caption: str
    columns: list[str]  # size headers: "N = 196" or "224 px"
    unit: str = ""
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)  # (mechanism, one cell per column)
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)


def _paper_table(grid: MetricGrid) -> PaperTable:
    baseline = grid.baseline
    caption = (f"{grid.quantity}; {grid.setting}. Bold: best in its column"
               + (f"; beside each value, its {grid.label} speedup over {baseline} with its 95 % interval"
                  if baseline else "") + ".")
    table = PaperTable(caption=caption, columns=grid.columns, unit=grid.unit, rows=grid.rows, baseline=baseline)
    if baseline:
        table.notes.append("Speedups round-paired where both cases were timed in the same rounds (the ratio per "
                           "round, combined with a 95 % t interval); otherwise the ratio of medians with a 95 % "
                           "interval from both cases' pass medians. Methods here: "
                           + (", ".join(CI_NAMES.get(m, m) for m in grid.speedup_methods) or "none") + ".")
    if any(c.speedup.endswith(BAND_MARK) for c in grid.cells()):
        table.notes.append(f"{BAND_MARK} Interval from the p20–p80 ends paired least favourably (no samples).")
    if any(c.flagged for c in grid.cells()):
        table.notes.append(f"{FLAG_MARK} Flagged (disturbed, unstable, throttled or implausible): not to be "
                           f"believed; left out of bold and speedups.")
    return table


def paper_tables(run: RunAnalysis) -> list[PaperTable]:
    """One table per setting (context) of the run, in the order the case table lists them."""
    return [_paper_table(grid) for grid in metric_grids(run)]


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
