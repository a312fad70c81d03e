"""How a climb spends its time: the schedules, plug-ins of `HillClimber`'s loop.

A schedule owns the parts of a climb that differ between the two ways of spending time:
pretraining the start net, what happens before a step (the budget schedule trains the lineage
up to the step's place in its cycle), fitting a step's candidates and rungs to the budget, where
a rung sits in the learning-rate cycle, and the final training. `HillClimber` keeps the loop:
candidates, training them through the executor, keeping the best, checkpoints and events.

- `paper`: exactly Algorithm 1 with the paper's defaults: pretraining, then every candidate
  one full SGDR cycle of epoch_neigh epochs, the winner epoch_final epochs of a new cycle.
- `budget` (the default): one cosine cycle for the lineage over the whole run, successive
  halving inside each step, steps planned from the budget and re-planned at each step
  boundary (plan.py says why).
"""
from __future__ import annotations

import copy
import math
import random
import statistics

from morphisms import capacity_moves

from ..errors import NashError
from . import plan
from .budget import PAPER_PRETRAIN_SHARE, PLANNED_MARGIN, STEP_SHARE, timed_epochs
from .kit import child_seed, net_state

LINEAGE_PIECE = 0.1  # of the cycle: on a budget the lineage re-plans its epochs after each piece


class PaperSchedule:
    """Algorithm 1: a full SGDR cycle per candidate; on a budget, steps while they fit."""
    name = "paper"

    def __init__(self, climber):
        self.c = climber

    def max_macs(self, parent) -> int | None:
        return self.c.limits.max_macs  # the paper's children grow freely, up to the user's limit

    def first_moves(self, parent, step: int, max_macs, max_params):
        return None  # Algorithm 1's children: n_NM random morphisms each

    def score_snapshots(self) -> int:
        return 1  # Algorithm 1: a candidate's full cycle ends at lr_end, its last iterate is its score

    def pretrain(self, net, state: dict) -> int:
        c, cfg = self.c, self.c.cfg
        # on a budget, pretraining may take at most its share of it
        pre_deadline = c.budget.share(PAPER_PRETRAIN_SHARE).deadline
        out = c.train(net, cfg.pretrain_epochs, cfg.seed, deadline=pre_deadline, label="pretrain") \
            if cfg.pretrain_epochs else None
        if out is None or not out.epochs:
            out = c.train(copy.deepcopy(net), 1, 0)  # only to time an epoch
        c.observe(state, net, out)
        return out.epochs if cfg.pretrain_epochs else 0

    def max_steps(self, state: dict) -> int:
        if self.c.cfg.steps is not None:
            return self.c.cfg.steps
        return 10**9 if self.c.budget.limited else 5

    def before_step(self, best, state: dict, step: int):
        return best, True

    def fit_step(self, candidates, step: int, state: dict):
        """All candidates when they fit before the final training's reserve, else the parent and
        the children that fit, else None (stepping is over)."""
        c, cfg = self.c, self.c.cfg
        rungs = lambda k: [(k, cfg.epoch_neigh)]  # noqa: E731
        if not c.budget.limited:
            return candidates, rungs(len(candidates)), None
        costs = [cfg.epoch_neigh * c.predict_epoch(x.net, state) for x in candidates]
        left = c.budget.left() - self._final_reserve(candidates[0].net, state)
        fit = next((k for k in range(len(costs), 0, -1) if sum(costs[:k]) <= left), 0)
        if fit < 2 and step > 1:
            c.rep.log(f"budget: stopping before step {step} (it would take ~{sum(costs):.0f}s, "
                      f"{max(left, 0):.0f}s left before the final training)")
            return None
        fit = max(fit, 2)  # a climb makes at least one step: the parent and one child
        if fit < len(candidates):
            c.rep.log(f"budget: step {step} with {fit} of {len(candidates)} candidates")
        return candidates[:fit], rungs(fit), None

    def rung_cycle(self, state: dict, epochs: int, rate) -> tuple[float, float]:
        return (0.0, 1.0)  # every candidate a full cycle of its own

    def after_rung(self, state: dict, cycle) -> None:
        pass

    def after_step(self, state: dict, net) -> None:
        pass

    def final(self, best, state: dict):
        c, cfg = self.c, self.c.cfg
        epochs = cfg.epoch_final
        if c.budget.limited:
            fit = c.budget.epochs_that_fit(c.predict_epoch(best, state), margin=1.0)  # margin included
            if fit < epochs:
                c.rep.log(f"budget: final training shortened to {max(fit, 1)} of {epochs} epochs")
                epochs = max(fit, 1)
        out = c.train(best, epochs, cfg.seed + 1, deadline=c.budget.deadline, label="final training") \
            if epochs else None
        return best, (out.epochs if out else 0)

    def _final_reserve(self, best, state: dict) -> float:
        # the final training, with a margin for a plan made now, and the report after it
        per_epoch = self.c.predict_epoch(best, state)
        return self.c.cfg.epoch_final * per_epoch * PLANNED_MARGIN + self.c.budget.reserve(per_epoch)


