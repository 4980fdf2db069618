"""The plan of `scripts/gpu-validate`: its stages, their time caps, the two sweeps' cases with a time estimate per
case, and the sizes dropped when the estimates do not fit (sizes, never stages). Pure planning: it imports
attentions for the FLOP formulas and never touches a GPU, so `scripts/gpu-validate --dry-run` prints it anywhere.

Per-case estimate (seconds) = FIXED_S (build, probes, accuracy reference, capture, NVML reads, the row's write)
+ the energy window (EnergyMeter.MIN_WINDOW_S of back-to-back calls) + the timed window (warm-up + repeat)
+ CALLS_OUTSIDE_WINDOWS calls + the float32 reference call + the cool-down. A call's time is FLOPs at a share of the
measured (doctor's ceilings) or nominal bf16 matmul rate, plus bytes at the copy rate, and never under a floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

TOTAL_S = 360.0  # the whole call: 6 minutes of command time (15 of device time in all, machine start included)
PACK_RESERVE_S = 8.0  # the last pack and summary after the last stage
STAGE_CAPS = {"setup": 45.0, "checks": 150.0, "product": 120.0, "backbones": 60.0}
# Setup and checks are not cases: torch import and CUDA start per process, the doctor (ceilings, GPU state under
# load, timer cross-check ~15 s), two pytest runs (6 workers: ~70 run_case calls of ~1.5 s, 36 captures, about
# six torch.compile runs of ~20 s (flex for neighborhood, reduce-overhead); then the timing checks alone, ~30 s).
STAGE_ESTIMATES = {"setup": 25.0, "checks": 100.0}
PROCESS_START_S = 12.0  # python, torch and CUDA start in each sweep process

# H200 (KINDS.md, 2026-10/11): bf16 8192^3 matmul ~790 TFLOP/s, device copy ~4.3 TB/s. The doctor's measured
# ceilings replace them on the device.
NOMINAL = {"bf16_tflops": 790.0, "copy_gbps": 4300.0}
EFFICIENCY = {"dense": 0.45, "other": 0.2}  # share of the matmul rate a mechanism's FLOPs run at
FLOOR_MS = {"dense": 0.02, "other": 0.08}  # the least a call takes (kernel latencies under graph replay)
FIXED_S = 0.6
CALLS_OUTSIDE_WINDOWS = 25  # check, probes, FLOP count, kernels, capture warm-up, launch costs, memory
FP32_REFERENCE_CALLS = 16  # the float32 reference runs on CUDA cores: about 16 bf16 calls' time

PRODUCT_SIZES = (1024, 4096, 16384, 65536)  # first sweep: exponents (>= 4 sizes) and crossovers
EXTRA_SIZES = (8192, 2048, 32768)  # second sweep, in the order they are kept when the budget is short
PRODUCT = (("dense", {"backend": "flash"}), ("rpattention", {"m": 64}), ("agent", {"m": 64}), ("linear", {}),
           ("focused", {}), ("window", {"window": 8}))
PRODUCT_SHAPE = {"dim": 384, "heads": 6, "batch": 1, "dtype": "bfloat16", "mode": "fwd"}
PRODUCT_MEASURE = {"warmup_ms": 50, "repeat_ms": 150, "rounds": 1, "retries": 0, "cooldown_s": 0.25,
                   "timer": "cudagraph", "energy_s": 0}
BACKBONES = ("deit-s", "swin-t")
RESOLUTIONS = (224, 1024)
BACKBONE_BATCH = 16
BACKBONE_MEASURE = {**PRODUCT_MEASURE, "timer": "auto"}


@dataclass(frozen=True)
class Estimate:
    label: str
    size: int  # tokens (layer) or px (backbone)
    call_ms: float
    seconds: float


@dataclass
class SweepPlan:
    name: str
    cap_s: float
    cases: list[Estimate] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        return sorted({case.size for case in self.cases})

    @property
    def seconds(self) -> float:
        return PROCESS_START_S + sum(case.seconds for case in self.cases) if self.cases else 0.0


def grid_sides(tokens: int) -> tuple[int, int]:
    """N as a grid: square when N is a square, else H x 2H."""
    side = math.isqrt(tokens)
    if side * side == tokens:
        return side, side
    height = math.isqrt(tokens // 2)
    return height, 2 * height


def grid_text(tokens: int) -> str | int:
    """N as a suite's `tokens` entry: N for a square grid, else "HxW"."""
    height, width = grid_sides(tokens)
    return tokens if height == width else f"{height}x{width}"


