from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from old_runs import OLD_RUN, measured_on


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
