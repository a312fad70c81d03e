"""How a climb turns a wall-clock budget into growth: the `budget` schedule's plan.

The paper's Algorithm 1 trains every candidate of a step for a full SGDR cycle and keeps one,
so 7/8 of a step's time goes to children that lose; at small budgets that loses to simply
training the start net. The `budget` schedule keeps what NASH is about (children by random
function-preserving morphisms, the best by validation accuracy, the parent always competing)
and spends the time like this:

- The lineage (start net, then each step's winner) goes through ONE cosine cycle over the whole
  run, as plain training would; a winner continues where its parent stopped, with one learning
  rate schedule straight through growth.
- A step is successive halving (Jamieson & Talwalkar 2016): the candidates train a short slice
  at the same point of the cycle (the same learning rate, so the comparison is fair), the
  better half continue, and so on until one is left. Children of a good parent compute its
  function at the start, so short slices already tell them apart.
- **Slices have a fixed length in optimizer steps** (at least `MIN_SLICE_ITERS`, at least one
  epoch), not a share of the budget: a step costs about the same whatever the budget, so more
  time buys more steps. (A slice as a share of the cycle made the number of steps a ratio of
  shares: one step at 3 minutes and one at 12 hours.)
- **Steps come early**, one phase of `MIN_PHASE_ITERS` optimizer steps apart (grow early and
  periodically, not after convergence; GradMax grew every 2,500 steps), and the last phase, the
  final network's, takes the rest of the budget, at least `MIN_FINAL_ITERS`: the largest network
  trains longest. (Spaced evenly, stop 27's one step at 32 minutes on Fashion-MNIST 20k came a
  third of the way in.) Growing earlier did not pay (stop 34): with steps 1,000 optimizer steps
  apart, the same 32-minute climbs stepped at 14% and 34-36% of the cycle instead of 22-27% and
  55-61%, but the winners were bigger (1.0-1.9M parameters against 0.7-0.9M), so the final
  network still trained 22-27 epochs, and scored 0.9190 +- 0.0055 against 0.9188 +- 0.0040
  (3 seeds): the same accuracy for twice the network. The final phase's floor,
  `MIN_FINAL_ITERS`, is kept as its own constant (equal to the spacing, it changes no plan). A
  phase of a grown network costs more per epoch: epoch seconds are taken to grow with MACs, and
  a step's winner is expected to cost `growth` times its parent: `GROWTH` before any step (the
  paper's 12-hour run grew ~1.7x a step), then the mean growth of the winners measured so far
  (the schedule's estimate). Since the first step's place does not depend on how many steps
  follow, a wrong guess of growth costs a plan little: the re-plan after each step corrects it.
- **The final network trains at least half of the cycle** (`FINAL_SHARE`), in the first plan
  and in every re-plan: a step is planned only in the cycle's first half, so a re-plan after a
  step cannot squeeze in a later one. Stop 33's 32-minute climbs on Fashion-MNIST 20k planned
  two steps; their second came at 55-61% of the cycle, and the final network trained 14-25
  epochs, while `retrain` gave the same architectures 41-66 epochs from scratch and scored
  0.0017 higher. Measured (stop 35, the same three seeds): one step at 21-25% of the cycle, a
  final network of 0.52M parameters trained 37-51 epochs, 0.9192 +- 0.0010 test accuracy
  against two steps' 0.9188 +- 0.0040 (0.80M): as accurate, smaller, a quarter of the spread,
  and +0.0036 +- 0.0015 over plain training, on every seed.
- The plan takes the **most steps** that fit, then the most candidates per step (at least
  `MIN_CANDIDATES`) such that the candidates that lose cost at most `search_share` of the time
  left. With P parallel slots a rung of c candidates costs ceil(c / P) slices of wall-clock, so
  a cluster buys more steps, not an early finish.
- Growth stops where the data say so: a network of more than `PARAMS_PER_IMAGE` parameters per
  training image is not planned (the paper's one-day CIFAR-10 net had ~440), nor one past the
  user's `--max-params` or `--max-macs` (no child over a limit is trained), and where the
  parent keeps winning (the schedule stops after `PARENT_WINS_TO_STOP` such steps in a row).
- The plan is remade at each step boundary from the time left and the costs measured so far,
  so a winner that grew more or less than expected changes the steps still to come.
- **No step where its growth cannot pay**: a budget too short for a phase of `MIN_PHASE_ITERS`
  before a step and one of `MIN_FINAL_ITERS` after it plans no step, and the start net trains
  for the whole of it, as plain training (the user's --steps still forces steps). A lone child
  against its parent for a slice, squeezed in before the end, cost a 2x child's slice (a tenth
  of an 8-minute budget on Fashion-MNIST 20k) and bought nothing: the two networks scored alike
  after it, the parent kept winning, and such climbs ended 0.4-0.8 points below plain training
  (the scaling study of stop 26, README).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MIN_SLICE_ITERS = 100  # optimizer steps of a step's first rung (rounded up to whole epochs)
MIN_PHASE_ITERS = 2000  # optimizer steps the lineage trains before a step (and between two)
MIN_FINAL_ITERS = 2000  # optimizer steps the final network trains after the last step, at least
FINAL_SHARE = 0.5  # of the lineage's learning-rate cycle, the final network's (after the last step), at least
GROWTH = 1.5  # expected cost of a step's winner over its parent (MACs; max_growth 2 caps a child)
MIN_CANDIDATES = 4  # a step with fewer is not worth its slices (or n_neigh, if smaller)
PARAMS_PER_IMAGE = 400  # growth the data can carry: parameters per training image
PARENT_WINS_TO_STOP = 2  # steps in a row that kept the parent: the network has grown enough
MAX_STEPS = 32


def no_step_note(search_share: float) -> str:
    """What a budget without a planned step means, for the climb's log and `nash climb --plan`."""
    return (f"no step fits this budget (a step needs {MIN_PHASE_ITERS} optimizer steps of training before it "
            f"and {MIN_FINAL_ITERS} after, the final network at least {FINAL_SHARE:.0%} of the learning-rate cycle, "
            f"losers within {search_share:.0%} of the time, room under the cost limits); the start net trains for "
            f"the whole budget (--steps 1 forces a step)")


