"""The results table's vocabulary: column names, their dtypes and meanings, the statuses, the headline metrics and
the export formats. Every room reads this; no torch here."""
from __future__ import annotations

# Final statuses: a case with one of these in results.csv is done and skipped on --resume.
STATUSES = ("ok", "inaccurate", "oom", "unsupported", "nonfinite", "error", "crashed", "timeout")
# Statuses of cases that were timed: their rows carry every measured column. `inaccurate` rows are shown, but
# left out of fits, crossovers and speedups (see analysis.flags).
MEASURED_STATUSES = ("ok", "inaccurate")

# The largest rel_err (‖y − y_ref‖ / ‖y_ref‖ against float32, or float64 for float32) a dtype may show before
# its row is `inaccurate`. Every mechanism measures ≤ 4.7e-4 (float16), ≤ 3.8e-3 (bfloat16) and ≤ 3e-7
# (float32) at 196–16384 tokens on the CPU: the float16 and bfloat16 limits are about 20 and 13 units of
# roundoff (2^-11, 2^-8), room for deeper models, yet far below an overflowing normaliser (0.47); the float32
# limit admits TF32 matmuls (10-bit mantissa) where a user enables them.
ERROR_TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 5e-2}

# name -> (pandas dtype, meaning). Order is the CSV column order.
COLUMNS: dict[str, tuple[str, str]] = {
    "case_id": ("string", "stable hash of the case's defining fields"),
    "suite": ("string", "suite name"),
    "scope": ("string", "layer | backbone"),
    "attention": ("string", "registry name of the mechanism (layer scope) or the layout's main one"),
    "label": ("string", "suite label of the mechanism entry (defaults to the registry name)"),
    "knobs": ("string", "JSON of the resolved mechanism knobs"),
    "backbone": ("string", "backbone name (backbone scope)"),
    "layout": ("string", "per-stage attention layout (backbone scope)"),
    "batch": ("Int64", "batch size"),
    "tokens": ("Int64", "N = height·width"),
    "height": ("Int64", "token grid height"),
    "width": ("Int64", "token grid width"),
    "resolution": ("Int64", "image side in px (resolution axes)"),
    "patch": ("Int64", "patch size in px (resolution axes)"),
    "dim": ("Int64", "channels C"),
    "heads": ("Int64", "attention heads"),
    "m": ("Int64", "representatives / agents / proxies, where the mechanism has them"),
    "dtype": ("string", "float32 | float16 | bfloat16"),
    "mode": ("string", "fwd | fwdbwd"),
    "compile": ("string", "none (eager) | a torch.compile mode the timed step ran in"),
    "precision": ("string", "cast (module and inputs in the dtype) | amp (float32 parameters under autocast)"),
    "channels_last": ("boolean", "backbone images and weights in channels_last memory format"),
    "device": ("string", "cuda | cpu"),
    "device_name": ("string", "GPU or CPU model"),
    "device_uuid": ("string", "the GPU's UUID (GPU-…, as nvidia-smi -L prints it); empty on the CPU"),
    "host": ("string", "the machine the case was measured on"),
    "threads": ("Int64", "torch intra-op threads (CPU)"),
    "status": ("string", "ok | inaccurate | oom | unsupported | nonfinite | error"),
    "notes": ("string", "reason for a non-ok status, or caveats about empty columns"),
    "timer": ("string", "cuda_event | perf_counter"),
    "host_ms": ("Float64", "synchronised wall time of one eager call, ms (CUDA)"),
    "launch_ms": ("Float64", "time one eager call takes to return before synchronising (launching its kernels), ms"),
    "launch_bound": ("boolean", "eager CUDA timing with launch_ms >= 0.5 × host_ms: the events time launch overhead"),
    "rel_err": ("Float64", "‖y − y_ref‖ / ‖y_ref‖ of the output against the same module and inputs in float32 "
                           "(float64 for float32 cases); above ERROR_TOLERANCE of the dtype: status inaccurate"),
    "latency_ms_median": ("Float64", "median latency per call, ms"),
    "latency_ms_p20": ("Float64", "20th percentile latency, ms"),
    "latency_ms_p80": ("Float64", "80th percentile latency, ms"),
    "latency_ms_min": ("Float64", "fastest sample, ms"),
    "latency_ms_mean": ("Float64", "mean latency, ms"),
    "iqr_pct": ("Float64", "interquartile range / median, %"),
    "latency_ms_ci_low": ("Float64", "low end of the 95 % interval of the median latency, ms (latency_ci_method)"),
    "latency_ms_ci_high": ("Float64", "high end of the 95 % interval of the median latency, ms"),
    "latency_ci_method": ("string", "pass-t: t interval over the log pass medians, drift between passes "
                                    "included (core.intervals) | pass-drift: one pass, bootstrap of its samples "
                                    "widened by the machine's measured drift | within-pass: one pass, no drift "
                                    "measured, bootstrap of its samples, drift left out"),
    "ci_pct": ("Float64", "(ci_high − ci_low) / 2 / median, %: the ± of the interval"),
    "target_met": ("boolean", "ci_pct <= [measure] target_ci_pct (after any extra rounds); empty for one pass"),
    "n_samples": ("Int64", "timed samples kept in samples.csv"),
    "noisy": ("boolean", "iqr_pct > 10"),
    "rounds": ("Int64", "timed passes pooled into this row: the rounds it took (a sweep times every case in "
                        "[measure] rounds passes, interleaved across the suite, plus extra rounds for a wide "
                        "interval)"),
    "round_spread_pct": ("Float64", "(slowest − fastest pooled pass median) / median of the pass medians, %"),
    "pass_sd_pct": ("Float64", "100 × standard deviation of the log pooled pass medians (≈ ± % between passes)"),
    "drift_pct": ("Float64", "the machine's drift when the row was written: 100 × standard deviation of the log "
                             "medians of the reference kernel (see run.json); empty for runs without one"),
    "drift_timings": ("Int64", "the reference kernel timings drift_pct comes from"),
    "unstable": ("boolean", "the passes disagree beyond the machine: with each round's effect on all cases taken "
                            "out (run.json drift.rounds), > 10 % apart and an F test (1 %) against what the other "
                            "cases kept, one odd pass of 5 or more forgiven (core.drift); without round effects, "
                            "against drift_pct; without a reference kernel: round_spread_pct > 25"),
    "others_busy_cores": ("Float64", "most cores other processes kept busy during a pooled pass (/proc/stat "
                                     "minus this process)"),
    "gpu_others": ("Int64", "most other processes seen on the GPU during a pooled pass (NVML)"),
    "retries": ("Int64", "passes taken again because other processes or a GPU slowdown disturbed one"),
    "disturbed": ("boolean", "every pooled pass was disturbed, other processes in at least one: they kept >= 0.25 "
                             "core busy that our threads needed, or shared the GPU (even after the retries)"),
    "throughput_img_s": ("Float64", "batch / median latency"),
    "tokens_s": ("Float64", "batch·N / median latency"),
    "peak_mem_mb": ("Float64", "peak memory of one call above the resident baseline, MiB"),
    "peak_reserved_mb": ("Float64", "peak memory the CUDA caching allocator reserved during one call above what it "
                         "held before (cache emptied first), MiB"),
    "flops_analytic": ("Int64", "FLOPs of one call from the spec's formulas (1 MAC = 2 FLOPs)"),
    "flops_counted": ("Int64", "FLOPs of one call counted by FlopCounterMode"),
    "tflops_s": ("Float64", "flops_analytic (else counted) / median latency, TFLOP/s"),
    "sdpa_backend": ("string", "SDPA kernel that actually ran (dense), else empty"),
    "params": ("Int64", "parameter count of the measured module"),
    "gmacs": ("Float64", "multiply-accumulates of one forward image, G (backbone scope)"),
    "gflops": ("Float64", "2 × gmacs (backbone scope)"),
    "attention_share": ("Float64", "fraction of forward time inside attention modules (backbone scope)"),
    "sm_clock_start_mhz": ("Float64", "SM clock before the case's first pass, idle (NVML)"),
    "sm_clock_end_mhz": ("Float64", "SM clock after the case's energy pass (NVML)"),
    "temp_start_c": ("Float64", "GPU temperature before the case's first pass, °C"),
    "temp_end_c": ("Float64", "GPU temperature after the case's energy pass, °C"),
    "power_start_w": ("Float64", "GPU power draw before the case's first pass, W"),
    "power_end_w": ("Float64", "GPU power draw after the case's energy pass, W"),
    "sm_clock_min_mhz": ("Float64", "lowest SM clock read during the pooled timed windows (NVML, every 0.1 s)"),
    "sm_clock_median_mhz": ("Float64", "median SM clock read during the pooled timed windows"),
    "temp_max_c": ("Float64", "highest GPU temperature read during the pooled timed windows, °C"),
    "power_median_w": ("Float64", "median GPU power read during the pooled timed windows, W"),
    "clock_reasons": ("string", "clocks-event reasons seen during the pooled timed windows (idle/pinned left out)"),
    "power_capped": ("boolean", "the power cap held the clocks during a pooled timed window (normal under load; "
                     "not a flag)"),
    "throttled": ("boolean", "GPU clocks were pulled down (thermal, hardware slowdown, power brake, board or "
                  "reliability limit) in every pass, retries included: read during the timed windows"),
    "energy_j_per_iter": ("Float64", "GPU energy per call from NVML's energy counter, J"),
    "energy_window_s": ("Float64", "seconds of back-to-back calls the energy was measured over (at least 1)"),
    "energy_j_per_img": ("Float64", "energy_j_per_iter / batch, J"),
    "trace": ("string", "profiler trace file of this case, relative to the run dir"),
    "started_at": ("string", "UTC ISO time the case started"),
    "elapsed_s": ("Float64", "wall time spent on the whole case (all passes), s"),
    "compile_s": ("Float64", "wall time of the first compiled call (compilation), s; never part of the latency"),
    "graphs": ("Int64", "graphs torch.compile made of one step (1: the whole step in one graph)"),
    "graph_breaks": ("Int64", "graph breaks torch.compile hit in one step"),
    "recompiles": ("Int64", "recompilations after the first call (a second call must not recompile)"),
    "timing": ("string", "JSON of the [measure] settings the case was timed with (a resume refuses other settings)"),
}

