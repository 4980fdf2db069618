"""`rpbench maps`: an image becomes tokens, one attention layer runs on them, its routing becomes arrays to draw.

Pixels to tokens, without a trained model: the image is centre-cropped to a square and resized to R×R, normalised
with the ImageNet mean and std, and cut into p×p patches by a linear patch embedding (a stride-p Conv2d, as a ViT's,
weights (dim, 3, p, p)); a fixed 2-D sin-cos position code is added. Without a checkpoint the embedding and the
layer are drawn from `--seed`, so the page says their weights are random. A checkpoint is the layer's own state dict
(loaded strictly), optionally with `patch_embed.weight` and `patch_embed.bias` for the embedding; the position
code is never loaded. Everything runs on the CPU in float64, so the maps are exact to rounding.
"""
from __future__ import annotations

import errno
import stat
from pathlib import Path
from typing import Any, Mapping

import attentions
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import UsageError, one_line
from ..core.maps import RANDOM_WEIGHTS, RoutingMaps
from .map_paths import MECHANISMS, path_weights, unsupported

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBED_PREFIX = "patch_embed."
MAX_RESOLUTION = 2048
MAX_TOKENS = 16_384
MAX_DIM = 4096

REP_WORDS = {"rpattention": "representative", "agent": "agent", "cbsa": "representative"}
PATH_FORMULAS = {
    "rpattention": "distribute · interact · gather = softmax(s·Q K_repᵀ) · softmax(s·U Uᵀ) · Aᵀ, A the routing "
                   "softmax(K W_r/τ) (column-normalised when normalize=True); the DWC branch on V is left out: it "
                   "does not pass through the representatives",
    "agent": "broadcast · aggregate = softmax(s·Q Aᵀ + B_na) · softmax(s·A Kᵀ + B_an), A the agents (Q pooled); "
             "the 3×3 DWC branch on V is left out: it does not pass through the agents",
    "cbsa": "step_x · Cᵀ · softmax(s·Z Zᵀ) · (pool + step_rep·C), C the contraction map softmax(s·Z0 Wᵀ); every "
            "path goes through the representatives, and rows need not sum to 1 (the broadcast is not renormalised "
            "and step_x, step_rep scale it)",
}


