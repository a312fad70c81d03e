"""One clock for every searcher: a `Budget`, made once from the run's deadline.

    budget = Budget.for_run(600, started, spent_before)   # Budget() without a budget
    budget.left()                          # seconds until the deadline (inf without one)
    budget.epochs_that_fit(12.5)           # whole epochs of 12.5 s that end before it
    search = budget.share(0.5)             # the first half of the run's budget, a Budget itself

A budget is a stretch of wall-clock from `origin` (the time.time() at which the run's clock
reads zero: for a resumed run, moved back by the time its earlier sessions spent) to
`deadline`. A share is a part of that stretch counted from its origin, so it is the same
sub-deadline however often the run is resumed, and the start-up before a share's work is
charged to that share. Low-level loops (`sgdr_train`, a `TrainJob`, a DARTS epoch) take the
plain time.time() of `budget.deadline` and stop after the step or epoch in flight.

Every reserve and margin of the budget arithmetic is a named constant here and nowhere else
(parsing a budget like "12h" is `nash.budget`).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

# kept off a run's deadline for what runs outside the searchers' clocks (the last lines of the
# command after results.json): a share of the budget, at most so many seconds. (It was 2% and
# up to 10 s: a 10-minute run then ended at 96% of its budget, the rest idle.)
RUN_MARGIN_SHARE, RUN_MARGIN_MAX = 0.005, 3.0
# kept after the last epoch of a training: evaluation on the validation and test splits, the
# checkpoint, best/ and the report; seconds plus a share of an epoch (evaluating is a pass over
# the data, so it grows with the network's epoch time). Measured on digits: scoring 0.04 s,
# best/ + plots + results.json 1.5 s in a fresh process (matplotlib's import), 0.7 s after.
REPORT_SECONDS, REPORT_EPOCHS = 1.5, 0.2
# how much longer than measured an epoch may take next time: a network timed before, and one
# whose time is predicted from other networks' (a line over MACs)
EPOCH_MARGIN = 1.05
PREDICTION_MARGIN = 1.1
# the paper schedule's final training, reserved when fitting a step: planned now, run later
PLANNED_MARGIN = 1.15
# the paper schedule: pretraining takes at most this share of the budget
PAPER_PRETRAIN_SHARE = 0.25
# the budget schedule's safety net: one step takes at most this share of the time left
STEP_SHARE = 0.5
# the first epoch of a process carries one-off costs (allocations, kernel selection); when it
# took less than this many seconds, a second one is timed (`timed_epochs`)
QUICK_EPOCH = 10.0


@dataclass(frozen=True)
class Budget:
    """The time.time() `deadline` by which work must end (None: no budget), counted from
    `origin` (where the run's clock reads zero; None without a budget)."""
    deadline: float | None = None
    origin: float | None = None

    @classmethod
    def for_run(cls, seconds: float | None, started: float, spent_before: float = 0.0) -> "Budget":
        """A run's budget of `seconds` (None: no budget), counting from `started` (when the
        user's command began) plus `spent_before` (earlier sessions of a resumed run); the
        run margin is kept off its end."""
        if seconds is None:
            return cls()
        origin = started - spent_before
        return cls(origin + seconds - min(RUN_MARGIN_SHARE * seconds, RUN_MARGIN_MAX), origin)

    @classmethod
    def from_now(cls, seconds: float) -> "Budget":
        """`seconds` from now, no run margin: a budget for one piece of work (tests, a tool)."""
        now = time.time()
        return cls(now + seconds, now)

    @property
    def limited(self) -> bool:
        return self.deadline is not None

    def left(self) -> float:
        """Seconds until the deadline (negative past it; inf without a budget)."""
        return math.inf if self.deadline is None else self.deadline - time.time()

    def share(self, f: float) -> "Budget":
        """The first `f` of this budget's stretch (from its origin) as a Budget: a sub-deadline
        that a resumed run recomputes to the same time. Without a budget, no budget."""
        if self.deadline is None:
            return self
        return Budget(self.origin + f * (self.deadline - self.origin), self.origin)

    @staticmethod
    def reserve(seconds_per_epoch: float) -> float:
        """Seconds kept after a training's last epoch (evaluation, checkpoint, report)."""
        return REPORT_SECONDS + REPORT_EPOCHS * seconds_per_epoch

    def epochs_that_fit(self, seconds_per_epoch: float, margin: float = EPOCH_MARGIN, also: float = 0.0,
                        whole: bool = True) -> float:
        """Epochs of `seconds_per_epoch` (as measured; each may take `margin` times that) that end
        before the deadline with the report's reserve and `also` seconds of other work still to
        come kept: a whole number when `whole`, else the fraction too; never below 0, inf without
        a budget."""
        if self.deadline is None:
            return math.inf
        room = self.left() - self.reserve(seconds_per_epoch) - also
        epochs = room / max(seconds_per_epoch * margin, 1e-9)
        return max(math.floor(epochs) if whole else epochs, 0)


def predict_epoch(timings: list, macs: int) -> float:
    """Seconds a training epoch of a network of `macs` may take, from (MACs, seconds) measured so
    far: the same network's median, else a line over MACs (never below the quickest), each with
    its margin."""
    same = [s for m, s in timings if m == macs]
    if same:
        return statistics.median(same[-3:]) * EPOCH_MARGIN
    if len({m for m, _ in timings}) < 2:
        m0, s0 = timings[-1]
        return s0 * max(1.0, macs / max(m0, 1)) * PREDICTION_MARGIN
    n = len(timings)
    mx = sum(m for m, _ in timings) / n
    my = sum(s for _, s in timings) / n
    slope = sum((m - mx) * (s - my) for m, s in timings) / max(sum((m - mx) ** 2 for m, _ in timings), 1e-12)
    return max(my + max(slope, 0.0) * (macs - mx), min(s for _, s in timings)) * PREDICTION_MARGIN


def timed_epochs(train_one_epoch, quick: float = QUICK_EPOCH) -> tuple[float, list]:
    """Seconds per epoch, for planning a budget, and the results of the epochs trained for it.

    The first epoch of a process carries one-off costs (allocations, kernel selection) that can
    make it several times slower than the next on small data; when it was quick (< `quick`
    seconds) a second one is trained and its time is the answer."""
    results = [train_one_epoch()]
    if results[0].seconds < quick:
        results.append(train_one_epoch())
    return results[-1].seconds, results
