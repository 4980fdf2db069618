"""One look per mechanism in every figure, interactive or static, in every run: a fixed colour and marker per
built-in mechanism (keyed by its registry name, not its label, so `rp-m16` and `rpattention` look alike), a dash
per variant of one mechanism, and RPAttention always red and drawn thicker, on top.

Colours come from the Tableau 10 / 20 family, chosen so neighbours in the list differ in hue and lightness (window's
blue is not agent's, as plotly's default cycle made them); marker shapes also differ, so a grey-scale print or a
colour-blind reader can still tell the lines apart. Mechanisms not listed here (plugins) take the light colours in
the order of their names.
"""
from __future__ import annotations

from dataclasses import dataclass

HIGHLIGHT = "rpattention"


@dataclass(frozen=True)
class Look:
    color: str
    marker: str  # plotly symbol name; `static` maps it to matplotlib's


LOOKS: dict[str, Look] = {
    "rpattention": Look("#d62728", "circle"),
    "dense": Look("#111111", "square"),
    "dense-naive": Look("#7f7f7f", "square"),
    "window": Look("#1f77b4", "diamond"),
    "agent": Look("#ff7f0e", "triangle-up"),
    "linear": Look("#2ca02c", "triangle-down"),
    "focused": Look("#9467bd", "pentagon"),
    "efficient": Look("#8c564b", "hexagon"),
    "sra": Look("#e377c2", "star"),
    "cbsa": Look("#17becf", "cross"),
    "grid": Look("#bcbd22", "x"),
    "neighborhood": Look("#393b79", "triangle-left"),
    "biformer": Look("#637939", "triangle-right"),
    "lemevit": Look("#8c6d31", "octagon"),
    "mlla": Look("#7b4173", "diamond-tall"),
    "litemla": Look("#6baed6", "hexagon2"),
    "channel": Look("#e7969c", "circle"),
    "axial": Look("#31a354", "square"),
}
OTHER_COLORS = ("#9edae5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#98df8a", "#ffbb78", "#aec7e8", "#c5b0d5",
                "#ff9896")
OTHER_MARKERS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "pentagon", "hexagon", "star", "x")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def looks_for(mechanisms: list[str]) -> dict[str, Look]:
    """The look of every mechanism of a run: the fixed one where there is one, else the next free light colour."""
    unknown = sorted({m for m in mechanisms if m not in LOOKS})
    extra = {name: Look(OTHER_COLORS[i % len(OTHER_COLORS)], OTHER_MARKERS[i % len(OTHER_MARKERS)])
             for i, name in enumerate(unknown)}
    return {m: LOOKS.get(m) or extra[m] for m in mechanisms}


def rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    red, green, blue = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({red},{green},{blue},{alpha})"
