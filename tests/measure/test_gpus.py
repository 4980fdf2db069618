"""`sweep --gpus`: one persistent isolated worker per GPU, pinned with CUDA_VISIBLE_DEVICES, a case kept on one GPU
for all its passes and no GPU running two passes at once. On this CPU machine the GPUs are names only: a planted
mechanism records the CUDA_VISIBLE_DEVICES its worker saw and holds a per-GPU lock for its whole process."""
from __future__ import annotations

import json
import socket
import textwrap

import pandas as pd
import pytest

import rpbench
from rpbench.core.errors import UsageError
from rpbench.measure import isolated

from cli_helpers import invoke, tiny_suite

pytestmark = pytest.mark.slow  # the fast lane leaves these out: one worker process per stand-in GPU

RECORDER = '''
    import fcntl, json, os, time
    from torch import nn

    LOG = {log!r}
    _HELD = {{}}

    class Recorder(nn.Module):
        def __init__(self, dim, num_heads, grid):
            super().__init__()
            gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
            shared = False
            if gpu not in _HELD:  # held for this worker's whole life: a second worker on the same GPU cannot take it
                handle = open(os.path.join(LOG, f"gpu-{{gpu}}.lock"), "a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    shared = True
                _HELD[gpu] = handle
            with open(os.path.join(LOG, "passes.jsonl"), "a") as out:
                out.write(json.dumps({{"gpu": gpu, "grid": list(grid), "pid": os.getpid(), "shared": shared}}) + "\\n")
            time.sleep(0.2)
            self.fc = nn.Linear(dim, dim)

        def forward(self, x):
            return self.fc(x)
'''


@pytest.fixture
def four_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_gpus_all_or_a_list_name_the_devices_each_worker_sees(four_gpus, monkeypatch):
    assert isolated.gpu_slots("all") == ["0", "1", "2", "3"]
    assert isolated.gpu_slots("0, 3") == ["0", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # torch's cuda:1 is physical GPU 5 here
    assert isolated.gpu_slots("1,3") == ["5", "7"]
    assert isolated.gpu_slots("ALL") == ["4", "5", "6", "7"]


@pytest.mark.parametrize("spec, words", [("4", "'4' is not a GPU here"), ("0,0", "GPU 0 is named twice"),
                                         ("-1", "'-1' is not a GPU here"), ("", "'' is not a GPU here"),
                                         ("one", "'one' is not a GPU here")])
def test_a_gpu_that_is_not_there_is_one_line(four_gpus, spec, words):
    with pytest.raises(UsageError, match=words):
        isolated.gpu_slots(spec)


def test_without_a_gpu_gpus_says_so_and_points_to_workers():
    result = invoke("sweep", "--gpus", "all", "--no-report")
    assert result.exit_code == 2 and "no CUDA GPU is visible here (use --workers N" in result.output


def test_cpu_cases_are_refused_under_gpus(four_gpus, tmp_path):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    result = invoke("sweep", str(suite), "--gpus", "all", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "--gpus: 1 of the 1 cases run on the CPU" in result.output
    assert not (tmp_path / "run").exists()


def test_each_case_keeps_one_gpu_and_no_gpu_runs_two_passes_at_once(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (tmp_path / "recorder.py").write_text(textwrap.dedent(RECORDER.format(log=str(log))))
    suite = tiny_suite(tmp_path, names=(f"{tmp_path / 'recorder.py'}:Recorder",), tokens="16, 64, 144, 256")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    import rpbench.suites as suites
    from rpbench.measure.sweep import run_sweep
    from rpbench.results.resume import RunRecord

    loaded = suites.load_suite(suite)
    run_sweep(loaded, loaded.cases, tmp_path / "run", RunRecord(suite=loaded.name, suite_text=loaded.text,
                                                                 timing=loaded.timing.to_json()),
              isolate_timeout_s=120, gpus=["3", "5"])
    passes = pd.DataFrame([json.loads(line) for line in (log / "passes.jsonl").read_text().splitlines()])
    passes["tokens"] = passes["grid"].map(lambda grid: grid[0] * grid[1])
    assert not passes["shared"].any()  # no two workers held one GPU at once
    assert set(passes["gpu"]) == {"3", "5"}
    assert (passes.groupby("tokens")["gpu"].nunique() == 1).all()  # a case stays on its GPU
    assert (passes.groupby("gpu")["pid"].nunique() == 1).all()  # one persistent worker per GPU, for every case
    assert (passes.groupby("pid")["gpu"].nunique() == 1).all()  # ... that never moves to another GPU
    frame = rpbench.load(tmp_path / "run")
    assert len(frame) == 4 and (frame["status"] == "ok").all() and (frame["rounds"] >= 2).all()
    assert (frame["host"] == socket.gethostname()).all() and frame["device_uuid"].isna().all()  # CPU: no GPU UUID
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert (rounds["host"] == socket.gethostname()).all()


def test_a_worker_that_dies_on_a_gpu_names_that_gpu(tmp_path):
    from rpbench.suites import case_from_flags
    from rpbench.core.case import CaseFlags, Timing

    (tmp_path / "boom.py").write_text("import os\nclass Boom:\n    def __init__(self, *a, **k):\n"
                                      "        os._exit(3)\n")
    case = case_from_flags(CaseFlags(attention=f"{tmp_path / 'boom.py'}:Boom", tokens="16", device="cpu"))
    measured = isolated.run_first(case, Timing(rounds=1), "s", 60, 1, {"CUDA_VISIBLE_DEVICES": "2"})
    assert measured.status == "crashed" and "crashed: the worker died (exit code 3) on GPU 2" in measured.note
