"""Executors: who trains a step's candidates.

A step hands an executor a list of `TrainJob`s and one `shared` object (the data and the
training settings, the same for every job of the step). The executor runs
`train_candidate(job, shared)` for each job, calls `on_done(outcome)` as each one finishes (so
a progress bar advances whichever worker ran it) and returns the outcomes in job order.

Results never depend on the executor: a job carries everything that decides its result (the
network with its weights, the slice of the schedule, the seed), and `train_candidate` is a pure
function of (job, shared). `local` runs the jobs in this process, one after another; `ray`
(nash.search.ray_executor) runs one Ray task per job.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from morphisms import Network

from ..data import Augment, DataSplits
from ..train import evaluate, sgdr_train


@dataclass
class TrainSettings:
    """How every candidate of a step trains (one SGDR slice), apart from its own slice and seed."""
    lr_start: float
    lr_end: float
    batch_size: int
    augment: Augment | None
    mixup: float = 0.0


@dataclass
class TrainJob:
    key: int  # the candidate's index in its step
    net: Network  # trained in place by `local`; a copy travels to a remote worker
    epochs: int
    cycle: tuple[float, float]  # the part of one cosine cycle these epochs cover
    seed: int
    deadline: float | None = None  # a job that would start after it is skipped, not run
    required: bool = False  # runs even past the deadline (the parent: a step always has it)


@dataclass
class TrainOutcome:
    key: int
    net: Network | None
    epochs: int = 0
    seconds: float = 0.0
    train_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    val_loss: float | None = None
    failed: str | None = None  # why it has no score: non-finite loss, skipped, worker lost
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed is None and self.val_acc is not None


def train_candidate(job: TrainJob, shared: tuple[DataSplits, TrainSettings], on_epoch=None) -> TrainOutcome:
    """Train one candidate for its slice and score it on the validation split.
    on_epoch(epoch, result so far): progress, where the caller is in this process."""
    data, s = shared
    if job.deadline is not None and not job.required and time.time() > job.deadline:
        return TrainOutcome(job.key, job.net, failed="skipped: the budget ran out before it started")
    res = sgdr_train(job.net, data.train_x, data.train_y, job.epochs, s.lr_start, s.lr_end,
                     batch_size=s.batch_size, aug=s.augment, mixup_alpha=s.mixup, seed=job.seed,
                     cycle=job.cycle, deadline=None if job.required else job.deadline, on_epoch=on_epoch)
    out = TrainOutcome(job.key, job.net, res.epochs, res.seconds, res.train_loss, res.train_acc, failed=res.failed)
    if res.failed is None and res.epochs < job.epochs:
        out.failed = f"cut off by the budget after {res.epochs} of {job.epochs} epochs"
    if out.failed is None:
        out.val_acc, out.val_loss = evaluate(job.net, data.val_x, data.val_y)
    return out


class LocalExecutor:
    """In this process, one job after another (the default)."""
    name = "local"

    def map(self, jobs: list[TrainJob], shared, on_done=None) -> list[TrainOutcome]:
        outcomes = []
        for job in jobs:
            out = train_candidate(job, shared)
            outcomes.append(out)
            if on_done is not None:
                on_done(out)
        return outcomes

    def close(self) -> None:
        pass
