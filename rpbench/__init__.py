"""rpbench: benchmark and profile efficient attention for vision transformers.

The data flow, one room (sub-package) per stage, imports running one way:

    suites (suite file -> cases) -> measure (workload, timing, runner, sweep) -> results (the run dir)
        -> analysis (pandas/numpy) -> views (terminal, HTML, exports) ; cli drives it all

`core` holds the data every room shares (Case, Timing, Measurement, the row schema, errors); `machine` what the
machine is and can do; `backbones` whole models into which any `attentions` mechanism plugs.
"""
from __future__ import annotations

from .core import __version__


def __getattr__(name: str):
    """`rpbench.bench` and `rpbench.sweep` (the Python API, `rpbench.api`), imported on first use so that
    `import rpbench` stays light."""
    if name in ("bench", "sweep"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'rpbench' has no attribute {name!r}")


def load(path):
    """Load a results dir (or its results.csv) as a pandas DataFrame with proper dtypes."""
    from .results.store import load as _load

    return _load(path)


__all__ = ["__version__", "bench", "load", "sweep"]
