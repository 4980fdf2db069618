"""Hardware efficiency: achieved TFLOP/s as a share of the datasheet peak and of the ceilings doctor measured."""
from __future__ import annotations

import re
from typing import Any, Mapping

import pandas as pd


# Dense (no 2:4 sparsity) peak TFLOP/s per device and dtype, from NVIDIA's own documents:
#   H100 SXM / PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet (tensor figures there are quoted with sparsity;
#     the datasheet footnote says dense is half).
#   H200 / H200 NVL: "NVIDIA H200 Tensor Core GPU" datasheet (same sparsity footnote).
#   A100 SXM and PCIe: "NVIDIA A100 Tensor Core GPU" datasheet (both form factors list the same figures).
#   A10, L4, L40S: the respective NVIDIA product datasheets (sparsity figures halved).
#   RTX 4090: "NVIDIA Ada GPU Architecture" whitepaper, appendix table; RTX 3090: "NVIDIA Ampere GA102 GPU
#     Architecture" whitepaper, appendix table. GeForce tensor rates are the FP32-accumulate ones, which is
#     what PyTorch's fp16/bf16 GEMMs use.
# fp32 is the non-tensor CUDA-core rate (PyTorch's default float32 matmul precision "highest"); tf32 the tensor rate.
# A key maps to None where a variant with the same prefix has different, unlisted figures: better unknown than wrong.
PEAK_TFLOPS: dict[str, dict[str, float] | None] = {
    "H100 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},  # how the SXM5 part names itself
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "RTX 4090 D": None,
    "RTX 3090": {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0},
    "RTX 3090 Ti": None,
}

_DTYPE_PEAK_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _mentions(name: str, key: str) -> bool:
    """key appears in name as whole words (so "L4" does not match "L40S", nor "H200" match "GH200")."""
    pattern = r"(?<![A-Za-z0-9])" + r"\s+".join(map(re.escape, key.split())) + r"(?![A-Za-z0-9])"
    return re.search(pattern, name, flags=re.IGNORECASE) is not None


def peak_tflops(device_name: str | None, dtype: str | None, float32_mode: str | None = "fp32") -> float | None:
    """Dense datasheet peak for a device and dtype, or None ("unknown") when not in the table: never a guess.

    The longest matching key wins ("H100 NVL" over a shorter key). MIG slices are unknown: they have a
    fraction of the SMs. float32_mode says which float32 rate applies ("fp32" or "tf32"; None: unknown).
    """
    if not isinstance(device_name, str) or not isinstance(dtype, str) or _mentions(device_name, "MIG"):
        return None
    matches = [key for key in PEAK_TFLOPS if _mentions(device_name, key)]
    if not matches:
        return None
    figures = PEAK_TFLOPS[max(matches, key=len)]
    key = float32_mode if dtype == "float32" else _DTYPE_PEAK_KEY.get(dtype)
    return figures.get(key) if figures is not None and key is not None else None


def float32_mode(env: Mapping[str, Any]) -> str | None:
    """Which float32 peak applies, from the TF32 settings env.json records (environment.collect's "tf32").

    "highest" precision without TF32 -> the CUDA-core fp32 rate; "high" or TF32 allowed -> the tf32 tensor rate;
    "medium" (may use bf16 internally) or nothing recorded -> None, so no percentage is claimed.
    """
    settings = env.get("tf32") if isinstance(env.get("tf32"), Mapping) else {}
    precision = settings.get("float32_matmul_precision")
    if precision == "high" or settings.get("matmul_allow_tf32") is True:
        return "tf32"
    if precision == "highest":
        return "fp32"
    return None


def ceiling_rates(env: Mapping[str, Any]) -> dict[str, float]:
    """Measured matmul TFLOP/s per dtype from env.json "ceilings": {dtype: tflops}, or doctor's
    {"matmul_tflops": {dtype: tflops}, ...} layout; unusable entries are dropped."""
    ceilings = env.get("ceilings")
    if not isinstance(ceilings, Mapping):
        return {}
    if isinstance(ceilings.get("matmul_tflops"), Mapping):
        ceilings = ceilings["matmul_tflops"]
    return {
        dtype: float(rate)
        for dtype, rate in ceilings.items()
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0
    }


def efficiency(frame: pd.DataFrame, env: Mapping[str, Any]) -> pd.DataFrame:
    """Achieved TFLOP/s per case and its share of the datasheet peak and of measured ceilings (env.json).

    A share above 100 % is never shown as a number: `pct_*` is left empty and `pct_*_broken` is True, because the
    case cannot beat what the machine can do; the ceiling was measured under load, or a FLOP count is wrong."""
    mode = float32_mode(env)
    ceilings = ceiling_rates(env)
    peaks = [
        peak_tflops(None if pd.isna(name) else name, None if pd.isna(dtype) else dtype, mode)
        for name, dtype in zip(frame["device_name"], frame["dtype"])
    ]
    result = pd.DataFrame(
        {
            "tflops_s": frame["tflops_s"].astype("Float64"),
            "peak_tflops": pd.array([pd.NA if p is None else p for p in peaks], dtype="Float64"),
            "ceiling_tflops": pd.array(
                [ceilings.get(dtype, pd.NA) if isinstance(dtype, str) else pd.NA for dtype in frame["dtype"]],
                dtype="Float64",
            ),
        },
        index=frame.index,
    )
    for share, reference in (("pct_peak", "peak_tflops"), ("pct_ceiling", "ceiling_tflops")):
        pct = 100 * result["tflops_s"] / result[reference]
        broken = (pct > 100).fillna(False).astype(bool)
        result[share] = pct.mask(broken)  # more than 100 % of a ceiling means the ceiling (or a FLOP count) is wrong
        result[f"{share}_broken"] = broken
    return result
