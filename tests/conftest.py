from __future__ import annotations

import os

import pytest


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
