"""maps.html: one offline page of routing maps (every panel embedded as a PNG data URI), plus each panel as static
PNG and SVG files under panels/, so a figure can go into a paper without a browser.

The page states everything that decides what the maps show: mechanism, knobs, resolution, patch, grid, M, the
embedding that turned pixels into tokens, where the weights came from (and, without a checkpoint, that they are
random: maps of an untrained layer show its initialisation, not learned routing) and what the path map composes.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from ..core.maps import RANDOM_WEIGHTS, RoutingMaps
from ..results.store import make_dir, write_file
from .map_panels import panels, render

PAGE = "maps.html"
PANEL_DIR = "panels"
FORMATS = ("png", "svg")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 1.6rem; border-bottom: 1px solid #ddd; }
.meta { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; font-size: .9rem; }
.meta dt { font-weight: bold; } .meta dd { margin: 0; }
.warning { background: #fff4d6; border: 1px solid #e0b44c; padding: .5rem .8rem; font-weight: bold; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: .8rem; color: #555; max-width: 460px; }
img { display: block; } .files { font-size: .85rem; } code { background: #f3f3f3; padding: 0 .2rem; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _token_text(maps: RoutingMaps, values: np.ndarray) -> str:
    """The range (an untrained layer's maps are nearly uniform: the colours stretch a narrow range), where the
    largest weight is, and the total (1 for products of softmax maps; not for cbsa or normalize=False)."""
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return (f"weights from {values.min():.3g} to {values[row, col]:.3g} (largest at token ({row}, {col})); "
            f"they sum to {values.sum():.4g}")


def _figure(name: str, images: dict[str, bytes], caption: str = "") -> str:
    data = base64.b64encode(images[name]).decode("ascii")
    links = " ".join(f'<a href="{PANEL_DIR}/{name}.{fmt}">{fmt.upper()}</a>' for fmt in FORMATS)
    return (f'<figure><img alt="{_esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)} {links}</figcaption></figure>")


def _meta(maps: RoutingMaps) -> str:
    knobs = ", ".join(f"{key}={value!r}" for key, value in sorted(maps.knobs.items())) or "none"
    tokens = maps.grid[0] * maps.grid[1]
    fields = [
        ("mechanism", maps.attention), ("knobs", knobs),
        ("resolution", f"{maps.resolution}×{maps.resolution} px"), ("patch", f"{maps.patch} px"),
        ("token grid", f"{maps.grid[0]}×{maps.grid[1]} = {tokens} tokens"),
        (f"M ({maps.rep_word}s)", maps.reps), ("dim, heads", f"{maps.dim}, {maps.heads}"), ("seed", maps.seed),
        ("weights", maps.weights), ("embedding", maps.embedding),
        ("path map", maps.path_formula + "; averaged over heads"),
        ("dense map", "softmax(q·kᵀ·d^-½) with this layer's own q/k projections, averaged over heads"),
    ]
    rows = "".join(f"<dt>{_esc(key)}</dt><dd>{_esc(value)}</dd>" for key, value in fields)
    return f'<dl class="meta">{rows}</dl>'


def page(maps: RoutingMaps, images: dict[str, bytes]) -> str:
    """The whole page as one string; `images` maps panel names to their PNG bytes."""
    title = f"Routing maps: {maps.attention}, {maps.resolution}×{maps.resolution} px, M={maps.reps}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>"]
    if maps.random_weights:
        parts.append(f'<p class="warning">The {_esc(RANDOM_WEIGHTS)}: the layer and the patch embedding are drawn from '
                     f"seed {maps.seed}, so these maps show an untrained layer's initialisation, not learned "
                     "routing. Give --checkpoint for a trained one.</p>")
    parts.append(_meta(maps))
    parts += [f"<p>note: {_esc(note)}</p>" for note in maps.notes]
    used = len(np.unique(maps.assignment))
    parts += ["<h2>Assignment of every token</h2>",
              f"<p>Each patch is coloured by the {_esc(maps.rep_word)} its token is assigned to (the largest "
              f"weight, averaged over heads); white lines separate tokens with different {_esc(maps.rep_word)}s. "
              f"{used} of the {maps.reps} {_esc(maps.rep_word)}s hold at least one token.</p>",
              '<div class="row">', _figure("image", images, "The input and the query points."),
              _figure("assignment", images, f"Colour = {maps.rep_word} index (60 colours, repeating)."), "</div>",
              "<h2>Query points</h2>",
              f"<p>Left: how much each token's value reaches the query's output through the "
              f"{_esc(maps.rep_word)}s. Right: dense softmax attention for the same query with the same "
              "weights.</p>"]
    for index, (x, y) in enumerate(maps.points):
        row, col = maps.point_token(index)
        parts += [f"<h3>Point {index + 1}: pixel ({x}, {y}), token ({row}, {col})</h3>", '<div class="row">',
                  _figure(f"point{index + 1}-path", images, _token_text(maps, maps.path[index]) + "."),
                  _figure(f"point{index + 1}-dense", images, _token_text(maps, maps.dense[index]) + "."),
                  "</div>"]
    parts.append(f'<p class="files">Every panel is also in <code>{PANEL_DIR}/</code> as PNG and SVG.</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_maps(maps: RoutingMaps, out_dir: Path) -> list[Path]:
    """Draw every panel, write it as PNG and SVG under out_dir/panels, then the page; the paths written."""
    panel_dir = make_dir(Path(out_dir) / PANEL_DIR, "--out")
    written: list[Path] = []
    pngs: dict[str, bytes] = {}
    for name, draw in panels(maps).items():
        figure = draw()
        for fmt in FORMATS:
            content = render(figure, fmt)
            if fmt == "png":
                pngs[name] = content
            written.append(write_file(panel_dir / f"{name}.{fmt}", content))
    written.insert(0, write_file(Path(out_dir) / PAGE, page(maps, pngs)))
    return written
