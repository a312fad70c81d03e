"""Progress for long jobs: rich bars on a terminal, plain log lines otherwise (or with --quiet)."""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter:
    """Tasks (bars) and log lines. `quiet` or a non-terminal stderr gives log lines only."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True)
        self.bars = not quiet and self.console.is_terminal
        self._progress = None
        self._t0 = time.time()

    def __enter__(self):
        if self.bars:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      console=self.console, transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def task(self, description: str, total: int):
        return self._progress.add_task(description, total=total, info="") if self._progress else None

    def update(self, task, advance: float = 0, completed=None, total=None, info: str | None = None):
        if self._progress is not None and task is not None:
            kw = {"advance": advance}
            if completed is not None:
                kw["completed"] = completed
            if total is not None:
                kw["total"] = total
            if info is not None:
                kw["info"] = info
            self._progress.update(task, **kw)

    def remove(self, task):
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)

    def log(self, message: str):
        stamp = f"[{time.time() - self._t0:7.1f}s]"
        if self._progress is not None:
            self._progress.console.print(f"{stamp} {message}", highlight=False, markup=False)
        else:
            print(f"{stamp} {message}", file=sys.stderr, flush=True)
