"""The attention path through the representatives, as explicit weights read from a module's own tensors.

Each of rpattention, agent and cbsa computes its output per head as a product of small attention maps applied to the
values: distribute (N×M) · interact (M×M) · gather (M×N) · V. Composing those maps for a query token p gives one
weight per token j, `response[h, p, j]`, with Σ_j response[h, p, j]·V_h[j] equal to what the forward adds at p
through the representatives (tests/measure/test_map_paths.py checks that identity against the forward's own projection
input). The maps are composed only for the rows asked for, so nothing N×N is formed.

Where the forward exposes its attention probabilities as a module (agent's `softmax`, cbsa's `attend`), they are
captured with forward hooks during a real forward call. RPAttention fuses its stages into scaled_dot_product_attention,
so its gather/interact/distribute maps are recomputed from the module's own projections and `routing_weights`, with
exactly the operations its forward uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attentions._common import split_heads

from ..core.errors import UsageError

MECHANISMS = ("rpattention", "agent", "cbsa")


@dataclass(frozen=True)
class PathWeights:
    """One input's maps (batch 0): what the page draws and what the tests check."""

    assignment: Tensor  # (N,) long: each token's representative
    response: Tensor  # (h, P, N): weight of token j's value in output token rows[p], through the representatives
    dense: Tensor  # (h, P, N): softmax(q kᵀ·scale) rows of the same tokens, same q/k projections
    reps: int  # M


def dense_rows(q: Tensor, k: Tensor, heads: int, scale: float, rows: Tensor) -> Tensor:
    """Dense softmax attention's rows for the query tokens `rows`, per head: (h, P, N) for batch 0."""
    q_rows = split_heads(q, heads)[0][:, rows]
    return ((q_rows @ split_heads(k, heads)[0].transpose(-1, -2)) * scale).softmax(dim=-1)


def unsupported(name: str, module: nn.Module) -> str | None:
    """Why this configuration has no per-token path weights, or None."""
    if name == "rpattention" and getattr(module, "mix", None) is not None:
        return ("rpattention with interact_proj=True: the interaction's learned projections mix channels, so no "
                "single weight per token describes the path; drop the knob")
    return None


def _rpattention(module: nn.Module, x: Tensor, rows: Tensor) -> PathWeights:
    heads = module.num_heads
    channels = x.shape[-1]
    q, k, v = module.qkv(x).split(channels, dim=-1)
    routing = module.routing_weights(k)  # the forward's own routing: (B, N, M) shared, or (B, h, N, M) per head
    if routing.dim() == 3:
        routing = routing.unsqueeze(1).expand(-1, heads, -1, -1)
    gather = routing.transpose(-1, -2)  # (B, h, M, N)
    if module.normalize:  # the forward divides each gathered row by its routing column sum: the same thing
        gather = gather / gather.sum(dim=-1, keepdim=True)
    k_rep, u = gather @ split_heads(k, heads), gather @ split_heads(v, heads)
    scale = (channels // heads) ** -0.5  # scaled_dot_product_attention's default for head width d
    reps = gather.shape[-2]
    if module.interact:
        interact = ((u @ u.transpose(-1, -2)) * scale).softmax(dim=-1)
    else:
        interact = torch.eye(reps, dtype=u.dtype).expand(*u.shape[:2], reps, reps)
    distribute = ((split_heads(q, heads) @ k_rep.transpose(-1, -2)) * scale).softmax(dim=-1)  # (B, h, N, M)
    response = distribute[0][:, rows] @ interact[0] @ gather[0]
    return PathWeights(assignment=routing[0].mean(dim=0).argmax(dim=-1), response=response,
                       dense=dense_rows(q, k, heads, scale, rows), reps=reps)


def _captured(softmax: nn.Module, module: nn.Module, x: Tensor) -> list[Tensor]:
    """The outputs of every call of `softmax` during one forward of `module`, in call order."""
    seen: list[Tensor] = []
    handle = softmax.register_forward_hook(lambda _mod, _inp, out: seen.append(out.detach()))
    try:
        module(x)
    finally:
        handle.remove()
    return seen


def _agent(module: nn.Module, x: Tensor, rows: Tensor) -> PathWeights:
    aggregate, broadcast = _captured(module.softmax, module, x)  # (B, h, m, N) then (B, h, N, m)
    q, k, _ = module.qkv(x).chunk(3, dim=-1)
    response = broadcast[0][:, rows] @ aggregate[0]
    return PathWeights(assignment=broadcast[0].mean(dim=0).argmax(dim=-1), response=response,
                       dense=dense_rows(q, k, module.num_heads, module.scale, rows), reps=aggregate.shape[-2])


def pool_matrix(grid: tuple[int, int], side: int, dtype: torch.dtype) -> Tensor:
    """(side², N): adaptive average pooling of an (H, W) map to side×side, as a matrix.

    The 2-D bins are products of 1-D row and column bins, so the matrix is the Kronecker product of the two 1-D
    pooling matrices (each found by pooling one-hot rows): side²·N numbers, never N².
    """
    rows, cols = (F.adaptive_avg_pool1d(torch.eye(n, dtype=dtype).unsqueeze(1), side).squeeze(1).T for n in grid)
    return torch.kron(rows, cols)


def _cbsa(module: nn.Module, x: Tensor, rows: Tensor) -> PathWeights:
    contraction, interact = _captured(module.attend, module, x)  # (B, h, m, N) then (B, h, m, m)
    w = module.proj(x)  # query, key and value at once
    # Z = pool(W) + step_rep·C W = (P + step_rep·C) W; out = step_x · Cᵀ softmax(s·Z Zᵀ) Z
    gather = pool_matrix(module.grid, module.pool_side, w.dtype) + module.step_rep * contraction[0]
    response = module.step_x * (contraction[0].transpose(-1, -2)[:, rows] @ interact[0] @ gather)
    return PathWeights(assignment=contraction[0].mean(dim=0).argmax(dim=0), response=response.detach(),
                       dense=dense_rows(w, w, module.num_heads, module.scale, rows), reps=contraction.shape[-2])


def path_weights(name: str, module: nn.Module, x: Tensor, rows: Tensor) -> PathWeights:
    """The hard assignment, the representative-path rows and the dense rows of `module` on tokens x (B, N, C)."""
    reason = unsupported(name, module)
    if reason:
        raise UsageError(reason)
    compute = {"rpattention": _rpattention, "agent": _agent, "cbsa": _cbsa}[name]
    with torch.no_grad():
        return compute(module, x, rows)
