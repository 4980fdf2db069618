"""`python -m rpbench.measure.worker RESULT_PATH`: one pass of one case, for `isolated` (the job arrives pickled on
stdin; the result, a Measurement or a Round, or the exception of a later pass, is pickled to RESULT_PATH)."""
from __future__ import annotations

import os
import pickle
import sys


def main(argv: list[str]) -> int:
    import torch

    from .isolated import Job
    from .runner import measure_again, run_case

    job: Job = pickle.load(sys.stdin.buffer)
    torch.set_num_threads(job.threads)
    if job.kind == "first":
        result: object = run_case(job.case, job.timing, suite=job.suite)
    else:
        try:
            result = measure_again(job.case, job.timing, job.like, retry=job.retry)
        except Exception as err:  # the parent keeps the passes already taken and notes this one
            result = RuntimeError(f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
    partial = argv[0] + ".tmp"
    with open(partial, "wb") as handle:
        pickle.dump(result, handle)
    os.replace(partial, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