class BudgetSchedule:
    """One cosine cycle for the lineage, successive halving in a step, the steps planned from the
    budget (plan.py) and re-planned at each step boundary."""
    name = "budget"

    def __init__(self, climber):
        self.c = climber

    def max_macs(self, parent) -> int | None:
        # On a budget a child's cost is the lineage's: five random morphisms make a child cost
        # 2-7x its parent per epoch (measured on the start net), and a winner that costs 5x
        # leaves the rest of the cycle a fifth of the epochs. The budget schedule caps growth.
        # The user's --max-macs caps it too, the tighter of the two winning.
        g = self.c.cfg.max_growth
        return self.c.limits.macs_cap(int(g * parent.macs()) if g else None)

    def first_moves(self, parent, step: int, max_macs, max_params):
        """The capacity moves (deepen, widen) that fit the caps, in a seeded order: child j starts
        from the j-th (cycling), then n_NM - 1 random morphisms. With the uniform draw alone, one
        deepen fills a 2x cap and the other moves are skips and BN inserts, so a step's children
        were the same deepen several times over (stop 27's study); one capacity move each, drawn
        without replacement, makes a step compare where capacity goes. The order is drawn with
        weights proportional to the parameters a move adds per MAC it adds: a deepen at 28x28
        costs as many MACs as one at 7x7 for a sixteenth of its weights, and the plan pays for
        MACs (epoch time), so late layers come first more often."""
        if not self.c.cfg.capacity_first:
            return None
        options = capacity_moves(parent, max_macs, max_params)
        rng = random.Random(child_seed(self.c.cfg.seed, step, 0) ^ 0x5EED)
        # weighted sampling without replacement (Efraimidis & Spirakis 2006): sort by u ** (1 / w)
        key = {m: rng.random() ** (max(macs, 1) / max(params, 1)) for m, params, macs in options}
        return sorted(key, key=key.get, reverse=True)

    def score_snapshots(self) -> int:
        # a slice ends mid-cycle, at a high learning rate: its last iterate is noise (averaging.py)
        return self.c.cfg.score_snapshots

    # ---------------------------------------------------------------- the plan

    def replan(self, net, state: dict) -> None:
        """state["plan"]: the steps still to come (from step state["step"] + 1), where they sit in
        the lineage's cycle and its epochs per unit of progress; an event records it."""
        c = self.c
        if not c.budget.limited:
            state["plan"] = self._flags_plan(state)
            return
        p = self.plan_from(net, state)
        state["plan"] = {**p.to_json(), "from_step": state["step"] + 1}
        if not p.steps and self._parent_keeps_winning(state):
            c.rep.log(f"plan: the parent won {plan.PARENT_WINS_TO_STOP} steps in a row; no more steps")
        c.run.event("plan", step=state["step"], u=round(state["u"], 6), **p.to_json())

    def plan_from(self, net, state: dict, exact_steps: int | None = None) -> plan.Plan:
        """The plan for the time left from here, with `net` the lineage's best (plan.py);
        `exact_steps`: this many steps (else the user's --steps, else as many as fit)."""
        c, cfg = self.c, self.c.cfg
        if exact_steps is None and cfg.steps is not None:
            exact_steps = max(cfg.steps - state["step"], 0)
        per_epoch = c.predict_epoch(net, state)
        return plan.make_plan(c.budget.left() - c.budget.reserve(per_epoch), per_epoch, net.macs(), net.num_params(),
                              state["u"], n_neigh=cfg.n_neigh, iters_per_epoch=c.iters_per_epoch,
                              train_images=len(c.data.train_y), search_share=cfg.search_share,
                              growth=self.expected_growth(state), parallel=c.parallelism,
                              exact_steps=exact_steps, grow=not self._parent_keeps_winning(state),
                              first_step=state["step"] == 0, max_params=c.limits.max_params,
                              max_macs=c.limits.max_macs)

    def expected_growth(self, state: dict) -> float:
        """MACs of a step's winner over its parent, for the steps still to come: the geometric
        mean of plan.GROWTH (a prior worth one step) and the growth of every winning child so far,
        within the child cap. Stop 27's first step on Fashion-MNIST grew 1.98x against the 1.5x
        planned, and the plan made then counted on a second step that had no room."""
        cap = self.c.cfg.max_growth or float("inf")
        seen = [h["growth"] for h in state.get("history", ()) if h.get("growth", 1.0) > 1.0]
        mean = math.exp(statistics.fmean(math.log(g) for g in [plan.GROWTH, *seen]))
        return max(1.0, min(mean, cap))

    @staticmethod
    def _parent_keeps_winning(state: dict) -> bool:
        kept = state.get("kept", [])
        return len(kept) >= plan.PARENT_WINS_TO_STOP and all(kept[-plan.PARENT_WINS_TO_STOP:])

    def _flags_plan(self, state: dict) -> dict:
        """Without a budget: the epochs the flags give (pretrain, each step's rungs, final), at
        fixed places in one cycle."""
        cfg = self.c.cfg
        k = 5 if cfg.steps is None else cfg.steps  # the paper's 12-hour run
        step_epochs = sum(e for _, e in plan.halving_rungs(cfg.n_neigh, 1))
        slice_epochs = max(1, cfg.epoch_neigh // max(step_epochs, 1))
        total = cfg.pretrain_epochs + k * slice_epochs * step_epochs + cfg.epoch_final
        positions, at = [], cfg.pretrain_epochs
        for _ in range(k):
            positions.append(at / max(total, 1))
            at += slice_epochs * step_epochs
        return {"positions": positions, "rate": float(max(total, 1)), "first_slice": slice_epochs,
                "candidates": cfg.n_neigh, "from_step": 1}

    def _position(self, state: dict, step: int) -> float:
        p = state["plan"]
        return p["positions"][step - p["from_step"]]

    def max_steps(self, state: dict) -> int:
        p = state["plan"]
        return p["from_step"] - 1 + len(p["positions"])

    # ---------------------------------------------------------------- the lineage

    def train_lineage(self, net, state: dict, until: float, label: str, log: bool = True, adopt: bool = False):
        """Train the lineage's best from progress u to `until` of its cycle; (net, epochs trained).
        With `log`, an event and a checkpoint record each piece.

        Without a budget: one piece of the flags' whole epochs. On a budget: pieces of at most
        LINEAGE_PIECE of the cycle (fractional epochs, momentum carried), the epochs per unit of
        progress re-planned after each from the time left and the speed just measured (a first
        timing is often off: warm-up, a machine's load); with `adopt`, a plan without steps that
        now finds room for some takes them from here (pretraining after a slow timing)."""
        c = self.c
        if not c.budget.limited:
            epochs = int(round((until - state["u"]) * state["plan"]["rate"]))
            net, trained, _ = self._piece(net, state, until, epochs, label, log, 0)
            return net, trained
        trained, piece, opt = 0, 0, None
        while state["u"] < until:
            end = min(until, state["u"] + LINEAGE_PIECE)
            epochs = (end - state["u"]) * state["plan"]["rate"]
            if epochs * c.iters_per_epoch < 1:  # no optimizer step fits: the cycle ends here
                state["u"] = until
                break
            net, n, opt = self._piece(net, state, end, epochs, label, log, piece, opt)
            trained, piece = trained + n, piece + 1
            if state["u"] >= until or c.budget.left() <= 0:
                break
            if adopt and not state["plan"]["positions"] and self.plan_from(net, state).steps:
                self.replan(net, state)  # steps from here on: the caller's `until` no longer holds
                return net, trained
            self._refresh_rate(net, state)
        state["u"] = until
        return net, trained

    def _piece(self, net, state: dict, until: float, epochs: float, label: str, log: bool, piece: int, opt=None):
        """One piece of the lineage's training, u to `until`; (net, epochs, optimizer state)."""
        c = self.c
        u0, trained = state["u"], 0
        if epochs * c.iters_per_epoch >= 1:
            seed = child_seed(c.cfg.seed, state["step"], 997 + piece)
            out = c.train(net, epochs, seed, (u0, until), deadline=c.budget.deadline, label=label, opt_state=opt)
            c.observe(state, net, out)
            if out.failed and "non-finite" in out.failed:
                raise NashError(f"{label}: {out.failed}; lower --lr-start")
            trained, opt = out.epochs, out.extra.get("opt_state")
            if log:
                c.run.event("lineage", step=state["step"], epochs=out.epochs, cycle=[round(u0, 6), round(until, 6)],
                            val_acc=out.val_acc, val_loss=out.val_loss, seconds=out.seconds)
        state["u"] = until
        if log:
            state["best"] = net_state(net)
            c.run.save_checkpoint(state)
        return net, trained, opt

    def _refresh_rate(self, net, state: dict) -> None:
        """Epochs per unit of progress for the rest of the cycle, from the time left, the steps
        still planned kept where they are."""
        p = self.plan_from(net, state, exact_steps=len(state["plan"]["positions"]) - self._done_in_plan(state))
        state["plan"] = {**state["plan"], "rate": p.rate}

    @staticmethod
    def _done_in_plan(state: dict) -> int:
        return state["step"] + 1 - state["plan"]["from_step"]

    def pretrain(self, net, state: dict) -> int:
        # An epoch or two at the starting learning rate time the start net (the cycle's first
        # epochs run at about that rate anyway); the plan is then sized from that time.
        c, cfg = self.c, self.c.cfg
        seconds, outs = timed_epochs(lambda: c.train(net, 1, cfg.seed, cycle=(0.0, 0.0), label="pretrain (timing)"))
        state["timings"].append([net.macs(), seconds])
        self.replan(net, state)
        if c.budget.limited and not state["plan"]["positions"] and cfg.steps is None:
            c.rep.log(f"plan: {plan.no_step_note(cfg.search_share)}")  # why a search made no step
        first = state["plan"]["positions"][0] if state["plan"]["positions"] else 1.0
        net, more = self.train_lineage(net, state, first, "pretrain", log=False, adopt=True)
        return len(outs) + more

    def before_step(self, best, state: dict, step: int):
        """Train the lineage up to the step's place in the cycle (its own checkpoint), then go."""
        at = self._position(state, step)
        if state["u"] < at:
            best, _ = self.train_lineage(best, state, at, "train best")
        return best, True

    def fit_step(self, candidates, step: int, state: dict):
        """The step's successive-halving rungs, as planned; a safety net for children far bigger
        than predicted: a step takes at most STEP_SHARE of the time left."""
        c = self.c
        p = state["plan"]
        n = min(len(candidates), p.get("candidates") or len(candidates))
        first = p["first_slice"] or 1
        if c.budget.limited:
            per_epoch = [c.predict_epoch(x.net, state) for x in candidates[:n]]
            while n > 2:
                # a rung of k candidates: ceil(k / slots) rounds of its e epochs, at the dearest k's mean
                rungs = plan.halving_rungs(n, first)
                cost = sum(-(-k // c.parallelism) * e * statistics.fmean(sorted(per_epoch[:n])[-k:]) for k, e in rungs)
                if cost <= STEP_SHARE * max(c.budget.left(), 0):
                    break
                n -= 1
            if n < len(candidates):
                c.rep.log(f"budget: step {step} with {n} of {len(candidates)} candidates")
        return candidates[:n], plan.halving_rungs(n, first), p["rate"]

    def rung_cycle(self, state: dict, epochs: int, rate) -> tuple[float, float]:
        return state["u"], min(1.0, state["u"] + epochs / max(rate, 1e-9))

    def after_rung(self, state: dict, cycle) -> None:
        state["u"] = cycle[1]

    def after_step(self, state: dict, net) -> None:
        if self.c.budget.limited:
            self.replan(net, state)

    def final(self, best, state: dict):
        if self.c.budget.limited:
            self.replan_final(best, state)
        return self.train_lineage(best, state, 1.0, "final training", log=False)

    def replan_final(self, best, state: dict) -> None:
        """The rest of the cycle in the time left: epochs (fractional) that end before the deadline."""
        c = self.c
        epochs = c.budget.epochs_that_fit(c.predict_epoch(best, state), margin=1.0, whole=False)
        state["plan"] = {**state["plan"], "rate": epochs / max(1.0 - state["u"], 1e-9)}


SCHEDULES = {"budget": BudgetSchedule, "paper": PaperSchedule}
