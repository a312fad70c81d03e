"""Executors: who trains a step's candidates (the job types are jobs.py's).

An executor's `map(jobs, shared, on_done)` runs `train_candidate(job, shared)` for each job,
calls `on_done(outcome)` as each one finishes (so a progress bar advances whichever worker ran
it) and returns the outcomes in job order; `run_many(fn, calls, on_done)` does the same for
whole functions (the runs of `nash compare`). `local` runs them in this process, one after
another; `ray` (nash.search.ray_executor) runs one Ray task each. `make_executor(name,
**options)` builds one by name, importing Ray only for `ray`.
"""
from __future__ import annotations

from typing import Protocol

from ..errors import OptionError
from .jobs import TrainJob, TrainOutcome, train_candidate


class Executor(Protocol):
    """What a searcher may ask of any executor."""
    name: str
    parallelism: int  # how many jobs run at once: a searcher sizes its batches from it
    # whether calls run in this process, in its working directory (a remote worker's differs,
    # so a path handed to it must be absolute)
    in_process: bool

    def map(self, jobs: list[TrainJob], shared, on_done=None) -> list[TrainOutcome]: ...

    def run_many(self, fn, calls: list[tuple], on_done=None) -> list: ...

    def close(self) -> None: ...


class LocalExecutor:
    """In this process, one job after another (the default)."""
    name = "local"
    parallelism = 1
    in_process = True

    def map(self, jobs: list[TrainJob], shared, on_done=None) -> list[TrainOutcome]:
        outcomes = []
        for job in jobs:
            out = train_candidate(job, shared)
            outcomes.append(out)
            if on_done is not None:
                on_done(out)
        return outcomes

    def run_many(self, fn, calls: list[tuple], on_done=None) -> list:
        """fn(*args, device=None) for each args of `calls`, one after another; the results in
        order. on_done(index, result) as each finishes. `device`: the device the executor gave
        the call (None: the call's own choice)."""
        results = []
        for i, args in enumerate(calls):
            results.append(fn(*args, device=None))
            if on_done is not None:
                on_done(i, results[-1])
        return results

    def close(self) -> None:
        pass


EXECUTORS = ("local", "ray")
RAY_MISSING = "the ray executor needs Ray: pip install 'nash[ray]'"


def make_executor(name: str = "local", **options) -> Executor:
    """An executor by name; `options` (address, gpus_per_candidate, cpus_per_candidate, temp_dir)
    are the ray executor's, and None means its default; `device`, the run's, is for every
    executor (local: the run puts its work there itself). Ray is imported only for `ray`."""
    device = options.pop("device", None)
    options = {k: v for k, v in options.items() if v is not None}
    if name == "local":
        if options:
            raise OptionError(f"{', '.join('--' + k.replace('_', '-') for k in options)}: only for --executor ray")
        return LocalExecutor()
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise OptionError(RAY_MISSING) from None
        from .ray_executor import RayExecutor
        return RayExecutor(device=device, **options)
    raise OptionError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
