"""Measuring: a Case becomes a Workload (workload), timed by the timers (timing) and observed by untimed passes
(probes); the runner turns one case into a Measurement, the sweep runs a suite's cases into the store, max_batch
searches the OOM boundary and profile records profiler traces. The only room that runs the mechanisms."""
