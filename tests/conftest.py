from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pytest

# One torch thread per test process (the processes tests start inherit it through OMP_NUM_THREADS): tests run side by
# side (xdist), and threads of several processes spinning on the same cores cost many times the work they do. A test
# that is about threads sets its own count (a suite's `threads`).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from old_runs import OLD_RUN, measured_on


@pytest.fixture(autouse=True, scope="session")
def quiet_machine():
    """Other processes read as idle (interference.ASSUME_QUIET_ENV, inherited by every process a test starts), so
    what a test checks of rounds, retries and pooling holds on a busy machine: tests run side by side (xdist), and CI
    runners are shared. Tests of the load reading itself are marked `real_load` and see the machine as it is."""
    from rpbench.machine.interference import ASSUME_QUIET_ENV

    previous = os.environ.get(ASSUME_QUIET_ENV)
    os.environ[ASSUME_QUIET_ENV] = "1"
    yield
    if previous is None:
        os.environ.pop(ASSUME_QUIET_ENV, None)
    else:
        os.environ[ASSUME_QUIET_ENV] = previous


@pytest.fixture(autouse=True)
def real_load(request):
    """For a test marked `real_load`: the machine's real load, other processes included. (Not through monkeypatch:
    an autouse fixture here that used it would undo every test's patches after the fixtures of tests/<room>/
    conftest.py are torn down, which rely on the opposite order.)"""
    if request.node.get_closest_marker("real_load") is None:
        yield
        return
    from rpbench.machine.interference import ASSUME_QUIET_ENV

    previous = os.environ.pop(ASSUME_QUIET_ENV, None)
    yield
    if previous is not None:
        os.environ[ASSUME_QUIET_ENV] = previous


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Doctor's ceilings cache goes to a temporary dir, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("rpbench-cache")
    previous = os.environ.get("RPBENCH_CACHE")
    os.environ["RPBENCH_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("RPBENCH_CACHE", None)
    else:
        os.environ["RPBENCH_CACHE"] = previous


@pytest.fixture
def as_measured_on(monkeypatch):
    """Make this process read the CPU model `name` (through the one function that reads it), so a resume of a run
    dir measured on another machine behaves as on that machine: no test depends on the CPU it runs on."""
    from rpbench.machine import environment

    def fake(name: str) -> None:
        monkeypatch.setattr(environment, "cpu_model", lambda: name)

    return fake


@pytest.fixture
def old_run(tmp_path, as_measured_on) -> Path:
    """A copy of OLD_RUN, resumable here: this process reads the CPU model its rows were measured on."""
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    as_measured_on(measured_on(run))
    return run


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_finish(session):
    """Freeze what is alive once the tests are collected (modules, torch, the collected tests): the runner's
    gc.collect() between cases then walks only what a test made, not the whole test process (0.2 s a call before)."""
    import torch.utils.flop_counter  # noqa: F401  (imports torch._dynamo, which most test processes need anyway)

    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM on this machine (tests/slurm_cluster.py), one for the whole session; the test skips
    with the reason where none can start (not root, slurm-wlm or munge not installed)."""
    import slurm_cluster

    try:
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.Unavailable as err:
        pytest.skip(f"no test SLURM here: {err}")
    yield cluster
    cluster.stop()
