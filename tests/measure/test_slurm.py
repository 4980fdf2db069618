"""`sweep --launcher slurm` against a real SLURM: one node on this machine (tests/slurm_cluster.py; skipped with the
reason where it cannot start). A CPU suite goes in as a job array and asks for no GPU, `status` follows it while it
runs, a task cancelled mid-case is shown stopped with SLURM's reason and `sweep --resume` submits it again, `collect`
merges every case exactly once, and a task that reaches its time limit is requeued and finishes. What a one-node
cluster without GPUs cannot show (GPU lines, nodes it does not have) stays with the fake sbatch of test_launch.py.
"""
from __future__ import annotations

import re
import threading

import pytest

import rpbench
from rpbench.measure.launch import queue_states
from rpbench.results import launched

from cli_helpers import invoke, planted, tiny_suite
from launch_helpers import assert_whole, wait_for_tasks

pytest.importorskip("submitit")

def hanging(tmp_path, name: str, condition: str):
    """A planted mechanism that hangs in its forward while `condition` holds; and the file that exists once it
    hangs."""
    entered = tmp_path / f"{name}-entered"
    action = f"while {condition}: open({str(entered)!r}, 'a').close(); time.sleep(0.05)"
    return planted(tmp_path, name, action), entered


@pytest.fixture(scope="module")
def on_cluster(slurm, tmp_path_factory):
    """This module's process talks to the test SLURM (SLURM_CONF) and submits from a dir of its own (the jobs' cwd)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(slurm.config))
        patch.chdir(tmp_path_factory.mktemp("submit-from"))
        yield slurm


@pytest.fixture(scope="module")
def at_time_limit(on_cluster, tmp_path_factory):
    """A one-case suite submitted from Python (`rpbench.sweep(launcher="slurm")`) with a time limit of one minute,
    whose case hangs until SLURM has requeued its task once
    (SLURM_RESTART_COUNT), and every state `status` would have shown it in (read every 0.2 s in the background, as
    a user polling `rpbench status` would). SLURM sends the warning of a near time limit at its periodic check
    (every 30 s); the first test asks for this fixture, so that wait runs beside it."""
    root = tmp_path_factory.mktemp("time-limit")
    name, _ = hanging(root, "first_try_hangs", "os.environ.get('SLURM_RESTART_COUNT', '0') == '0'")
    suite = tiny_suite(root, names=(name,), tokens="16")
    out = root / "run"
    run = rpbench.sweep(suite, out, launcher="slurm", launch={"partition": on_cluster.partition, "time_min": 1})
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and "done" not in seen:
            state = launched.task_states(out, queue_states(out))[0].state
            if not seen or seen[-1] != state:
                seen.append(state)
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield run, seen
    stop.set()
    watcher.join(timeout=30)


@pytest.mark.slow
def test_a_cpu_suite_runs_as_an_array_and_a_cancelled_task_is_submitted_again(on_cluster, at_time_limit, tmp_path):
    marker = tmp_path / "hang-while-this-exists"
    marker.write_text("")
    slow, entered = hanging(tmp_path, "slow", f"os.path.exists({str(marker)!r})")
    suite = tiny_suite(tmp_path, names=("dense", slow), tokens="16")  # device = "cpu" in the suite
    out = tmp_path / "run"
    result = invoke("sweep", str(suite), "--launcher", "slurm", "--partition", on_cluster.partition, "--tasks", "2",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "2 cases in 2 task(s) submitted (slurm, job" in result.output  # sbatch took it: no GPU asked for
    assert "no GPU: the cases run on the CPU" in result.output
    assert "gpus" not in next((out / "slurm").glob("*submission.sh")).read_text()
    slow_id = next(c.case_id for c in rpbench.suites.load_suite(suite).cases if c.attention == slow)
    index = next(i for i, ids in enumerate(launched.read_launch(out)["tasks"]) if slow_id in ids)
    wait_for_tasks(out, ready=lambda states: entered.exists() and states[1 - index].state == "done")
    status = invoke("status", str(out))
    assert status.exit_code == 0 and "1 running" in status.output and "1 done" in status.output
    job = launched.task_states(out)[index].job_id
    on_cluster.run("scancel", job)  # the task, mid-case
    wait_for_tasks(out, ready=lambda states: states[index].state == "stopped" and index not in queue_states(out))
    status = invoke("status", str(out))
    assert "stopped" in status.output and "CANCELLED" in status.output  # SLURM's own word, from the task's stderr
    assert f"rpbench sweep --resume {out}" in status.output
    marker.unlink()
    resumed = invoke("sweep", "--resume", str(out))
    assert resumed.exit_code == 0, resumed.output
    assert f"submitted again: task(s) {index}" in resumed.output
    wait_for_tasks(out, timeout_s=120)
    collected = invoke("collect", str(out))
    assert "2 of 2 cases" in collected.output
    frame = assert_whole(out, 2)  # every case exactly once, its passes and samples once
    assert (frame["status"] == "ok").all()
    assert [job["task"] for job in launched.read_launch(out)["jobs"]].count(index) == 2


@pytest.mark.slow
def test_a_task_at_its_time_limit_is_requeued_and_resumes(on_cluster, at_time_limit):
    run, seen = at_time_limit
    wait_for_tasks(run.run_dir, timeout_s=150)
    assert "requeued" in seen and seen.index("requeued") > seen.index("running"), seen  # warned, requeued, resumed
    job = launched.read_launch(run.run_dir)["jobs"][0]["job_id"]
    assert re.search(r"Restarts=[1-9]", on_cluster.run("scontrol", "show", "job", job))
    assert list(run.status()["state"]) == ["done"]
    frame = run.collect()
    assert len(frame) == 1 and (frame["status"] == "ok").all()  # measured by the attempt that resumed the task
    assert_whole(run.run_dir, 1)


@pytest.mark.parametrize("missing, words", [("root", "a test SLURM needs root"),
                                            ("slurmd", "slurmd not installed (apt-get install slurm-wlm munge")])
def test_where_no_slurm_can_start_the_fixture_says_why(tmp_path, monkeypatch, missing, words):
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000 if missing == "root" else 0)
    if missing != "root":
        which = slurm_cluster._which
        monkeypatch.setattr(slurm_cluster, "_which", lambda name: None if name == missing else which(name))
    with pytest.raises(slurm_cluster.Unavailable, match=re.escape(words)):
        slurm_cluster.start(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing started, nothing written