def _check_file(flag: str, path: Path) -> None:
    """One UsageError line unless `path` is a regular file (a name too long for the OS counts as missing too)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise UsageError(f"{flag} {path}: {'no such file' if err.errno == errno.ENOENT else err.strerror or err}") \
            from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {path}: {'is a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")


def load_image(path: Path, resolution: int) -> np.ndarray:
    """(R, R, 3) uint8: the largest centred square of the image, resized with a bicubic filter."""
    from PIL import Image

    _check_file("--image", path)
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except Exception as err:  # unreadable, not an image, truncated, a decompression bomb
        raise UsageError(f"--image {path}: not an image PIL can read ({one_line(err)})") from None
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.uint8)


def position_code(grid: tuple[int, int], dim: int) -> Tensor:
    """(N, dim) fixed 2-D sin-cos code: the first half of 4·(dim//4) channels encode the row, the second the column
    (sin then cos, frequencies 1/10000^(i/(dim//4))); the dim mod 4 channels left over are zero."""
    quarter = dim // 4
    code = torch.zeros(grid[0] * grid[1], dim, dtype=torch.float64)
    if quarter == 0:
        return code
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    parts = []
    for position in (rows.flatten(), cols.flatten()):
        angles = position[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    code[:, : 4 * quarter] = torch.cat(parts, dim=1)
    return code


def embed(image: np.ndarray, conv: nn.Conv2d) -> Tensor:
    """(1, N, dim) tokens: normalised pixels through the patch embedding, plus the position code."""
    pixels = torch.from_numpy(image.astype(np.float64) / 255.0).permute(2, 0, 1)
    mean, std = (torch.tensor(v, dtype=torch.float64)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    patches = conv(((pixels - mean) / std).unsqueeze(0))  # (1, dim, H, W)
    grid = tuple(patches.shape[-2:])
    return patches.flatten(2).transpose(1, 2) + position_code(grid, patches.shape[1])


def embedding_text(patch: int, dim: int, loaded: bool) -> str:
    source = "from the checkpoint's patch_embed.*" if loaded else "seeded random (PyTorch's default Conv2d init)"
    return (f"image centre-cropped to a square, resized to R×R (bicubic), normalised with the ImageNet mean/std; a "
            f"linear patch embedding ({patch}×{patch} patches, stride-{patch} Conv2d 3→{dim}, weights {source}) plus "
            f"a fixed 2-D sin-cos position code (rows in the first half of the channels, columns in the second)")


def load_checkpoint(path: Path) -> dict[str, Tensor]:
    """A state dict of tensors from a torch file, or one UsageError line."""
    _check_file("--checkpoint", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, a pickle of other objects, truncated
        raise UsageError(f"--checkpoint {path}: not a torch state dict ({one_line(err)})") from None
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                 for k, v in state.items()):
        raise UsageError(f"--checkpoint {path}: not a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def _load_strict(target: nn.Module, state: Mapping[str, Tensor], what: str, path: Path) -> None:
    """load_state_dict(strict=True), its multi-line complaint as one line naming the first mismatches."""
    own = target.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{key} {tuple(state[key].shape)} (the {what} has {tuple(own[key].shape)})"
              for key in sorted(set(own) & set(state)) if state[key].shape != own[key].shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            problems.append(f"{label}: {', '.join(keys[:4])}" + (f" and {len(keys) - 4} more" if len(keys) > 4 else ""))
    if problems:
        raise UsageError(f"--checkpoint {path}: does not fit the {what}; " + "; ".join(problems))
    target.load_state_dict({key: value.to(torch.float64) for key, value in state.items()}, strict=True)


def apply_checkpoint(path: Path, module: nn.Module, conv: nn.Conv2d) -> bool:
    """Load the layer (strict) and, when the file has patch_embed.* keys, the embedding (strict); True if it had."""
    state = load_checkpoint(path)
    embed_state = {key[len(EMBED_PREFIX):]: value for key, value in state.items() if key.startswith(EMBED_PREFIX)}
    layer_state = {key: value for key, value in state.items() if not key.startswith(EMBED_PREFIX)}
    _load_strict(module, layer_state, "attention module", path)
    if embed_state:
        _load_strict(conv, embed_state, f"patch embedding ({EMBED_PREFIX}weight, {EMBED_PREFIX}bias)", path)
    return bool(embed_state)


def parse_points(text: str | None, resolution: int) -> tuple[tuple[int, int], ...]:
    """`x,y;x,y` in pixels of the R×R image; default four points at the quarter marks."""
    if text is None:
        low, high = resolution // 4, (3 * resolution) // 4
        return ((low, low), (high, low), (low, high), (high, high))
    points = []
    for item in text.split(";"):
        parts = item.split(",")
        try:
            x, y = (int(part.strip()) for part in parts)
        except ValueError:
            raise UsageError(f"--points {text!r}: expected x,y pairs of integers separated by ';', e.g. 10,20;40,8") \
                from None
        if not (0 <= x < resolution and 0 <= y < resolution):
            raise UsageError(f"--points: ({x}, {y}) lies outside the {resolution}×{resolution} image "
                             f"(0 ≤ x, y < {resolution})")
        points.append((x, y))
    if len(points) > 16:
        raise UsageError(f"--points: {len(points)} points; at most 16")
    return tuple(points)


def check_sizes(resolution: int, patch: int, dim: int, heads: int, seed: int) -> tuple[int, int]:
    """The token grid, or one UsageError line for sizes the command refuses."""
    for flag, value, high in (("--resolution", resolution, MAX_RESOLUTION), ("--patch", patch, MAX_RESOLUTION),
                              ("--dim", dim, MAX_DIM), ("--heads", heads, MAX_DIM)):
        if not 1 <= value <= high:
            raise UsageError(f"{flag} {value}: must be between 1 and {high}")
    if not 0 <= seed < 2**63:
        raise UsageError(f"--seed {seed}: must be between 0 and 2**63 - 1")
    if resolution % patch:
        raise UsageError(f"--resolution {resolution} is not a multiple of --patch {patch}")
    side = resolution // patch
    if side * side > MAX_TOKENS:
        raise UsageError(f"--resolution {resolution} with --patch {patch} gives {side * side} tokens; at most "
                         f"{MAX_TOKENS}")
    return side, side


def compute_maps(attention: str, image_path: Path, resolution: int, patch: int, points: str | None,
                 knobs: Mapping[str, Any], dim: int, heads: int, seed: int,
                 checkpoint: Path | None = None) -> RoutingMaps:
    """Validate everything, then run the layer once on the image and return the maps (raises one-line errors)."""
    if attention not in MECHANISMS:
        raise UsageError(f"--attention {attention!r}: maps are drawn for {', '.join(MECHANISMS)}")
    grid = check_sizes(resolution, patch, dim, heads, seed)
    spec = attentions.spec(attention)
    resolved = spec.resolve(knobs)
    reason = spec.check(grid=grid, dim=dim, num_heads=heads, **resolved)
    if reason:
        raise attentions.UnsupportedConfig(reason)
    chosen = parse_points(points, resolution)
    image = load_image(image_path, resolution)
    with torch.random.fork_rng(devices=[]):  # the seed draws these weights without touching the caller's RNG
        torch.manual_seed(seed)
        conv = nn.Conv2d(3, dim, patch, stride=patch).double()
        module = spec.build(dim=dim, num_heads=heads, grid=grid, **resolved).double().eval()
    reason = unsupported(attention, module)
    if reason:
        raise UsageError(reason)
    loaded_embedding = checkpoint is not None and apply_checkpoint(checkpoint, module, conv)
    with torch.no_grad():
        tokens = embed(image, conv)
    rows = torch.tensor([(y // patch) * grid[1] + x // patch for x, y in chosen])
    weights = path_weights(attention, module, tokens, rows)
    to_grid = lambda t: t.mean(dim=0).reshape(len(chosen), *grid).numpy()  # noqa: E731  (head mean, (P, H, W))
    notes = () if checkpoint is None or loaded_embedding else (
        f"the checkpoint has no {EMBED_PREFIX}* keys: the patch embedding is seeded random (--seed {seed})",)
    return RoutingMaps(
        attention=attention, knobs=dict(resolved), resolution=resolution, patch=patch, grid=grid, dim=dim,
        heads=heads, reps=weights.reps, seed=seed, image=image,
        assignment=weights.assignment.reshape(grid).numpy().astype(np.int64), points=chosen,
        path=to_grid(weights.response), dense=to_grid(weights.dense),
        embedding=embedding_text(patch, dim, loaded_embedding),
        weights=RANDOM_WEIGHTS if checkpoint is None else f"weights from the checkpoint {checkpoint}",
        rep_word=REP_WORDS[attention], path_formula=PATH_FORMULAS[attention], notes=notes)
