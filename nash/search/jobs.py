"""The job types of a search step: what a candidate's training needs and what it gives back.

A step hands an executor (executors.py) a list of `TrainJob`s and one `shared` object (the data
and the `TrainSettings`, the same for every job of the step); an executor runs
`train_candidate(job, shared)` for each, in this process or elsewhere.

Results never depend on the executor: a job carries everything that decides its result (the
network with its weights, the slice of the schedule, the seed), and `train_candidate` is a pure
function of (job, shared).

A job for a fresh (untrained) candidate may also say how its network was made: `origin`, the
parent and the seed of `random_morphisms`. A remote executor then ships the parent once per step
and rebuilds each child where it trains, instead of shipping every child; `local` ignores it.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field

import torch

from morphisms import Move, Network, random_morphisms

from ..averaging import BN_IMAGES, SnapshotAverage
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
    origin: ChildOrigin | None = None  # how `net` was made from its parent, while it is untrained
    # the lineage trained in pieces carries SGD's momentum from one piece to the next: the state
    # to start from (None: fresh), and whether to hand the state back (outcome.extra["opt_state"])
    opt_state: dict | None = None
    carry_momentum: bool = False
    # scored on the mean of this many weight snapshots across the slice (averaging.py); 1: the
    # last iterate. The network handed back is the last iterate either way.
    average: int = 1


class RebuildMismatch(RuntimeError):
    """A rebuilt child is not the child made at dispatch (it drew other moves)."""


@dataclass
class ChildOrigin:
    """A fresh candidate as a pure function of its parent: `random_morphisms(parent, n,
    rng=seed, calibrate=calibrate, max_macs=max_macs, max_params=max_params, first=first)`
    (n = 0: a copy of the parent). `moves` are the morphisms that call drew where the candidate was made
    (before any executor saw it): a rebuild must draw the same."""
    parent: Network
    n: int
    seed: int
    calibrate: torch.Tensor | None
    moves: list
    max_macs: int | None = None
    max_params: int | None = None
    first: Move | None = None

    def build(self) -> Network:
        if self.n == 0:
            return copy.deepcopy(self.parent)
        child, applied = random_morphisms(self.parent, self.n, rng=self.seed, calibrate=self.calibrate,
                                          max_macs=self.max_macs, max_params=self.max_params, first=self.first)
        if list(applied) != list(self.moves):
            raise RebuildMismatch(f"rebuilding a child drew {[str(m) for m in applied]}, not "
                               f"{[str(m) for m in self.moves]}")
        return child


def net_fingerprint(net: Network) -> str:
    """A digest of a network's graph and every tensor of its state, bit for bit."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(net.to_json()).encode())
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
    """Train one candidate for its slice and score it on the validation split (with
    `job.average` > 1: the mean of that many snapshots of its weights across the slice).
    on_epoch(epoch, result so far): progress, where the caller is in this process."""
    data, s = shared
    if job.deadline is not None and not job.required and time.time() > job.deadline:
        return TrainOutcome(job.key, job.net, failed="skipped: the budget ran out before it started")
    snapshots = SnapshotAverage(job.net, job.average)
    res = sgdr_train(job.net, data.train_x, data.train_y, job.epochs, s.lr_start, s.lr_end,
                     batch_size=s.batch_size, aug=s.augment, mixup_alpha=s.mixup, seed=job.seed,
                     cycle=job.cycle, deadline=None if job.required else job.deadline, on_epoch=on_epoch,
                     opt_state=job.opt_state, on_step=snapshots if job.average > 1 else None)
    out = TrainOutcome(job.key, job.net, res.epochs, res.seconds, res.train_loss, res.train_acc, failed=res.failed)
    if job.carry_momentum:
        out.extra["opt_state"] = res.opt_state
    if res.failed is None and res.epochs < job.epochs:
        out.failed = f"cut off by the budget after {res.epochs} of {job.epochs} epochs"
    if out.failed is None:
        scored = snapshots.network(data.train_x[:BN_IMAGES])
        out.val_acc, out.val_loss = evaluate(scored, data.val_x, data.val_y)
        if scored is not job.net:
            out.extra["averaged"] = snapshots.count
    return out
