"""env.json of a run dir read back, and set aside when it is not a JSON object (the store writes it; a resume
keeps the first one, see `store.RunWriter.record_environment`)."""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any


def read_env(path: Path) -> tuple[dict[str, Any], str | None]:
    """(env.json as a dict, None), or ({}, what is wrong with it); a missing file is ({}, None)."""
    if not path.exists():
        return {}, None
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {}, f"{path.name} was unreadable ({type(err).__name__})"
    if not isinstance(env, dict):
        return {}, f"{path.name} held a JSON {type(env).__name__}, not an object"
    return env, None


def set_aside(path: Path) -> Path:
    kept = path.with_name(f"{path.stem}.invalid-{datetime.now().strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    os.replace(path, kept)
    return kept
