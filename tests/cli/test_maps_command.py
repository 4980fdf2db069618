"""`rpbench maps` end to end on a tiny PNG written here: the page and its panels, what the page says about the
weights, and one error line with exit 2 (and nothing written) for each kind of bad input."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attentions
from rpbench.cli import app
from rpbench.core.maps import RANDOM_WEIGHTS

pytestmark = pytest.mark.slow  # the fast lane leaves these out: routing maps rendered to PNG and SVG

TINY = ["--resolution", "32", "--patch", "8", "--dim", "8", "--heads", "2"]


@pytest.fixture()
def png(tmp_path):
    image = np.zeros((40, 32, 3), np.uint8)  # not square: the centred 32×32 square is used
    image[:, :16] = (255, 0, 0)
    image[:, 16:] = (0, 0, 255)
    path = tmp_path / "two.png"
    Image.fromarray(image).save(path)
    return path


def _checkpoint(path, embedding=True, **changes):
    torch.manual_seed(3)
    state = dict(attentions.build("rpattention", dim=8, num_heads=2, grid=(4, 4), m=2).state_dict())
    if embedding:
        state["patch_embed.weight"], state["patch_embed.bias"] = torch.randn(8, 3, 8, 8) * 0.01, torch.zeros(8)
    state.update(changes)
    torch.save(state, path)
    return path


def maps(*args):
    return CliRunner().invoke(app, ["maps", *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize(("attention", "m"), [("rpattention", "2"), ("agent", "4"), ("cbsa", "4")])
def test_the_page_and_its_panels_are_written(tmp_path, png, attention, m):
    out = tmp_path / "out"
    result = maps("--attention", attention, "--image", str(png), *TINY, "--knob", f"m={m}", "--points",
                  "3,3;30,20", "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "maps.html").read_text(encoding="utf-8")
    assert RANDOM_WEIGHTS in page and f"mechanism</dt><dd>{attention}" in page
    assert "pixel (30, 20), token (2, 3)" in page and "4×4 = 16 tokens" in page
    for name in ("image", "assignment", "point1-path", "point1-dense", "point2-path", "point2-dense"):
        assert (out / "panels" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ET.parse(out / "panels" / f"{name}.svg").getroot().tag.endswith("svg")
    assert not (out / "panels" / "point3-path.png").exists()
    assert "wrote" in result.stdout and "random" in result.stdout


def test_with_a_checkpoint_the_page_does_not_say_random(tmp_path, png):
    out = tmp_path / "out"
    result = maps("--attention", "rpattention", "--image", str(png), *TINY, "--knob", "m=2", "--checkpoint",
                  str(_checkpoint(tmp_path / "rp.pt")), "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "maps.html").read_text(encoding="utf-8")
    assert "random" not in page and "weights from the checkpoint" in page and "rp.pt" in page
    assert "random" not in result.stdout


def test_a_checkpoint_without_an_embedding_says_the_embedding_is_random(tmp_path, png):
    out = tmp_path / "out"
    result = maps("--attention", "rpattention", "--image", str(png), *TINY, "--knob", "m=2", "--checkpoint",
                  str(_checkpoint(tmp_path / "rp.pt", embedding=False)), "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "maps.html").read_text(encoding="utf-8")
    assert RANDOM_WEIGHTS not in page and "no patch_embed.* keys: the patch embedding is seeded random" in page


def _bad_inputs(tmp_path, png):
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "half.png").write_bytes(png.read_bytes()[:60])
    base = ["--attention", "rpattention", "--image", str(png), *TINY, "--knob", "m=2"]
    with_image = lambda image: [*base[:2], "--image", image, *base[4:]]  # noqa: E731
    return {
        "missing image": (with_image(str(tmp_path / "nope.png")), "no such file"),
        "directory image": (with_image(str(tmp_path)), "is a directory"),
        "text image": (with_image(str(tmp_path / "notes.txt")), "not an image"),
        "truncated image": (with_image(str(tmp_path / "half.png")), "not an image"),
        "resolution not a multiple": ([*base, "--resolution", "30"], "not a multiple of --patch"),
        "too small for agent": (["--attention", "agent", "--image", str(png), *TINY], "m=49 agents for N=16"),
        "too small for m": ([*base[:-1], "m=17"], "m=17 representatives for N=16"),
        "point outside": ([*base, "--points", "32,0"], "outside the 32×32 image"),
        "negative point": ([*base, "--points", "-1,4"], "outside"),
        "point syntax": ([*base, "--points", "1,2,3"], "expected x,y pairs"),
        "unknown knob": ([*base, "--knob", "nosuch=1"], "unknown knob"),
        "interact_proj": ([*base, "--knob", "interact_proj=True"], "interact_proj"),
        "checkpoint missing": ([*base, "--checkpoint", str(tmp_path / "none.pt")], "no such file"),
        "checkpoint not torch": ([*base, "--checkpoint", str(tmp_path / "notes.txt")], "not a torch state dict"),
        "checkpoint extra key": ([*base, "--checkpoint", str(_checkpoint(tmp_path / "a.pt", bogus=torch.ones(1)))],
                                 "unexpected: bogus"),
        "checkpoint wrong shape": ([*base, "--checkpoint", str(_checkpoint(tmp_path / "b.pt",
                                                                           **{"route.weight": torch.ones(3, 8)}))],
                                   "wrong shape: route.weight (3, 8)"),
        "checkpoint bad embedding": ([*base, "--checkpoint", str(_checkpoint(
            tmp_path / "c.pt", **{"patch_embed.weight": torch.ones(8, 3, 4, 4)}))], "patch embedding"),
        "heads do not divide dim": ([*base, "--heads", "3"], "not divisible"),
        "seed negative": ([*base, "--seed", "-1"], "--seed -1"),
        "out is a file": ([*base, "--out", str(tmp_path / "notes.txt")], "is a file"),
    }


def test_every_bad_input_is_one_line_and_exit_2(tmp_path, png):
    for label, (args, words) in _bad_inputs(tmp_path, png).items():
        out = tmp_path / "never"
        result = maps(*args, *(["--out", str(out)] if "--out" not in args else []))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, (label, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (label, lines)
        assert "Traceback" not in result.output and not out.exists(), label


def test_help_lists_the_choices_and_options():
    shown = " ".join(maps("--help").output.replace("│", " ").split())
    for text in ("rpattention|agent|cbsa", "--image", "--resolution", "--patch", "--points", "--checkpoint", "--knob",
                 "--dim", "--heads", "--seed", "--out"):
        assert text in shown, text