def _window_s(measure: dict) -> float:
    return (measure["warmup_ms"] + measure["repeat_ms"]) / 1e3


def case_seconds(call_ms: float, measure: dict) -> float:
    calls_s = (CALLS_OUTSIDE_WINDOWS + FP32_REFERENCE_CALLS) * call_ms / 1e3
    energy_s = max(1.0, call_ms / 1e3)  # EnergyMeter.MIN_WINDOW_S of calls, at least one call
    return FIXED_S + energy_s + _window_s(measure) + calls_s + measure["cooldown_s"]


def layer_call_ms(name: str, knobs: dict, tokens: int, rates: dict) -> float:
    import attentions

    shape = PRODUCT_SHAPE
    flops = attentions.spec(name).flops(batch=shape["batch"], grid=grid_sides(tokens), dim=shape["dim"],
                                        num_heads=shape["heads"], **knobs)["total"]
    kind = "dense" if name == "dense" else "other"
    moved = 12 * shape["batch"] * tokens * shape["dim"] * 2  # ~12 passes over the bf16 activations
    seconds = flops / (EFFICIENCY[kind] * rates["bf16_tflops"] * 1e12) + moved / (rates["copy_gbps"] * 1e9)
    return max(FLOOR_MS[kind], seconds * 1e3)


