"""How a climb spends a wall-clock budget: the `budget` schedule's plan.

The paper's Algorithm 1 trains every candidate of a step for a full SGDR cycle and keeps one,
so 7/8 of a step's time goes to children that lose; at small budgets that loses to simply
training the start net. The `budget` schedule keeps what NASH is about (children by random
function-preserving morphisms, the best by validation accuracy, the parent always competing)
and changes how the time is spent:

- The lineage (start net, then each step's winner) goes through ONE cosine cycle over the whole
  run, as plain training would; a network's training is a slice (u0, u1) of that cycle, and a
  winner continues where its parent stopped (the parent's training counts for the lineage).
- A step is successive halving (Jamieson & Talwalkar 2016): all n candidates train a short
  slice at the same point of the cycle (the same learning rate, so the comparison is fair),
  the better half continue for another slice, and so on until one is left. Children of a good
  parent are function-identical to it at the start, so short slices already tell them apart.
- The search gets a share of the budget (`search_share`, the training of candidates that lose);
  the rest is the lineage's cycle. Steps sit between 30% and 80% of the cycle: the start net
  first learns enough for morphisms to build on, and the last winner still gets a fifth of the
  cycle to train its new capacity.
- The epochs are sized from the time left at each step boundary (seconds per epoch predicted
  from the networks' MACs), so the cycle ends at the deadline with the learning rate annealed.
"""
from __future__ import annotations

import math

FIRST_STEP_AT, LAST_STEP_ENDS = 0.3, 0.8  # where steps may sit, in progress of the lineage's cycle
SLICE_SHARE = 0.025  # a candidate's first slice, as a share of the lineage's cycle
GROWTH = 1.25  # assumed cost growth of a step's winner, for planning the steps still to come
MAX_PLANNED_STEPS = 8


def halving_rungs(n: int, first: int) -> list[tuple[int, int]]:
    """[(candidates, epochs)] of successive halving: n candidates train `first` epochs, the
    better half (rounded up) `first` more, then 2x, 4x ... until one is left."""
    rungs, c, i = [], n, 0
    while c > 1:
        rungs.append((c, first * (2 ** max(i - 1, 0))))
        c, i = math.ceil(c / 2), i + 1
    return rungs


def halving_overhead(n: int, first: int = 1) -> float:
    """Epochs trained by candidates that lose, per epoch the winner gains in a step."""
    rungs = halving_rungs(n, first)
    lost = sum((c - 1) * e for c, e in rungs)
    return lost / max(sum(e for _, e in rungs), 1)


def planned_steps(n: int, search_share: float) -> int:
    """How many steps the search share pays for: each step's losers cost
    overhead(n) * (its winner's epochs); its winner's epochs are SLICE_SHARE * 2^(rungs-1)
    of the cycle."""
    rungs = halving_rungs(n, 1)
    winner_share = SLICE_SHARE * sum(e for _, e in rungs)
    per_step = halving_overhead(n) * winner_share
    k = int(search_share / (1 - search_share) / max(per_step, 1e-9))
    return max(1, min(k, MAX_PLANNED_STEPS))


def step_positions(k: int) -> list[float]:
    """Where the k steps start, in progress of the lineage's cycle."""
    if k == 1:
        return [FIRST_STEP_AT]
    span = LAST_STEP_ENDS - FIRST_STEP_AT - SLICE_SHARE * 4
    return [FIRST_STEP_AT + span * i / (k - 1) for i in range(k)]


def lineage_epochs(time_left: float, epoch_seconds: float, u: float, steps_left: int, n: int) -> float:
    """Epochs the lineage can still train, at `epoch_seconds` per epoch, in `time_left` seconds,
    when `steps_left` steps of n candidates must still be paid for (their losers), from
    progress u of the cycle."""
    rungs = halving_rungs(n, 1)
    winner_share = SLICE_SHARE * sum(e for _, e in rungs)
    lost_per_epoch_left = steps_left * halving_overhead(n) * winner_share / max(1 - u, 1e-9) * GROWTH
    return max(time_left, 0.0) / max(epoch_seconds * (1 + lost_per_epoch_left), 1e-9)