SAMPLE_COLUMNS: dict[str, tuple[str, str]] = {
    "case_id": ("string", "the case"),
    "sample": ("Int64", "index of the timed iteration"),
    "latency_ms": ("Float64", "that iteration's latency, ms"),
    "round": ("Int64", "which timed pass of the case the sample belongs to (0-based, in the order taken)"),
}

# rounds.csv: every timed pass of every case, pooled into its row or left out (a disturbed pass that was retried).
ROUND_COLUMNS: dict[str, tuple[str, str]] = {
    "case_id": ("string", "the case"),
    "round": ("Int64", "the pass, 0-based in the order taken"),
    "retry": ("boolean", "a pass taken again because an earlier one was disturbed"),
    "pooled": ("boolean", "its samples are pooled into the case's row"),
    "started_at": ("string", "UTC ISO time the pass started"),
    "n_samples": ("Int64", "timed samples of the pass"),
    "median_ms": ("Float64", "median latency of the pass, ms"),
    "others_busy_cores": ("Float64", "cores other processes kept busy during the pass"),
    "gpu_others": ("Int64", "other processes on the GPU during the pass"),
    "window_s": ("Float64", "seconds the load was read over (warm-up and samples, at least 0.1 s)"),
    "disturbed": ("boolean", "other processes or GPU clock slowdowns disturbed the pass"),
    "why": ("string", "what disturbed it"),
    "sm_clock_min_mhz": ("Float64", "lowest SM clock read during the pass (NVML)"),
    "clock_reasons": ("string", "clocks-event reasons seen during the pass"),
    "host": ("string", "the machine the pass ran on"),
    "device_uuid": ("string", "the GPU the pass ran on (GPU-…); empty on the CPU"),
    "sweep_round": ("Int64", "the round of the sweep it was taken in: 0 .. rounds − 1, then retry and extra rounds; "
                             "passes of two cases in one round are paired for speedups"),
    "reference_ms": ("Float64", "the reference kernel's median timed last before the pass, ms (the round's drift)"),
}

