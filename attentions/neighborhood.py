"""Neighborhood attention (NAT), with DiNAT's dilation and NAT's relative position bias, three backends.

Hassani et al., "Neighborhood Attention Transformer", CVPR 2023, arXiv 2204.07143; dilation from Hassani & Shi,
"Dilated Neighborhood Attention Transformer" (DiNAT), arXiv 2209.15001. Official code: SHI-Labs/NATTEN (mirrored
at 8c8729f, 0.21.7.dev1). The window rule is NATTEN's `get_window_start`, the bias rule its `get_pb_start`
(csrc/include/natten/cpu/naive/natten_cpu_commons.h at v0.17.5, 4831f05); the window rule is also the mask of
its Flex backend at HEAD (src/natten/backends/flex.py, `get_na_flex_mask`), and NAT's own pure-PyTorch NA
(SHI-Labs/Neighborhood-Attention-Transformer natten/nattentorch2d.py at eab2a1c) computes the same output.

Per axis of length L, with kernel k (odd), n = k // 2 and dilation d, a position p lies in dilation group
g = p mod d at rank r = p // d; its group holds L_g = (L - 1 - g) // d + 1 positions. The window is the k ranks
s .. s+k-1 of that group with s = clamp(r - n, 0, L_g - k): centred inside the map and SHIFTED INWARD at the
borders, so every query sees exactly k keys per axis (k·k in 2-D) and never a padded one. The bias of key
rank r' is rpb[h, r'_row - r_row + k - 1, r'_col - r_col + k - 1]: the offset in dilated steps, which at the
borders runs past ±n (up to ±(k-1)), hence the (2k-1)×(2k-1) table (NATTEN: pi + ki with pi = get_pb_start).

    a[i, j] = d_h^-1/2 · q_i · k_j + rpb[h, Δrow(i, j), Δcol(i, j)]   over the k² keys j of query i
    y = proj(Σ_j softmax_j(a[i, ·]) v_j),  q, k, v = qkv(x) split into h heads of d_h = C/h, x: (B, H·W, C)

Knobs: kernel k (default 7), dilation d (default 1), bias (the rpb table; default True, as in NAT's blocks),
backend: "reference" gathers each query's k² keys and values (O(N·k²·C) memory, no N×N matrix); "flex" runs
torch.nn.attention.flex_attention with a BlockMask (tile tables from the same neighbour table, no N×N
evaluation, made once per device; its mask_mod encodes the rule) and a score_mod adding the bias (offsets
clamped into the table for masked pairs), compiled on CUDA and on CPU too (torch 2.13 compiles flex for the CPU,
forward only: flex has no CPU backward, so a CPU training step raises torch's NotImplementedError; a module's
`compile_flex = False` runs torch's unfused flex path); float64 calls, such as the harness's accuracy reference,
run the reference gather, as compiled flex takes no float64. "natten" calls natten.functional.na2d (fused
kernels; natten >= 0.17, and 0.17.x for bias=True: 0.20+ dropped rpb). "auto" runs natten on CUDA when it can,
else flex on CUDA, else reference; the module decides per call from the input's device, and `effective_fn`
reports it (it takes an optional `device`; without one it assumes CUDA when torch sees one).

Interface changes: the official module takes (B, H, W, C); this one (B, H·W, C) row-major on the grid given at
build time, one kernel/dilation for both axes (NATTEN also takes per-axis tuples, stride, causal). NATTEN 0.14
padded maps smaller than k·d; `check` rejects them. Init as NATTEN: rpb ~ trunc_normal(0.02, cut at ±2).
FLOPs (every backend; the formula is the mechanism's work): core = Q·Kᵀ and A·V over k² keys per query =
4·B·N·k²·C; proj = 8·B·N·C². FlopCounterMode counts reference exactly so, raises on flex and misses natten's
kernels: `flops_uncounted` says so for those two (a harness then takes the formula).
"""
from __future__ import annotations

import functools
import importlib
import inspect

import torch
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from ._common import check_tokens, matmul_flops, merge_heads, phase, qkv_out_flops, split_heads
from ._registry import AttentionSpec, Knob, register

BACKENDS = ("auto", "natten", "flex", "reference")
FLEX_BLOCK = 128  # flex_attention's default tile (queries and keys)


