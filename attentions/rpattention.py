"""RPAttention (Representative Attention; Li, Wang, Liu, Li, Guo 2026, arXiv 2605.14913).

RECONSTRUCTION, not the authors' code. Only the abstract and the overview figure
(Liyuntong123/RPAtten `figures/overview.png`) are public; no equations or hyperparameters are.
The figure fixes the structure; everything it leaves open is a knob whose default follows
the design notes (shared/design/attention-spec.md §1.4, questions Q1–Q10):

    Q, K, V = qkv(X)                                     N×C each
    R       = softmax(K W_r / τ)                         N×M routing; W_r's columns are the learned anchors
    K_rep, U = Aᵀ [K, V]                                 gather (A = R, column-normalised over N)
    V_rep   = softmax(s·U Uᵀ) U                          interact among the M representatives
    O       = softmax(s·Q K_repᵀ) V_rep + DWC(V)         distribute back to all N tokens
    Y       = proj(O)

Fast path: the gather reads K and V as one N×2C operand (they sit side by side in the qkv
output), so one product forms both K_rep and U; column normalisation divides the M gathered rows
instead of the N×M routing; interact and distribute run through scaled_dot_product_attention,
whose CPU output is already laid out token-major, so merging heads is free; the DWC reads V in
place as a channels-last image. Nothing N×N is ever formed.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    phase,
    attention_flops,
    check_tokens,
    dwc_flops,
    matmul_flops,
    merge_heads,
    qkv_out_flops,
    split_heads,
)
from ._registry import AttentionSpec, Knob, register

ROUTE_AXES = {"reps": -1, "tokens": -2}  # softmax over M (competitive) or over N


class RepresentativeMixer(nn.Module):
    """Multi-head self-attention with learned q/k/v/o projections, run on the M representatives."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, reps: Tensor) -> Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(reps).chunk(3, dim=-1))
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


def gather(routing: Tensor, tokens: Tensor, normalize: bool) -> Tensor:
    """Representatives routingᵀ·tokens: (…, N, M) and (…, N, c) -> (…, M, c).

    With normalize each representative is the routing-weighted mean of the tokens. Dividing the
    M gathered rows by the column sums equals column-normalising the N×M routing first, at M·c
    divisions instead of N·M.
    """
    reps = routing.transpose(-1, -2) @ tokens
    if normalize:
        reps = reps / routing.sum(dim=-2).unsqueeze(-1)
    return reps


def representative_attention(
    q: Tensor,
    kv: Tensor,
    routing: Tensor,
    num_heads: int,
    *,
    normalize: bool = True,
    interact: bool = True,
    mixer: nn.Module | None = None,
) -> Tensor:
    """Gather -> interact -> distribute for given routing weights; (B, N, C) heads merged.

    q: (B, N, C). kv: (B, N, 2C), keys then values on the channel axis, so that with shared
    routing one product gathers both. routing: (B, N, M) shared by all heads, or (B, h, N, M)
    one routing per head. mixer, when given, replaces the parameter-free interaction.
    """
    channels = q.shape[-1]
    with phase("rp.gather"):
        if routing.dim() == 3:
            reps = gather(routing, kv, normalize)
            k_rep, u = (split_heads(t, num_heads) for t in reps.split(channels, dim=-1))
        else:
            k_rep, u = (
                gather(routing, split_heads(t, num_heads), normalize) for t in kv.split(channels, dim=-1)
            )
    with phase("rp.interact"):
        if mixer is not None:
            v_rep = split_heads(mixer(merge_heads(u)), num_heads)
        elif interact:
            v_rep = F.scaled_dot_product_attention(u, u, u)
        else:
            v_rep = u
    with phase("rp.distribute"):
        out = F.scaled_dot_product_attention(split_heads(q, num_heads), k_rep, v_rep)
    return merge_heads(out)


class RPAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        m: int = 64,
        route_over: str = "reps",
        normalize: bool = True,
        em_iters: int = 1,
        interact: bool = True,
        interact_proj: bool = False,
        per_head_routing: bool = False,
        dwc: int = 3,
        tau: float = 1.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.num_reps = m
        self.route_axis = ROUTE_AXES[route_over]
        # Softmax over tokens already makes every column sum to 1.
        self.normalize = normalize and route_over == "reps"
        self.em_iters = em_iters
        self.interact = interact
        self.per_head_routing = per_head_routing
        self.tau = tau
        self.qkv = nn.Linear(dim, dim * 3)
        # Bias-free: logits are pure key-anchor similarities (a bias would cancel over tokens).
        # Per head, the weight holds h stacked d->M maps.
        head_dim = dim // num_heads
        if per_head_routing:
            self.route = nn.Linear(head_dim, num_heads * m, bias=False)
        else:
            self.route = nn.Linear(dim, m, bias=False)
        self.mix = RepresentativeMixer(dim, num_heads) if interact_proj else None
        self.dwc = nn.Conv2d(dim, dim, dwc, padding=dwc // 2, groups=dim) if dwc else None
        self.proj = nn.Linear(dim, dim)

    def _assign(self, logits: Tensor) -> Tensor:
        if self.tau != 1.0:
            logits = logits / self.tau
        return logits.softmax(dim=self.route_axis)

    def routing_weights(self, k: Tensor) -> Tensor:
        """Routing weights (B, N, M), or (B, h, N, M) per head, from keys (B, N, C).

        Softmax of key-anchor similarities; each further EM iteration re-routes against the
        per-input K_rep gathered with the previous weights (gradients flow through all of them).
        """
        if self.per_head_routing:
            k = split_heads(k, self.num_heads)
            anchors = self.route.weight.view(self.num_heads, self.num_reps, -1).transpose(-1, -2)
            routing = self._assign(k @ anchors)
        else:
            routing = self._assign(self.route(k))
        for _ in range(self.em_iters - 1):
            k_rep = gather(routing, k, self.normalize)
            routing = self._assign((k @ k_rep.transpose(-1, -2)) * k.shape[-1] ** -0.5)
        return routing

    def _local(self, v: Tensor) -> Tensor:
        """Depthwise conv of V, read in place as a channels-last image; returns (B, N, C)."""
        batch, tokens, channels = v.shape
        image = v.reshape(batch, *self.grid, channels).permute(0, 3, 1, 2)
        return self.dwc(image).permute(0, 2, 3, 1).reshape(batch, tokens, channels)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        channels = x.shape[-1]
        with phase("qkv"):
            qkv = self.qkv(x)
            q, kv = qkv[..., :channels], qkv[..., channels:]
            k, v = kv.split(channels, dim=-1)
        with phase("rp.route"):
            routing = self.routing_weights(k)
        out = representative_attention(
            q, kv, routing, self.num_heads, normalize=self.normalize, interact=self.interact, mixer=self.mix
        )
        if self.dwc is not None:
            with phase("rp.dwc"):
                out = self._local(v).add_(out)  # into the fresh conv output: no extra N×C buffer
        with phase("proj"):
            return self.proj(out)


def rpattention_flops(
    batch: int,
    grid: tuple[int, int],
    dim: int,
    num_heads: int,
    m: int,
    em_iters: int,
    interact: bool,
    interact_proj: bool,
    dwc: int,
    **_,
) -> dict[str, int]:
    """Routing, gather and distribute are linear in N; interaction is on M tokens only.

    Per-head routing costs the same as shared routing (h maps of d·M instead of one of C·M).
    The interaction's learned projections count as core: they are not the qkv/out projections.
    """
    tokens = grid[0] * grid[1]
    route = batch * matmul_flops(tokens, dim, m)
    reroute = (em_iters - 1) * batch * (matmul_flops(m, tokens, dim) + matmul_flops(tokens, dim, m))
    gather_kv = batch * matmul_flops(m, tokens, 2 * dim)
    mix = 0
    if interact:
        mix = attention_flops(batch * num_heads, m, m, dim // num_heads)
    if interact_proj:
        mix += batch * qkv_out_flops(m, dim)
    distribute = attention_flops(batch * num_heads, tokens, m, dim // num_heads)
    local = dwc_flops(batch, tokens, dim, dwc) if dwc else 0
    return {
        "core": route + reroute + gather_kv + mix + distribute + local,
        "proj": batch * qkv_out_flops(tokens, dim),
    }


def rpattention_check(
    grid: tuple[int, int], m: int, em_iters: int, interact: bool, interact_proj: bool, dwc: int, tau: float, **_
) -> str | None:
    if m > grid[0] * grid[1]:
        return f"rpattention: m={m} representatives for N={grid[0] * grid[1]} tokens; m must be at most N"
    if dwc and dwc % 2 == 0:
        return f"rpattention: dwc must be 0 (none) or an odd kernel size, got {dwc}"
    if interact_proj and not interact:
        return "rpattention: interact_proj=True needs interact=True"
    return None


SPEC = register(
    AttentionSpec(
        name="rpattention",
        summary=(
            "gather tokens into M routed representatives, attend among them, distribute back by "
            "cross-attention, plus a DWC on V (reconstructed from the abstract and overview figure)"
        ),
        paper="Li et al. 2026, Representative Attention, arXiv 2605.14913 (reconstruction)",
        complexity="O(N·M·C + M²·C)",
        scaling="linear",
        factory=RPAttention,
        flops_fn=rpattention_flops,
        knobs={
            "m": Knob(64, "number of representative tokens M (columns of the routing Linear = learned anchors); "
                       "at most N", low=1, high=1_048_576),
            "route_over": Knob(
                "reps",
                "routing softmax axis: reps = each token's weights over the M representatives sum to 1 "
                "(competitive, Q1 default); tokens = each representative's weights over N sum to 1",
                choices=tuple(ROUTE_AXES),
            ),
            "normalize": Knob(
                True,
                "column-normalise the routing over N before gathering, so representatives are weighted "
                "means, not sums that grow with N (Q2); no effect with route_over=tokens",
            ),
            "em_iters": Knob(
                1, "routing iterations; each one past the first re-routes against the per-input K_rep (Q5)",
                low=1, high=100,
            ),
            "interact": Knob(True, "self-attention among the representatives; False passes U through as V_rep"),
            "interact_proj": Knob(
                False, "learned q/k/v/o projections in the interaction (Q3 option b); needs interact"
            ),
            "per_head_routing": Knob(
                False, "one d->M routing Linear per head instead of one C->M shared by all heads (Q4)"
            ),
            "dwc": Knob(3, "kernel of the depthwise conv on V added before proj (odd); 0 = no DWC (Q7)", low=0, high=63),
            "tau": Knob(1.0, "routing temperature: logits are divided by tau before the softmax (Q6)", low=1e-6, high=1e6),
        },
        check_fn=rpattention_check,
        state_dict_compat="timm `Attention` (qkv_bias=True) keys qkv.*, proj.*, plus route.weight, dwc.*, mix.*",
    )
)
