"""The machine: what it is (environment, telemetry), whether it is fit to benchmark on (doctor and its CPU and GPU
checks) and what it can achieve at best (ceilings, measured and cached)."""
