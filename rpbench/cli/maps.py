"""`rpbench maps`: the routing maps of the RPAttention paper's figure 1 for one image, as a page and static files."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core.case import safe_name
from .app import command, console
from .options import _choices, plain

MapAttention = _choices("MapAttention", ("rpattention", "agent", "cbsa"))


@command("maps")
def maps_command(
    attention: MapAttention = typer.Option(..., "--attention", help="Mechanism whose routing to draw: rpattention "
                                           "(its representatives), agent (its agents) or cbsa (its "
                                           "representatives)."),
    image: Path = typer.Option(..., "--image", help="Image file (PNG, JPEG, anything PIL reads); its centred square "
                               "is resized to --resolution."),
    resolution: int = typer.Option(224, "--resolution", help="Image side in px, a multiple of --patch (at most "
                                   "2048; at most 16384 tokens)."),
    patch: int = typer.Option(16, "--patch", help="Patch side in px: one token per patch."),
    points: Optional[str] = typer.Option(None, "--points", help="Query points as x,y pixel pairs in the resized "
                                         "image, separated by ';', e.g. '40,60;150,100' (at most 16). Default: four "
                                         "points at the quarter marks."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="State dict of the attention layer (torch "
                                              "file, loaded strictly); keys patch_embed.weight (dim, 3, patch, "
                                              "patch) and patch_embed.bias load the patch embedding too. Without "
                                              "it the weights are random (seeded) and the page says so."),
    knobs: list[str] = typer.Option([], "--knob", help="Mechanism knob as key=value (repeatable), e.g. --knob m=16 "
                                    "or --knob tau=0.5 (see `rpbench list`)."),
    dim: int = typer.Option(64, "--dim", help="Channels C of the tokens and the layer (1 to 4096)."),
    heads: int = typer.Option(4, "--heads", help="Attention heads (dividing --dim); maps average over heads."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights (layer and patch embedding) when no "
                             "checkpoint gives them (0 to 2**63-1)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Dir for maps.html and panels/ (PNG and SVG). Default: "
                                       "results/maps/<attention>-<image name>-<resolution>."),
) -> None:
    """Draw routing maps: each token's representative, and query points' maps through the representatives beside
    dense attention's, into an offline HTML page plus PNG/SVG panels."""
    from ..views.static import need_matplotlib

    need_matplotlib("routing maps")  # before the layer is built: the panels are drawn by matplotlib
    from ..measure.maps import compute_maps
    from ..results.store import make_dir
    from ..suites.flags import parse_knobs
    from ..views.maps import write_maps

    name = plain(attention)
    maps = compute_maps(name, image, resolution, patch, points, parse_knobs(knobs), dim, heads, seed, checkpoint)
    out_dir = make_dir(out or Path("results") / "maps" / safe_name(f"{name}-{image.stem}-{resolution}"), "--out")
    written = write_maps(maps, out_dir)
    console.print(Text(f"wrote {written[0]} and {len(written) - 1} panel files in {out_dir / 'panels'}"))
    if maps.random_weights:
        console.print(Text("note: the weights are random (no --checkpoint); the maps show an untrained layer"))
