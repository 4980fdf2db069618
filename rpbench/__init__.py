"""rpbench: benchmark and profile efficient attention for vision transformers."""
from __future__ import annotations

__version__ = "0.1.0"


def load(path):
    """Load a results dir (or its results.csv) as a pandas DataFrame with proper dtypes."""
    from .store import load as _load

    return _load(path)


__all__ = ["__version__", "load"]
