"""`sweep --launcher slurm|local`, `rpbench status`, `rpbench collect`: a suite as a submitit job array, each task
writing its own run dir, merged into the run dir by collect. submitit's local executor runs the whole path here
(only the executor differs from slurm); the slurm executor itself is driven with a fake `sbatch` on PATH, which
keeps the batch script submitit wrote."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

import rpbench
from rpbench.core.case import CaseFlags
from rpbench.core.launch import LaunchSettings, settings_from_table
from rpbench.measure.launch import plan_tasks
from rpbench.results import launched
from rpbench.results.store import load_samples
from rpbench.suites import case_from_flags
from rpbench.suites.fields import cases_for_elsewhere

from cli_helpers import invoke, tiny_suite
from launch_helpers import assert_whole, fake_slurm, kill_running, wait_for_tasks

pytest.importorskip("submitit")


pytestmark = pytest.mark.slow  # the fast lane leaves these out: sweeps through the SLURM path's local executor, in subprocesses

def test_the_local_executor_runs_a_suite_through_the_slurm_path_and_collect_merges_it(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense", "rpattention"), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    began = time.perf_counter()
    result = invoke("sweep", str(suite), "--launcher", "local", "--tasks", "2", "--out", str(out))
    try:
        assert result.exit_code == 0, result.output
        assert time.perf_counter() - began < 20  # returns at once; the tasks run on
        assert "4 cases in 2 task(s) submitted (local, job" in result.output
        launch = launched.read_launch(out)
        assert sorted(sum(launch["tasks"], [])) == sorted(case.case_id for case in rpbench.suites.load_suite(suite)
                                                          .cases)
        wait_for_tasks(out)
    finally:
        kill_running(out)
    status = invoke("status", str(out))
    assert status.exit_code == 0 and "4 of 4 cases final in the tasks (2 done); 0 collected" in status.output
    assert "rpbench collect" in status.output
    collected = invoke("collect", str(out))
    assert collected.exit_code == 0 and "collected 4 new row(s): 4 of 4 cases" in collected.output
    frame = assert_whole(out, 4)
    assert (frame["status"] == "ok").all()
    passes = pd.read_csv(out / "rounds.csv").groupby("case_id").size()
    assert (passes >= 2).all()  # two rounds each (the two tasks share 2 cores here: some passes are retried)
    for index in range(2):  # the merged rows are the tasks' rows, value for value
        task = rpbench.load(launched.task_dir(out, index))
        merged = frame.set_index("case_id").loc[task["case_id"]]
        assert list(merged["latency_ms_median"]) == list(task["latency_ms_median"])
    again = invoke("collect", str(out))
    assert "collected 0 new row(s): 4 of 4 cases" in again.output
    assert len(rpbench.load(out)) == 4
    env = json.loads((out / "env.json").read_text())
    assert env["tasks"] and env["torch"]


def test_a_killed_task_is_stopped_and_resume_submits_it_again_losing_nothing(tmp_path):
    marker = tmp_path / "hang-while-this-exists"
    marker.write_text("")
    (tmp_path / "slow.py").write_text(
        "import os, time\nfrom torch import nn\n"
        "class Slow(nn.Module):\n"
        "    def __init__(self, dim, num_heads, grid):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n"
        f"        while os.path.exists({str(marker)!r}):\n"
        "            time.sleep(0.05)\n"
        "        return self.fc(x)\n")
    suite = tiny_suite(tmp_path, names=("dense", f"{tmp_path / 'slow.py'}:Slow"), tokens="16")
    out = tmp_path / "run"
    try:
        assert invoke("sweep", str(suite), "--launcher", "local", "--out", str(out)).exit_code == 0
        slow_id = next(c.case_id for c in rpbench.suites.load_suite(suite).cases if c.attention.endswith(":Slow"))
        index = next(i for i, ids in enumerate(launched.read_launch(out)["tasks"]) if slow_id in ids)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the other task done, the slow one hanging in its case
            states = launched.task_states(out)
            if states[index].state == "running" and states[1 - index].state == "done":
                break
            time.sleep(0.1)
        slow = states[index]
        os.kill(int(slow.detail.split()[1]), signal.SIGKILL)  # the task's process, mid-case
        deadline = time.monotonic() + 30
        while launched.task_states(out)[slow.index].state != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        status = invoke("status", str(out))
        assert "stopped" in status.output and "rpbench sweep --resume" in status.output
        marker.unlink()
        resumed = invoke("sweep", "--resume", str(out))
        assert resumed.exit_code == 0, resumed.output
        assert "1 of 2 cases collected" in resumed.output and f"submitted again: task(s) {slow.index}" in resumed.output
        wait_for_tasks(out)
    finally:
        marker.unlink(missing_ok=True)
        kill_running(out)
    assert "collected 1 new row(s): 2 of 2 cases" in invoke("collect", str(out)).output
    frame = assert_whole(out, 2)
    assert (frame["status"] == "ok").all()
    jobs = launched.read_launch(out)["jobs"]
    assert [job["task"] for job in jobs].count(slow.index) == 2  # submitted, then submitted again


def test_collect_leaves_out_a_row_a_task_is_still_writing(tmp_path):
    out = tmp_path / "run"
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16, 64")
    try:
        assert invoke("sweep", str(suite), "--launcher", "local", "--tasks", "1", "--out", str(out)).exit_code == 0
        wait_for_tasks(out)
    finally:
        kill_running(out)
    results = launched.task_dir(out, 0) / "results.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last row half written
    assert "collected 1 new row(s): 1 of 2 cases" in invoke("collect", str(out)).output
    results.write_text("".join(lines))  # ... and then finished
    assert "collected 1 new row(s): 2 of 2 cases" in invoke("collect", str(out)).output
    assert_whole(out, 2)


def test_the_slurm_executor_gets_the_suite_table_and_the_flags(tmp_path, monkeypatch):
    kept = fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense", "rpattention"), tokens="16, 64")
    suite.write_text(suite.read_text() + '\n[launcher]\npartition = "gpu"\ntime_min = 30\nsetup = ["module load '
                     'cuda/12.8"]\n[launcher.sbatch]\nconstraint = "a100"\n')
    out = tmp_path / "run"
    result = invoke("sweep", str(suite), "--launcher", "slurm", "--device", "cpu", "--out", str(out), "--account",
                    "proj", "--time", "45", "--max-running", "2", "--sbatch", "constraint=h100", "--sbatch",
                    "qos=high")
    assert result.exit_code == 0, result.output
    assert "4 cases in 4 task(s) submitted (slurm, job 4242)" in result.output
    script = next(kept.iterdir()).read_text()
    for line in ("--partition=gpu", "--account=proj", "--time=45", "--array=0-3%2", "--constraint=h100",
                 "--qos=high", "module load cuda/12.8"):
        assert line in script  # the flags over the suite's table (time, constraint)
    assert "--gpus-per-node=1" not in script  # a CPU sweep asks for no GPU
    launch = launched.read_launch(out)
    assert [job["job_id"] for job in launch["jobs"]] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    assert launch["device"] == "cpu" and launch["settings"]["time_min"] == 45
    status = invoke("status", str(out))
    assert "0 of 4 cases final in the tasks (4 waiting)" in status.output
    assert "again" not in status.output  # queued: nothing to submit again yet
    again = invoke("sweep", "--resume", str(out), "--time", "90")  # nothing started: all four again, longer
    assert again.exit_code == 0 and "submitted again: task(s) 0-3 (job 4242)" in again.output
    assert "--time=90" in sorted(kept.iterdir())[-1].read_text()


def test_a_cuda_sweep_can_be_submitted_from_a_machine_without_a_gpu(tmp_path, monkeypatch):
    kept = fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    suite.write_text(suite.read_text().replace('device = "cpu"', 'device = "auto"'))
    result = invoke("sweep", str(suite), "--launcher", "slurm", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert launched.read_launch(tmp_path / "run")["device"] == "cuda"
    assert "--gpus-per-node=1" in next(kept.iterdir()).read_text()
    assert "submitted (slurm, job 4242), 1 GPU per task; device auto means cuda on the nodes, though this machine " \
           "has no GPU" in result.output


def test_the_gpu_request_follows_each_task_s_device(tmp_path, monkeypatch):
    kept = fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16, 64")
    suite.write_text(suite.read_text().replace('device = "cpu"', 'device = ["cpu", "cuda"]'))
    result = invoke("sweep", str(suite), "--launcher", "slurm", "--tasks", "2", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "(slurm, jobs 4242, 4242), 1 GPU per task (1 cuda tasks); no GPU for the 1 CPU tasks" in result.output
    scripts = [path.read_text() for path in sorted(kept.iterdir())]
    assert len(scripts) == 2 and "--gpus-per-node=1" in scripts[0] and "gpus" not in scripts[1]  # one array each
    launch = launched.read_launch(tmp_path / "run")
    assert launch["task_devices"] == ["cuda", "cpu"] and launch["device"] == "mixed"
    with cases_for_elsewhere():  # this machine has no GPU: its cuda cases load as cases for the nodes
        devices = {case.case_id: case.device for case in rpbench.suites.load_suite(suite).cases}
    assert [[devices[i] for i in ids] for ids in launch["tasks"]] == [["cuda", "cuda"], ["cpu", "cpu"]]


def test_a_suite_on_the_cpu_asks_for_no_gpu_and_cuda_cases_need_one(tmp_path, monkeypatch):
    kept = fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")  # device = "cpu" in the suite, no --device
    result = invoke("sweep", str(suite), "--launcher", "slurm", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0 and "no GPU: the cases run on the CPU" in result.output
    assert "gpus" not in next(kept.iterdir()).read_text()
    suite.write_text(suite.read_text() + "\n[launcher]\ngpus_per_task = 0\n")
    refused = invoke("sweep", str(suite), "--launcher", "slurm", "--device", "cuda", "--out", str(tmp_path / "no"))
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "[launcher] gpus_per_task = 0, but 1 case(s) run on cuda" in refused.output
    assert not (tmp_path / "no").exists()


def test_tasks_the_scheduler_still_holds_are_not_submitted_again(tmp_path, monkeypatch):
    from rpbench.measure import launch

    kept = fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16, 64, 144")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--launcher", "slurm", "--out", str(out)).exit_code == 0
    (launched.task_dir(out, 1) / "run.json").parent.mkdir(parents=True)
    (launched.task_dir(out, 1) / "run.json").write_text("{}")  # task 1 started, then stopped
    (launched.task_dir(out, 2) / "run.json").parent.mkdir(parents=True)
    (launched.task_dir(out, 2) / "run.json").write_text("{}")  # task 2 started, stopped, and requeued by SLURM
    monkeypatch.setattr(launch, "queue_states", lambda run_dir: {0: "PENDING (Priority)", 2: "PENDING (BeginTime)"})
    states = {s.index: (s.state, s.detail) for s in launched.task_states(out, launch.queue_states(out))}
    assert states == {0: ("waiting", "PENDING (Priority)"), 1: ("stopped", None),
                      2: ("requeued", "PENDING (BeginTime)")}
    status = invoke("status", str(out))
    assert "task(s) 2 stopped and requeued by SLURM" in status.output and "rpbench sweep --resume" in status.output
    again = invoke("sweep", "--resume", str(out))
    assert "tasks still running or queued: 0, 2" in again.output
    assert "submitted again: task(s) 1 (job" in again.output
    assert [job["task"] for job in launched.read_launch(out)["jobs"]] == [0, 1, 2, 1]  # only the one nothing holds
    assert len(list(kept.iterdir())) == 2


def test_without_submitit_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    result = invoke("sweep", str(suite), "--launcher", "local", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.output.strip() == "error: --launcher needs submitit, which is not installed: pip install " \
                                    "'rpbench[slurm]'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, words", [
    (["--partition", "gpu"], "--partition: only with --launcher slurm (or local)"),
    (["--launcher", "local", "--workers", "2"], "leave out --gpus, --workers and --resume"),
    (["--launcher", "slurm", "--time", "0"], "--time: 0: must be from 1 to 525600"),
    (["--launcher", "slurm", "--tasks", "-2"], "--tasks: -2: must be from 1 to 10000"),
    (["--launcher", "slurm", "--sbatch", "array=0-9"], "--sbatch: array: rpbench sets it"),
    (["--launcher", "slurm", "--sbatch", "=x"], "--sbatch: '' is not an sbatch option name"),
    (["--launcher", "slurm", "--partition", "a b"], "--partition: 'a b' is not a SLURM partition name"),
])
def test_bad_launcher_flags_are_one_line(tmp_path, monkeypatch, args, words):
    fake_slurm(tmp_path, monkeypatch)
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 2 and words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("table, words", [
    ("nosuch = 1", "launcher.nosuch: unknown key"),
    ("time_min = \"1h\"", "launcher.time_min: must be int"),
    ("time_min = true", "launcher.time_min: must be int"),
    ("mem_gb = -1", "launcher.mem_gb: -1.0: must be a number of GB above 0"),
    ("setup = [\"a\\nb\"]", "launcher.setup: 'a\\nb': each entry is one non-empty shell line"),
    ("setup = [1]", "launcher.setup: must be a list of shell lines"),
    ("[launcher.sbatch]\noutput = \"x\"", "launcher.sbatch: output: rpbench sets it"),
])
def test_a_bad_launcher_table_is_one_line_naming_the_key(tmp_path, table, words):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    suite.write_text(suite.read_text() + "\n[launcher]\n" + table + "\n")
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and words in result.output, result.output


def test_settings_from_a_table_and_flags_over_them():
    settings, problem = settings_from_table({"partition": "gpu", "mem_gb": 64, "sbatch": {"qos": "low", "gres": 1}})
    assert problem is None and settings.mem_gb == 64.0
    merged = settings.with_overrides(partition="big", sbatch=(("qos", "high"),))
    assert merged.partition == "big" and dict(merged.sbatch) == {"qos": "high", "gres": "1"}
    assert LaunchSettings.from_json(merged.to_json()) == merged


def test_tasks_take_every_case_once_longest_first():
    cases = [case_from_flags(CaseFlags(attention="dense", tokens=str(n), device="cpu")) for n in (16, 64, 256, 1024)]
    assert plan_tasks(cases, None) == [[c.case_id] for c in reversed(cases)]
    two = plan_tasks(cases, 2)
    assert two == [[cases[3].case_id, cases[1].case_id], [cases[2].case_id, cases[0].case_id]]
    assert plan_tasks(cases, 99) == plan_tasks(cases, None)
    on_gpu = [case_from_flags(CaseFlags(attention="dense", tokens=str(n), device="cpu")) for n in (16, 64, 256)]
    on_gpu = [dataclasses.replace(case, device="cuda") for case in on_gpu]
    mixed = plan_tasks(cases + on_gpu, 3)  # never two devices in a task, each device a share by its cases
    devices = {case.case_id: case.device for case in cases + on_gpu}
    assert [{devices[i] for i in task} for task in mixed] == [{"cuda"}, {"cpu"}, {"cpu"}]
    assert sorted(sum(mixed, [])) == sorted(devices) and plan_tasks(cases + on_gpu, 1) == [
        [c.case_id for c in reversed(on_gpu)], [c.case_id for c in reversed(cases)]]


def test_status_and_collect_of_a_run_swept_here(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    assert invoke("sweep", str(suite), "--out", str(tmp_path / "run"), "--no-report").exit_code == 0
    status = invoke("status", str(tmp_path / "run"))
    assert status.exit_code == 0 and "1 row(s) written (1 ok)" in status.output
    assert "no sweep is writing it" in status.output
    collected = invoke("collect", str(tmp_path / "run"))
    assert collected.exit_code == 0 and "nothing to collect" in collected.output
    for command in ("status", "collect"):
        missing = invoke(command, str(tmp_path / "nope"))
        assert missing.exit_code != 0 and len(missing.output.strip().splitlines()) == 1


def test_status_and_collect_name_the_dir_as_given():
    for command in ("status", "collect"):
        result = invoke(command, "/no/such/run")
        assert result.exit_code == 2 and result.output.strip() == "error: /no/such/run: not a results dir of " \
                                                                   "rpbench (no suite.toml inside)"


def test_a_task_of_cuda_cases_on_a_node_without_a_gpu_stops_with_one_line(tmp_path, monkeypatch, capsys):
    from rpbench.core.errors import ExecutionError
    from rpbench.measure.task import Task

    fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "run"
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16")
    assert invoke("sweep", str(suite), "--launcher", "slurm", "--device", "cuda", "--out", str(out)).exit_code == 0
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a node that got no GPU
    with pytest.raises(ExecutionError, match="task 0: its cases run on cuda, but torch sees no GPU on"):
        Task()(str(out), 0)
    said = capsys.readouterr().err.strip()
    assert said.startswith("rpbench task 0: ExecutionError: task 0: its cases run on cuda")
    stderr = out / launched.read_launch(out)["jobs"][0]["stderr"]  # as SLURM would have kept it
    stderr.parent.mkdir(parents=True, exist_ok=True)
    stderr.write_text(f"submitit ERROR - Submitted job triggered an exception\n{said}\n"
                      "srun: error: node7: task 0: Exited with exit code 1\n")
    assert launched.task_states(out)[0].detail == said  # why it stopped, not srun's last word
    stderr.write_text("slurmstepd: error: *** JOB 4242 ON node7 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT "
                      "***\nsrun: error: node7: task 0: Exited with exit code 1\n")
    assert "DUE TO TIME LIMIT" in launched.task_states(out)[0].detail  # SLURM's own word first