# reference.csv: every timing of the reference kernel (a matmul and a copy, the same work every run on a device),
# at the start of every round and between chunks of a long round; its spread is the machine's drift (core.drift).
REFERENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "sweep_round": ("Int64", "the round of the sweep it was timed in"),
    "started_at": ("string", "UTC ISO time it was timed"),
    "median_ms": ("Float64", "median of its samples, ms"),
    "n_samples": ("Int64", "samples taken"),
    "disturbed": ("boolean", "other processes disturbed the window (left out of the drift)"),
    "workload": ("string", "what ran: device, sizes, threads"),
}

# The headline metrics reports, speedups and compare can use: name -> the results column it reads.
METRIC_COLUMNS = {"latency": "latency_ms_median", "throughput": "throughput_img_s", "memory": "peak_mem_mb"}

# What `rpbench export` writes: every column (csv, parquet, json), the readable case table (html), either the
# paper table or the case table (md, latex: EXPORT_TABLES, the paper table by default), or the static figures.
EXPORT_FORMATS = ("csv", "parquet", "json", "md", "html", "latex", "figures")
EXPORT_TABLES = ("paper", "cases")
# How `rpbench history` orders runs: by the run's date, or by the committer date of the commit it measured.
HISTORY_ORDERS = ("time", "commit")
