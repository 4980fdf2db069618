"""The routing-map page and its static panels, from hand-made arrays (no torch): what the page states, that it is
offline, that every panel is a valid PNG and SVG, and that the assignment's boundaries follow the regions."""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np

from rpbench.core.maps import RANDOM_WEIGHTS, RoutingMaps
from rpbench.views.map_panels import _boundaries, panels
from rpbench.views.maps import write_maps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def hand_made(weights: str = RANDOM_WEIGHTS) -> RoutingMaps:
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = (0, 0, 255)
    assignment = np.array([[0, 1, 1, 1]] * 4)
    path = np.full((2, 4, 4), 1 / 16)
    path[0, 0, 0] = 0.5
    signed = np.linspace(-0.2, 0.3, 16).reshape(4, 4)  # cbsa's maps may be negative: a diverging colour scale
    return RoutingMaps(attention="rpattention", knobs={"m": 2, "route_over": "reps"}, resolution=16, patch=4,
                       grid=(4, 4), dim=8, heads=2, reps=2, seed=7, image=image, assignment=assignment,
                       points=((1, 2), (13, 9)), path=np.stack([path[0], signed]), dense=path, embedding="EMBED-TEXT",
                       weights=weights, path_formula="FORMULA-TEXT", notes=("a <b>note</b>",))


def test_the_page_states_what_decides_the_maps_and_embeds_every_panel(tmp_path):
    written = write_maps(hand_made(), tmp_path)
    page = (tmp_path / "maps.html").read_text(encoding="utf-8")
    assert written[0] == tmp_path / "maps.html"
    for text in ("rpattention", "m=2", "route_over=&#x27;reps&#x27;", "16×16 px", "4 px", "4×4 = 16 tokens",
                 "EMBED-TEXT", "FORMULA-TEXT", "8, 2", "pixel (13, 9), token (2, 3)", RANDOM_WEIGHTS):
        assert text in page, text
    assert "a &lt;b&gt;note&lt;/b&gt;" in page  # escaped, not markup
    assert "2 of the 2 representatives hold at least one token" in page
    assert "weights from 0.0625 to 0.5 (largest at token (0, 0)); they sum to 1.438" in page
    # Offline: no script, no remote resource; the six panels are data URIs holding PNGs.
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 6 and all(base64.b64decode(uri).startswith(PNG_MAGIC) for uri in uris)


def test_a_checkpointed_page_does_not_say_random(tmp_path):
    write_maps(hand_made("weights from the checkpoint /x/rp.pt"), tmp_path)
    page = (tmp_path / "maps.html").read_text(encoding="utf-8")
    assert "random" not in page and "weights from the checkpoint /x/rp.pt" in page


def test_every_panel_is_written_as_valid_png_and_svg(tmp_path):
    written = write_maps(hand_made(), tmp_path)
    names = ["image", "assignment", "point1-path", "point1-dense", "point2-path", "point2-dense"]
    assert sorted(p.name for p in written[1:]) == sorted(f"{n}.{fmt}" for n in names for fmt in ("png", "svg"))
    for name in names:
        assert (tmp_path / "panels" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        root = ET.parse(tmp_path / "panels" / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # The SVGs carry no date: drawing the same maps again gives the same files.
    first = (tmp_path / "panels" / "assignment.svg").read_bytes()
    write_maps(hand_made(), tmp_path)
    assert (tmp_path / "panels" / "assignment.svg").read_bytes() == first


def test_the_assignment_boundaries_follow_the_region_edges():
    two_columns = np.array([[0, 0, 1, 1]] * 3)  # one vertical edge at x = 2·patch, three tokens high
    segments = [seg.tolist() for seg in _boundaries(two_columns, 5).get_segments()]
    assert segments == [[[10, 0], [10, 5]], [[10, 5], [10, 10]], [[10, 10], [10, 15]]]
    one_block = np.array([[2, 2], [2, 2]])
    assert len(_boundaries(one_block, 5).get_segments()) == 0


def test_signed_maps_get_a_scale_centred_on_zero():
    maps = hand_made()
    figure = panels(maps)["point2-path"]()
    norm = figure.axes[0].images[-1].norm
    assert norm.vcenter == 0 and norm.vmin == -0.3 and norm.vmax == 0.3
    # Non-negative maps run from their smallest to their largest value (a flat map gets a unit-wide scale).
    unsigned = panels(maps)["point1-path"]().axes[0].images[-1].norm
    assert (unsigned.vmin, unsigned.vmax) == (1 / 16, 0.5)
    flat = panels(replace(maps, path=np.full((2, 4, 4), 0.25)))["point1-path"]().axes[0].images[-1].norm
    assert (flat.vmin, flat.vmax) == (0.25, 1.25)
