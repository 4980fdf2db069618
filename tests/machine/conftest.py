from __future__ import annotations

import os

import pytest

from rpbench.machine import telemetry


@pytest.fixture(autouse=True)
def fresh_nvml_state():
    """Every test starts and ends with NVML's cached state and index mappings forgotten (tests install fake
    bindings). Not through monkeypatch: this fixture must be torn down after a test's own patches are undone."""
    visible = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    telemetry.reset()
    yield
    telemetry.reset()
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