def window(position: Tensor, length: int, kernel: int, dilation: int) -> tuple[Tensor, Tensor]:
    """NATTEN's rule along one axis, elementwise: (dilation group, first key rank of the window)."""
    group = position % dilation
    group_len = (length - 1 - group) // dilation + 1
    start = torch.minimum((position // dilation - kernel // 2).clamp(min=0), group_len - kernel)
    return group, start


def axis_neighbours(length: int, kernel: int, dilation: int) -> tuple[Tensor, Tensor]:
    """(L, k) key positions of every query along one axis, and (L, k) bias offsets (key rank - query rank + k-1)."""
    position = torch.arange(length)
    group, start = window(position, length, kernel, dilation)
    ranks = start[:, None] + torch.arange(kernel)
    return ranks * dilation + group[:, None], ranks - (position // dilation)[:, None] + kernel - 1


def neighbour_table(grid: tuple[int, int], kernel: int, dilation: int) -> tuple[Tensor, Tensor]:
    """(N, k²) token indices of each query's keys (row-major window) and (N, k²) indices into rpb[h].flatten()."""
    (rows, row_off), (cols, col_off) = (axis_neighbours(side, kernel, dilation) for side in grid)
    keys = rows[:, None, :, None] * grid[1] + cols[None, :, None, :]  # (H, W, k, k)
    bias = row_off[:, None, :, None] * (2 * kernel - 1) + col_off[None, :, None, :]
    return keys.reshape(grid[0] * grid[1], -1), bias.reshape(grid[0] * grid[1], -1)


def flex_block_tables(keys: Tensor, tokens: int, block: int = FLEX_BLOCK) -> tuple[Tensor, ...]:
    """BlockMask tables from the neighbour table: (kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices).

    A (query tile, key tile) pair is full when every query of the tile attends to every key of the tile, partial
    when some do; tiles cut by the end of the sequence are never full, so the mask_mod sees them."""
    blocks = -(-tokens // block)
    per_query = torch.zeros(blocks * block, blocks, dtype=torch.int32)
    per_query[:tokens].scatter_add_(1, keys // block, torch.ones_like(keys, dtype=torch.int32))
    per_tile = per_query.view(blocks, block, blocks)
    whole = torch.full((blocks,), block, dtype=torch.int32)
    whole[-1] = tokens - (blocks - 1) * block
    full = (per_tile == whole).all(1) & (whole == block)
    partial = (per_tile > 0).any(1) & ~full

    def table(chosen: Tensor) -> tuple[Tensor, Tensor]:
        order = torch.argsort(chosen.int(), dim=-1, descending=True, stable=True)
        return chosen.sum(-1).int()[None, None], order.int()[None, None]

    return (*table(partial), *table(full))


def neighbourhood_mask_mod(grid: tuple[int, int], kernel: int, dilation: int):
    """flex_attention mask_mod: does query token q_idx attend to key token kv_idx (row-major on `grid`)?"""
    height, width = grid

    def mask_mod(b, h, q_idx, kv_idx):
        attends = None
        axes = ((q_idx // width, kv_idx // width, height), (q_idx % width, kv_idx % width, width))
        for q_pos, kv_pos, length in axes:
            group, start = window(q_pos, length, kernel, dilation)
            rank = kv_pos // dilation
            axis = (kv_pos % dilation == group) & (rank >= start) & (rank < start + kernel)
            attends = axis if attends is None else attends & axis
        return attends

    return mask_mod


class NeighborhoodAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], kernel: int = 7, dilation: int = 1,
                 bias: bool = True, backend: str = "auto"):
        super().__init__()
        self.num_heads, self.grid, self.kernel, self.dilation = num_heads, grid, kernel, dilation
        self.backend = backend  # what was asked for; `resolved_backend` / effective_fn say what runs
        self.scale = (dim // num_heads) ** -0.5
        self.compile_flex = True  # False: torch's unfused flex path (materialises the scores; tests on CPU)
        self.qkv = nn.Linear(dim, dim * 3)
        if bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel - 1, 2 * kernel - 1))
            nn.init.trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        else:
            self.register_parameter("rpb", None)
        self.proj = nn.Linear(dim, dim)
        keys, bias_index = neighbour_table(grid, kernel, dilation)
        self._flex_tables = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices")
        tables = flex_block_tables(keys, grid[0] * grid[1]) if backend in ("auto", "flex") else (None,) * 4
        for name, table in zip(("neighbours", "bias_index", *self._flex_tables), (keys, bias_index, *tables)):
            self.register_buffer(name, table, persistent=False)  # derived from the knobs: not state
        self._block_masks: dict[str, BlockMask] = {}  # per device, made on first use

    def resolved_backend(self, device: torch.device) -> str:
        return resolve_backend(self.backend, self.rpb is not None, device.type)

    def flops_uncounted(self, device: torch.device) -> str | None:  # read by attentions.uncounted_flops
        backend = self.resolved_backend(device)
        return None if backend == "reference" else f"FlopCounterMode cannot count neighborhood's {backend} backend"

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, tokens, channels = x.shape
        backend = self.resolved_backend(x.device)
        with phase("qkv"):
            qkv = self.qkv(x)
        if backend == "natten":
            with phase("neighborhood.natten"):
                out = self._natten(qkv.view(batch, *self.grid, 3, self.num_heads, -1).unbind(3))
                out = out.reshape(batch, tokens, channels)
        else:
            q, k, v = (split_heads(t, self.num_heads) for t in qkv.chunk(3, dim=-1))
            flex = backend == "flex" and q.dtype != torch.float64  # compiled flex takes no float64 (CPU: says so)
            out = merge_heads(self._flex(q, k, v) if flex else self._reference(q, k, v))
        with phase("proj"):
            return self.proj(out)

    def _reference(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, h, N, d) each -> (B, h, N, d): each query against its own k² gathered keys and values."""
        with phase("neighborhood.gather"):
            keys, values = k[:, :, self.neighbours], v[:, :, self.neighbours]  # (B, h, N, k², d)
        with phase("neighborhood.attend"):
            logits = (q * self.scale).unsqueeze(-2) @ keys.transpose(-2, -1)  # (B, h, N, 1, k²)
            if self.rpb is not None:
                logits = logits + self.rpb.flatten(1)[:, self.bias_index].unsqueeze(-2).to(logits.dtype)
            attn = logits.softmax(dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32)).to(values.dtype)
            return (attn @ values).squeeze(-2)

    def _flex(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        with phase("neighborhood.flex"):
            width, kernel, dilation = self.grid[1], self.kernel, self.dilation
            score_mod = None
            if self.rpb is not None:
                rpb, last = self.rpb, 2 * kernel - 2

                def score_mod(score, b, h, q_idx, kv_idx):  # offsets clamped: masked pairs read a valid entry
                    row = (kv_idx // width // dilation - q_idx // width // dilation + kernel - 1).clamp(0, last)
                    col = (kv_idx % width // dilation - q_idx % width // dilation + kernel - 1).clamp(0, last)
                    return score + rpb[h, row, col]

            run = compiled_flex() if self.compile_flex and not torch.compiler.is_compiling() else flex_attention
            return run(q, k, v, score_mod=score_mod, block_mask=self._block_mask(q.device), scale=self.scale)

    def _block_mask(self, device: torch.device) -> BlockMask:
        """The BlockMask on `device`, made once from the tile tables (its q-side tables are derived on creation)."""
        mask = self._block_masks.get(str(device))
        if mask is None:
            tokens = self.grid[0] * self.grid[1]
            mask = BlockMask.from_kv_blocks(*(getattr(self, name) for name in self._flex_tables),
                                            BLOCK_SIZE=FLEX_BLOCK, seq_lengths=(tokens, tokens),
                                            mask_mod=neighbourhood_mask_mod(self.grid, self.kernel, self.dilation))
            self._block_masks[str(device)] = mask
        return mask

    def _natten(self, qkv: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """natten.functional.na2d on (B, H, W, h, d) tensors."""
        kwargs = {"kernel_size": (self.kernel,) * 2, "dilation": (self.dilation,) * 2, "scale": self.scale,
                  **({} if self.rpb is None else {"rpb": self.rpb})}
        return natten_na2d()(*(t.contiguous() for t in qkv), **kwargs)


@functools.cache
def compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


@functools.cache
def natten_na2d():
    """natten.functional.na2d, or ImportError / AttributeError when natten is absent or has no fused na2d."""
    return importlib.import_module("natten.functional").na2d


@functools.cache
def natten_problem(bias: bool) -> str | None:
    """None when the natten backend can run these knobs here, else a one-line reason."""
    try:
        na2d = natten_na2d()
    except Exception as err:  # noqa: BLE001 - a broken install is as unusable as a missing one
        detail = (str(err).splitlines() or [""])[0]
        return f"neighborhood: backend=natten needs natten >= 0.17 (fused na2d), not importable here: {detail}"
    if bias and "rpb" not in inspect.signature(na2d).parameters:
        version = getattr(importlib.import_module("natten"), "__version__", "?")
        return (f"neighborhood: natten {version} has no relative position bias (na2d lost rpb in 0.20); "
                "use bias=False, or backend=flex or reference")
    return None


def resolve_backend(backend: str, bias: bool, device_type: str) -> str:
    """The backend "auto" runs: natten on CUDA when it can run these knobs, else flex on CUDA, else reference."""
    if backend != "auto" or device_type != "cuda":
        return backend if backend != "auto" else "reference"
    return "natten" if natten_problem(bias) is None else "flex"


def neighborhood_effective(grid: tuple[int, int], backend: str, bias: bool, device: str | None = None,
                           **_) -> dict[str, str]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"backend": resolve_backend(backend, bias, torch.device(device).type)}


def neighborhood_check(grid: tuple[int, int], kernel: int, dilation: int, bias: bool, backend: str,
                       **_) -> str | None:
    if kernel % 2 == 0:
        return f"neighborhood: kernel {kernel} must be odd"
    if kernel * dilation > min(grid):
        return (f"neighborhood: kernel·dilation = {kernel}·{dilation} = {kernel * dilation} exceeds the "
                f"{grid[0]}x{grid[1]} grid's short side (NATTEN requires k·d <= each side)")
    if backend == "natten":
        return natten_problem(bias)
    return None


def neighborhood_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, kernel: int,
                       **_) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    # per query and head: (1 × d)·(d × k²) logits and (1 × k²)·(k² × d) output; h·d = C
    return {"core": 2 * batch * tokens * matmul_flops(1, dim, kernel * kernel),
            "proj": batch * qkv_out_flops(tokens, dim)}


SPEC = register(
    AttentionSpec(
        name="neighborhood",
        summary="NAT / DiNAT neighborhood attention: each query attends to its k×k (dilated) neighbours, window "
        "shifted inward at borders, with NAT's relative position bias; backends natten, flex, reference",
        paper="Hassani et al. 2023, Neighborhood Attention Transformer (CVPR), arXiv 2204.07143; "
        "dilation: DiNAT, arXiv 2209.15001",
        complexity="O(N·k²·C)",
        scaling="linear",
        factory=NeighborhoodAttention,
        flops_fn=neighborhood_flops,
        knobs={
            "kernel": Knob(7, "neighbourhood side k (odd, >= 3); k·dilation must fit each grid side", low=3,
                           high=16_383),
            "dilation": Knob(1, "dilation d: neighbours every d tokens, within the query's dilation group (DiNAT)",
                             low=1, high=16_384),
            "bias": Knob(True, "learned relative position bias rpb (heads, 2k-1, 2k-1), as in NAT"),
            "backend": Knob("auto", "natten (fused kernels, natten installed), flex (FlexAttention + BlockMask, "
                            "compiled), reference (gather, plain PyTorch); auto: natten on CUDA if it can, "
                            "else flex on CUDA, else reference", choices=BACKENDS),
        },
        check_fn=neighborhood_check,
        effective_fn=neighborhood_effective,
        state_dict_compat=(
            "bias=True: NAT's layout qkv.weight (3C, C), qkv.bias (3C), rpb (h, 2k-1, 2k-1), proj.* = SHI-Labs/NATTEN "
            "NeighborhoodAttention2D of v0.14.6 (src/natten/natten2d.py, bias=True, 3b54c76) and v0.17.5 (src/natten/"
            "na2d.py, rel_pos_bias=True, 4831f05) and NAT's LegacyNeighborhoodAttention2D (natten/nattentorch2d.py, "
            "eab2a1c), as NAT/DiNAT checkpoints hold it; bias=False: qkv.*, proj.* = NeighborhoodAttention2D of "
            "NATTEN 0.20+ (src/natten/modules.py at 8c8729f, 0.21.7.dev1), which has no rpb"
        ),
    )
)