def backbone_call_ms(backbone: str, resolution: int, rates: dict) -> float:
    """Forward FLOPs of a batch, roughly: DeiT-S 12 blocks of 24·N·C² + 4·N²·C (C = 384); Swin-T 4.5 GFLOP per
    224-px image, linear in pixels (windowed attention)."""
    tokens = (resolution // 16) ** 2
    per_image = 12 * (24 * tokens * 384**2 + 4 * tokens**2 * 384) if backbone == "deit-s" else \
        4.5e9 * (resolution / 224) ** 2
    seconds = BACKBONE_BATCH * per_image / (EFFICIENCY["other"] * rates["bf16_tflops"] * 1e12)
    return max(1.0, seconds * 1e3)


def _fit(plan: SweepPlan, estimates: dict[int, list[Estimate]], order: tuple[int, ...], keep_at_least: int) -> None:
    """Keep sizes in `order` while the sweep fits its cap; the rest are dropped (at least `keep_at_least` kept)."""
    for size in order:
        trial = plan.cases + estimates[size]
        if len({c.size for c in plan.cases}) < keep_at_least or PROCESS_START_S + sum(
                c.seconds for c in trial) <= plan.cap_s:
            plan.cases = trial
        else:
            plan.dropped.append(size)


def plan_sweeps(rates: dict, caps: dict[str, float] | None = None) -> dict[str, SweepPlan]:
    """The product sweep (its first four sizes first: 1024 and 65536 before the others), the extra sizes in what
    the product's cap leaves, and the backbones."""
    caps = {**STAGE_CAPS, **(caps or {})}
    estimates: dict[int, list[Estimate]] = {}
    for tokens in (*PRODUCT_SIZES, *EXTRA_SIZES):
        estimates[tokens] = []
        for name, knobs in PRODUCT:
            call_ms = layer_call_ms(name, knobs, tokens, rates)
            estimates[tokens].append(Estimate(name, tokens, call_ms, case_seconds(call_ms, PRODUCT_MEASURE)))
    core = SweepPlan("product", caps["product"])
    _fit(core, estimates, (1024, 65536, 4096, 16384), keep_at_least=2)
    extra = SweepPlan("product-extra", caps["product"] - core.seconds)
    _fit(extra, estimates, EXTRA_SIZES, keep_at_least=0)
    backbones = SweepPlan("backbones", caps["backbones"])
    found: dict[int, list[Estimate]] = {}
    for resolution in RESOLUTIONS:
        found[resolution] = []
        for backbone in BACKBONES:
            call_ms = backbone_call_ms(backbone, resolution, rates)
            for layout in ("own", "rpattention"):
                found[resolution].append(Estimate(f"{backbone} {layout}", resolution, call_ms,
                                                  case_seconds(call_ms, BACKBONE_MEASURE) + 1.0))  # + MACs, share
    _fit(backbones, found, RESOLUTIONS, keep_at_least=1)
    return {"product": core, "product-extra": extra, "backbones": backbones}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def product_suite(name: str, sizes: list[int]) -> str:
    shape = PRODUCT_SHAPE
    lines = [f'name = "{name}"', f'description = "gpu-validate: flash dense vs the linear mechanisms, N = '
             f'{", ".join(map(str, sizes))}"', 'scope = "layer"', "", "[axes]",
             f"tokens = {_toml([grid_text(n) for n in sizes])}", "m = [64]", f"batch = [{shape['batch']}]", f"dim = [{shape['dim']}]", f"heads = [{shape['heads']}]",
             f'dtype = ["{shape["dtype"]}"]', f'mode = ["{shape["mode"]}"]', 'device = "cuda"', "", "[measure]"]
    lines += [f"{key} = {_toml(value)}" for key, value in PRODUCT_MEASURE.items()]
    for name_, knobs in PRODUCT:
        lines += ["", "[[attention]]", f'name = "{name_}"']
        lines += [f"{key} = {_toml(value)}" for key, value in knobs.items() if key != "m"]
    return "\n".join(lines) + "\n"


def backbone_suite(resolutions: list[int]) -> str:
    lines = ['name = "gpu-validate-backbones"', 'description = "gpu-validate: DeiT-S and Swin-T, own attention vs '
             'RPAttention"', 'scope = "backbone"', "", "[axes]", f"backbone = {_toml(list(BACKBONES))}",
             f"resolution = {_toml(resolutions)}", f"batch = [{BACKBONE_BATCH}]", 'dtype = ["bfloat16"]',
             'mode = ["fwd"]', 'device = "cuda"', "", "[measure]"]
    lines += [f"{key} = {_toml(value)}" for key, value in BACKBONE_MEASURE.items()]
    lines += ["", "[[layout]]", 'label = "own"', "", "[[layout]]", 'label = "rpattention"',
              'attention = "rpattention"', 'pattern = "AAAB"', "m = [9, 16, 49, 49]", "[layout.deit-s]",
              'pattern = "A"', "m = 49"]
    return "\n".join(lines) + "\n"


def budget_table(sweeps: dict[str, SweepPlan], rates: dict, rates_from: str) -> str:
    """What --dry-run prints and the summary starts with: stages, caps, estimates, dropped sizes."""
    rows = [f"budget: {TOTAL_S:.0f} s of command time in one call (stage caps {sum(STAGE_CAPS.values()):.0f} s; "
            f"the last stage gets what is left), rates: bf16 {rates['bf16_tflops']:.0f} TFLOP/s, copy "
            f"{rates['copy_gbps']:.0f} GB/s ({rates_from})",
            f"{'stage':<15}{'cap s':>7}{'est s':>8}  what",
            f"{'setup':<15}{STAGE_CAPS['setup']:>7.0f}{STAGE_ESTIMATES['setup']:>8.0f}  offline install, env.json, "
            "doctor --device cuda (timer cross-check)",
            f"{'checks':<15}{STAGE_CAPS['checks']:>7.0f}{STAGE_ESTIMATES['checks']:>8.0f}  tests/cuda against the "
            "installed copy: -m 'cuda and not alone' on 6 workers, then -m 'cuda and alone'"]
    for sweep in sweeps.values():
        sizes = ", ".join(map(str, sweep.sizes)) or "none"
        dropped = f"; dropped {', '.join(map(str, sweep.dropped))}" if sweep.dropped else ""
        rows.append(f"{sweep.name:<15}{sweep.cap_s:>7.0f}{sweep.seconds:>8.0f}  {len(sweep.cases)} cases at "
                    f"{sizes}{dropped} (rounds 1, cool-down {PRODUCT_MEASURE['cooldown_s']} s each, included)")
    total = sum(STAGE_ESTIMATES.values()) + sum(sweep.seconds for sweep in sweeps.values()) + PACK_RESERVE_S
    rows.append(f"{'total':<15}{TOTAL_S:>7.0f}{total:>8.0f}  with {PACK_RESERVE_S:.0f} s for the last pack")
    rows += ["", f"{'case':<30}{'size':>7}{'call ms':>10}{'est s':>8}"]
    for sweep in sweeps.values():
        for case in sweep.cases:
            rows.append(f"{sweep.name + ': ' + case.label:<30}{case.size:>7}{case.call_ms:>10.3f}{case.seconds:>8.2f}")
    return "\n".join(rows)
