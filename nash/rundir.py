"""The run directory: config, JSONL events, atomic checkpoints, results.

A run is resumable because every step ends with one atomic checkpoint (temp file, fsync,
rename) that also records how many event lines belong to finished work; on resume the events
of a step that was in flight when the run died are cut off, so the log never holds a step
twice.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from .errors import NashError

CONFIG = "config.json"
EVENTS = "events.jsonl"
CHECKPOINT = "checkpoint.pt"


class RunDirError(NashError, ValueError):
    """A run directory that cannot be used as asked (one line, for the CLI)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def default_run_path(kind: str = "run") -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    """A run's folder. Its clock (`start_clock`) counts the wall-clock the run has spent, across
    resumes: every checkpoint records it, so a resumed run goes on from the time its last
    checkpoint had spent, and every event carries it as `elapsed`."""

    def __init__(self, path):
        self.path = Path(path)
        self._started: float | None = None
        self.spent_before = 0.0

    # -------------------------------------------------------------- the run's clock

    def start_clock(self, started: float | None = None) -> float:
        """Start counting at `started` (default now), on top of what the last checkpoint had
        spent; returns that earlier time (0 for a new run)."""
        self._started = time.time() if started is None else started
        self.spent_before = self._checkpoint_elapsed()
        return self.spent_before

    def elapsed(self) -> float:
        """Seconds this run has spent: before the last resume, plus since the clock started."""
        if self._started is None:
            return 0.0
        return self.spent_before + time.time() - self._started

    def _checkpoint_elapsed(self) -> float:
        f = self.path / CHECKPOINT
        if not f.exists():
            return 0.0
        try:  # mmap: reads the small envelope, not the tensors
            return float(torch.load(f, map_location="cpu", weights_only=True, mmap=True).get("elapsed", 0.0))
        except Exception as e:
            raise RunDirError(f"{f}: damaged checkpoint ({type(e).__name__}); "
                              f"delete it to restart the run from the beginning") from None

    # -------------------------------------------------------------- starting and resuming

    @classmethod
    def create(cls, path, config: dict) -> "RunDir":
        """A fresh run at `path`. Refuses a folder that already holds a run (resume it, or use
        another --out) or other files, so nothing there is overwritten."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"{run.path} exists and is not a directory")
        if (run.path / CONFIG).exists():
            old = run.read_json(CONFIG)
            same = {k: v for k, v in old.items() if k not in ("created", "version")} == \
                {k: v for k, v in config.items() if k not in ("created", "version")}
            hint = "resume it with --resume" if same else "it holds a different run; choose another --out"
            raise RunDirError(f"{run.path} already holds a run ({hint})")
        if run.path.is_dir() and any(run.path.iterdir()):
            raise RunDirError(f"{run.path} is not empty; choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.path / CONFIG, config)
        return run

    @classmethod
    def open(cls, path) -> "RunDir":
        run = cls(path)
        if not (run.path / CONFIG).is_file():
            raise RunDirError(f"{run.path / CONFIG}: not found; is {run.path} a nash run directory?")
        run.config  # parse now, so a damaged config fails here
        return run

    @property
    def config(self) -> dict:
        return self.read_json(CONFIG)

    def read_json(self, name: str):
        f = self.path / name
        try:
            return json.loads(f.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{f}: not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(f"{f}: damaged JSON ({e})") from None

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self.path / name, obj)

    # -------------------------------------------------------------- events

    def event(self, kind: str, **fields) -> None:
        """Append one event line, flushed to disk before returning."""
        if self._started is not None:
            fields = {"elapsed": round(self.elapsed(), 3), **fields}
        line = json.dumps({"event": kind, "time": round(time.time(), 3), **fields}, sort_keys=True)
        with open(self.path / EVENTS, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def events(self, kind: str | None = None) -> list[dict]:
        f = self.path / EVENTS
        if not f.exists():
            return []
        out = []
        for i, line in enumerate(f.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                raise RunDirError(f"{f}: line {i + 1} is not JSON") from None
            if kind is None or e.get("event") == kind:
                out.append(e)
        return out

    def _event_count(self) -> int:
        f = self.path / EVENTS
        return len(f.read_text().splitlines()) if f.exists() else 0

    def _truncate_events(self, count: int) -> None:
        f = self.path / EVENTS
        if f.exists():
            lines = f.read_text().splitlines(keepends=True)[:count]
            atomic_write_bytes(f, "".join(lines).encode())

    # -------------------------------------------------------------- checkpoints

    def save_checkpoint(self, state: dict, name: str = CHECKPOINT) -> None:
        """Atomically store `state` (tensors, numbers, strings, lists, dicts) with the event count."""
        import io
        buf = io.BytesIO()
        torch.save({"state": state, "events": self._event_count(), "elapsed": self.elapsed()}, buf)
        atomic_write_bytes(self.path / name, buf.getvalue())

    def load_checkpoint(self, name: str = CHECKPOINT, map_location="cpu") -> dict | None:
        """The last checkpoint's state (None if there is none), with the event log cut back to it.

        Loaded with weights_only=True: a checkpoint cannot run code."""
        f = self.path / name
        if not f.exists():
            return None
        try:
            data = torch.load(f, map_location=map_location, weights_only=True)
            state, count = data["state"], int(data["events"])
        except Exception as e:  # zip, pickle and key errors alike: the file is damaged
            raise RunDirError(f"{f}: damaged checkpoint ({type(e).__name__}); "
                              f"delete it to restart the run from the beginning") from None
        self._truncate_events(count)
        return state
