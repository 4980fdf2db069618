"""One writer per run dir: an advisory `flock` on RUN_DIR/.rpbench.lock, held while a sweep writes.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so a killed sweep never leaves
the dir stuck. The file holds who took the lock (pid, host, command, time) so a refused writer can name the holder;
it is emptied again on release.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import ResultsError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer is then the user's to ensure
    fcntl = None

LOCK = ".rpbench.lock"


class RunLock:
    """Held from `acquire` to `release`; a second process gets ResultsError naming the holder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._handle = None

    def acquire(self, command: str) -> None:
        try:
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as err:
            raise ResultsError(f"{self.path.parent}: cannot write there ({err.strerror or err})") from None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = _describe(handle.read())
                handle.close()
                raise ResultsError(f"{self.path.parent} is being written by another rpbench ({holder}); wait for it "
                                   f"to finish, or write to another --out") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
        finally:
            self._handle.close()  # closing drops the flock
            self._handle = None


def holder(run_dir: Path) -> str | None:
    """Who writes `run_dir` now ('pid … on … since …: command'), or None when no process holds its lock. Takes no
    lock and changes nothing."""
    path = Path(run_dir) / LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _describe(handle.read())
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