def halving_rungs(n: int, first: int) -> list[tuple[int, int]]:
    """[(candidates, epochs)] of successive halving: n candidates train `first` epochs, the
    better half (rounded up) `first` more, then 2x, 4x ... until one is left."""
    rungs, c, i = [], n, 0
    while c > 1:
        rungs.append((c, first * (2 ** max(i - 1, 0))))
        c, i = math.ceil(c / 2), i + 1
    return rungs


def lost_slices(rungs: list[tuple[int, int]], parallel: int = 1) -> float:
    """Wall-clock epochs a step spends on candidates that lose, in epochs of one candidate:
    a rung of c candidates of e epochs takes ceil(c / parallel) * e, of which the winner's e
    count for the lineage."""
    return sum((math.ceil(c / max(parallel, 1)) - 1) * e for c, e in rungs)


@dataclass
class Plan:
    """The steps still to come, from progress `u` of the lineage's cycle."""
    steps: int  # steps still to come
    candidates: int  # per step (the parent is one)
    first_slice: int  # epochs of a step's first rung
    rungs: list  # [(candidates, epochs)] of each step
    positions: list  # where each step starts, in progress of the lineage's cycle
    phase_epochs: float  # lineage epochs before each step (from u, or from the step before)
    final_phase_epochs: float  # lineage epochs after the last step (the final network's)
    lineage_epochs: float  # epochs the lineage trains from u to the end of its cycle
    rate: float  # lineage epochs per unit of cycle progress
    lost_seconds: float  # predicted wall-clock of the candidates that lose
    predicted_final_macs: int
    predicted_final_params: int

    def to_json(self) -> dict:
        d = asdict(self)
        d["rungs"] = [list(r) for r in self.rungs]
        return d


def make_plan(time_left: float, epoch_seconds: float, macs: int, params: int, u: float, *, n_neigh: int,
              iters_per_epoch: int, train_images: int, search_share: float, growth: float = GROWTH,
              parallel: int = 1, max_steps: int | None = None, exact_steps: int | None = None,
              grow: bool = True, first_step: bool = True, max_params: int | None = None,
              max_macs: int | None = None) -> Plan:
    """The plan for `time_left` seconds of lineage and search from progress u of the cycle, for a
    best network of `macs`, `params`, training `epoch_seconds` per epoch. `max_steps`: at most
    this many steps (None: no limit but MAX_STEPS); `exact_steps`: this many (the user's --steps),
    with as many candidates as the search share pays for (at least 2); `grow` False: no more steps;
    `first_step`: no step has been made yet, so one step is allowed even over the data's cap (the
    user asked for a search), where its phases fit; once a step has been made, every step must
    fit under the cap.
    `max_params`, `max_macs`: the user's cost limits. No child is trained over them, so growth
    stops there as it does at the data's cap: steps that would need a network over a limit are
    not planned, and the predicted final cost is at most the limit."""
    time_left = max(time_left, 0.0)
    ipe = max(iters_per_epoch, 1)
    first = max(1, math.ceil(MIN_SLICE_ITERS / ipe))
    min_phase = max(1.0, MIN_PHASE_ITERS / ipe)
    min_final = max(1.0, MIN_FINAL_ITERS / ipe)
    cap = PARAMS_PER_IMAGE * max(train_images, 1)
    if max_params is not None:
        cap = min(cap, max_params)
    macs_cap = math.inf if max_macs is None else max_macs

    def over(k: int) -> bool:
        """The network after k steps of expected growth is more than the data or a limit carry."""
        return params * growth ** k > cap or macs * growth ** k > macs_cap
    limit = MAX_STEPS if max_steps is None else min(max_steps, MAX_STEPS)
    lo = min(MIN_CANDIDATES, n_neigh)

    def attempt(k: int, n: int, strict: bool, share: bool = True) -> Plan | None:
        cost = [growth ** j for j in range(k + 1)]  # epoch seconds of each phase, over today's
        rungs = halving_rungs(n, first) if k else []
        winner_epochs = sum(e for _, e in rungs)
        lost = lost_slices(rungs, parallel) * epoch_seconds * sum(cost[1:])  # a child costs its phase's
        if k and share and lost > search_share * time_left:
            return None
        even = (time_left - lost) / max(epoch_seconds * sum(cost), 1e-9)  # every phase alike
        # a phase holds the winner's rungs and then some training, at least MIN_PHASE_ITERS: a
        # step's growth needs time to pay off (strict False: steps the user asked for, whatever
        # their phases)
        need = max(min_phase, winner_epochs + first)
        if k and strict and even < need:
            return None
        # grow early: the phases before the steps are as short as a step allows, the last phase
        # (the final network's) takes the rest, so the largest network trains longest. Steps too
        # tight for that (the user's --steps) are spaced evenly.
        phase = min(need, even) if k else even
        last = (time_left - lost - epoch_seconds * phase * sum(cost[:k])) / max(epoch_seconds * cost[k], 1e-9)
        if k and strict and last < min_final:  # (last >= phase already: even >= need)
            return None  # the final network would train too little to pay for its growth
        lineage = phase * k + last
        if k and strict and last < FINAL_SHARE * lineage / max(1 - u, 1e-9):
            return None  # the final network trains at least FINAL_SHARE of the whole cycle, steps made included
        # no child is over a limit: the growth predicted stops at the tightest one
        grown = max(1.0, min(growth ** k, (max_params or math.inf) / max(params, 1), macs_cap / max(macs, 1)))
        return Plan(k, n if k else 0, first, rungs, [u + (1 - u) * phase * j / max(lineage, 1e-9) for j in range(1, k + 1)],
                    phase, last, lineage, lineage / max(1 - u, 1e-9), lost, int(macs * grown), int(params * grown))

    if exact_steps is not None:
        if exact_steps == 0:
            return attempt(0, 0, strict=True)
        return next((p for n in range(n_neigh, 1, -1) if (p := attempt(exact_steps, n, strict=False))),
                    None) or attempt(exact_steps, 2, strict=False, share=False)
    if grow:
        for k in range(limit, 0, -1):
            if (k > 1 or not first_step) and over(k):
                continue  # the data or a limit cannot carry the network (a run's first step is allowed past the cap)
            for n in range(n_neigh, lo - 1, -1):
                p = attempt(k, n, strict=True)
                if p:
                    return p
    return attempt(0, 0, strict=True)
