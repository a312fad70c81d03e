"""HillClimber: NASH's Algorithm 1 (Elsken, Metzen, Hutter 2017), resumable and on a budget.

    best = pretrain(start net)
    repeat:  children 1..n_neigh-1 = n_NM random morphisms of best, each trained;
             the parent, best itself, trained too (so a step never goes downhill);
             best = the candidate with the highest validation accuracy
    train best; report validation and test accuracy.

Two schedules decide how the training time is spent:
- `paper`: exactly Algorithm 1 with the paper's defaults: every candidate gets one full SGDR
  cycle of epoch_neigh epochs, the winner epoch_final epochs of a new cycle.
- `budget` (the default): one cosine cycle for the lineage over the whole run and successive
  halving inside each step, sized from the budget (see plan.py for the why).

Every step ends with an atomic checkpoint; a killed run resumes after its last finished step.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field

import torch

from morphisms import Network, random_morphisms, start_net
from morphisms.network import graph_from_json

from ..data import DataSplits
from ..errors import NashError, OptionError
from ..report import write_climb_report
from ..rundir import RunDir
from ..train import evaluate
from . import plan
from .budget import EPOCH_MARGIN, PAPER_PRETRAIN_SHARE, PLANNED_MARGIN, PREDICTION_MARGIN, STEP_SHARE, Budget, \
    timed_epochs
from .contract import StartNetConfig, write_results
from .executors import LocalExecutor
from .jobs import ChildOrigin, TrainJob, TrainOutcome, TrainSettings, train_candidate
from .start import start_network

SCHEDULES = ("budget", "paper")


@dataclass
class ClimbConfig(StartNetConfig):
    """Every knob of a climb; the defaults are the paper's (reference.md) but the schedule."""
    schedule: str = field(default="budget", metadata={"choices": SCHEDULES, "help": (
        "budget: one learning-rate cycle for the lineage, successive halving in each step, sized from the budget. "
        "paper: exactly Algorithm 1 (a full SGDR cycle per candidate).")})
    n_neigh: int = field(default=8, metadata={"help": "Candidates per step (the parent is one)."})
    n_nm: int = field(default=5, metadata={"help": "Random morphisms per child."})
    epoch_neigh: int = field(default=17, metadata={"help": "Epochs per step's candidates (paper schedule; without "
                                                           "a budget also the budget schedule's step length)."})
    epoch_final: int = field(default=20, metadata={"help": "Epochs for the winner (without a budget)."})
    pretrain_epochs: int = field(default=20, metadata={"help": "Epochs for the start net (without a budget; the "
                                                               "budget schedule pretrains for 30% of the cycle)."})
    steps: int | None = field(default=None, metadata={"help": "Hill-climbing steps (default: planned from --budget; "
                                                               "5, the paper's 12-hour run, without one)."})
    search_share: float = field(default=0.2, metadata={"help": "budget schedule: the share of the budget spent on "
                                                               "candidates that lose."})
    max_growth: float | None = field(default=2.0, metadata={"help": "budget schedule: a child may cost at most this "
                                                                    "many times its parent per epoch (MACs)."})

    SELECTS_ON_VALIDATION = True

    def validate(self) -> None:
        super().validate()
        if self.schedule not in SCHEDULES:
            raise OptionError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        for name in ("n_neigh", "n_nm"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("epoch_neigh", "epoch_final", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 0:
            raise OptionError(f"steps must be at least 0, got {self.steps}")
        if not 0 < self.search_share < 1:
            raise OptionError(f"search_share must be between 0 and 1, got {self.search_share}")
        if self.max_growth is not None and not self.max_growth >= 1:
            raise OptionError(f"max_growth must be at least 1 (or None: no cap), got {self.max_growth}")
        if self.schedule == "budget" and self.steps != 0 and self.n_neigh < 2:
            raise OptionError("the budget schedule needs n_neigh >= 2 (the parent and a child)")


def net_state(net: Network) -> dict:
    """A network as plain data for a weights-only checkpoint: its graph JSON and tensors."""
    return {"graph": json.dumps(net.to_json()), "weights": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def net_from_state(state: dict) -> Network:
    net = Network(graph_from_json(json.loads(state["graph"])))
    net.load_state_dict(state["weights"])
    return net


def child_seed(seed: int, step: int, j: int) -> int:
    # a fixed function of (seed, step, child): a resumed run draws what the uninterrupted one drew
    return (seed * 1_000_003 + step * 1_009 + j) % (2**31)


def make_start_net(cfg, data: DataSplits) -> Network:
    """The NASH start net, its init drawn from the run's seed (torch's global generator is left
    as it was), or the saved network of `cfg.start`."""
    if cfg.start is not None:
        return start_network(cfg.start, data, cfg.seed if cfg.new_head else None)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(cfg.seed)  # CPU only: torch.manual_seed would reseed CUDA
        return start_net(data.in_channels, data.num_classes, cfg.widths, data.image_size)


@dataclass
class Candidate:
    net: Network
    moves: list = field(default_factory=list)
    is_parent: bool = False
    origin: ChildOrigin | None = None  # how `net` is made from the parent, until it is trained


class HillClimber:
    """Runs a climb in `run` on `data`, its work sized from the `Budget` that `search` gets."""

    def __init__(self, config: ClimbConfig, run: RunDir, data: DataSplits, reporter, executor=None):
        self.cfg = config
        self.run = run
        self.data = data
        self.rep = reporter
        self.device = data.train_x.device
        aug = dataclasses.replace(data.augment, cutout=config.cutout) if config.cutout else data.augment
        self.settings = TrainSettings(config.lr_start, config.lr_end, config.batch_size, aug, config.mixup)
        self.executor = executor or LocalExecutor()
        self.budget = Budget()

    # ---------------------------------------------------------------- training the lineage

    def _train(self, net: Network, epochs: int, seed: int, cycle=(0.0, 1.0), deadline=None, label="",
               required=False) -> TrainOutcome:
        """Train one network in this process (the lineage, between steps) and score it."""
        bar = self.rep.task(label, epochs) if label else None

        def on_epoch(epoch, res):
            self.rep.update(bar, completed=epoch, info=f"loss {res.train_loss:.3f} acc {res.train_acc:.3f}")

        job = TrainJob(0, net, epochs, cycle, seed, deadline=deadline, required=required)
        out = train_candidate(job, (self.data, self.settings), on_epoch=on_epoch)
        self.rep.remove(bar)
        return out

    def _predict_epoch(self, net: Network, state: dict) -> float:
        """Seconds a training epoch may take, from a line fitted to (MACs, seconds) seen so far,
        the margin for a prediction included."""
        obs = state["timings"]
        x = net.macs()
        same = [sec for m, sec in obs if m == x]
        if same:  # this very network (or its twin) was timed: the latest time is the best guess
            return same[-1] * EPOCH_MARGIN
        if len({m for m, _ in obs}) < 2:
            m0, s0 = obs[-1]
            return s0 * max(1.0, x / max(m0, 1))
        n = len(obs)
        mx = sum(m for m, _ in obs) / n
        my = sum(s for _, s in obs) / n
        b = sum((m - mx) * (s - my) for m, s in obs) / max(sum((m - mx) ** 2 for m, _ in obs), 1e-12)
        b = max(b, 0.0)
        return max(my + b * (x - mx), min(s for _, s in obs)) * PREDICTION_MARGIN

    def _observe(self, state: dict, net: Network, out: TrainOutcome) -> None:
        if out.epochs:
            state["timings"].append([net.macs(), out.seconds / out.epochs])

    # ---------------------------------------------------------------- the algorithm

    def search(self, budget: Budget) -> dict:
        """Climb (or continue a checkpointed climb) within `budget` and write the results."""
        cfg, run = self.cfg, self.run
        self.budget = budget
        state = run.load_checkpoint()
        if state is None:
            state = self._pretrain()
        else:
            self.rep.log(f"resuming after step {state['step']} ({run.spent_before:.0f}s already spent)")
        best = net_from_state(state["best"]).to(self.device)

        steps_bar = self.rep.task("climb", self._max_steps(state))
        self.rep.update(steps_bar, completed=state["step"])
        while state["step"] < self._max_steps(state) and not state.get("final"):
            step = state["step"] + 1
            if cfg.schedule == "budget" and state["u"] < state["plan"]["positions"][step - 1]:
                best, _ = self._lineage(best, state, state["plan"]["positions"][step - 1], "train best")
                continue
            candidates = self._candidates(best, step)
            if cfg.schedule == "paper":
                candidates = self._fit_paper_step(candidates, step, state)
                if candidates is None:
                    break
                rungs, rate = [(len(candidates), cfg.epoch_neigh)], None
            else:
                candidates, rungs, rate = self._fit_budget_step(candidates, step, state)
            best, winner = self._step(candidates, rungs, step, state, rate)
            state["step"] = step
            state["best"] = net_state(best)
            state["search_seconds"] = run.elapsed()  # until the last step's end
            state["history"].append({"step": step, "val_acc": winner.val_acc, "params": best.num_params(),
                                     "morphisms": [m.to_json() for m in winner_moves(candidates, winner)]})
            run.save_checkpoint(state)
            self.rep.update(steps_bar, completed=step, info=f"best val {winner.val_acc:.4f}")
            self.rep.log(f"step {step}: best val acc {winner.val_acc:.4f}, {best.num_params():,} params "
                         f"({'parent kept' if winner.key == 0 else 'child ' + str(winner.key)})")
        self.rep.remove(steps_bar)
        if not state.get("final"):
            state = self._final(best, state)
        best = net_from_state(state["best"]).to(self.device)
        best.save(run.path / "best")
        results = write_results(run, "nash", state["final"], state["start"], steps=state["step"],
                                history=state["history"], schedule=cfg.schedule,
                                search_seconds=state.get("search_seconds", 0.0),
                                final_epochs=state["final"]["epochs"])
        write_climb_report(run, best, self.rep)
        return results

    def _max_steps(self, state: dict) -> int:
        if self.cfg.steps is not None:
            return self.cfg.steps
        if self.cfg.schedule == "budget":
            return len(state["plan"]["positions"])
        return 10**9 if self.cfg.budget is not None else 5

    def _score_and_log(self, kind: str, net: Network, **fields) -> dict:
        val_acc, val_loss = evaluate(net, self.data.val_x, self.data.val_y)
        test_acc, _ = evaluate(net, self.data.test_x, self.data.test_y)
        rec = {"val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "params": net.num_params(), **fields}
        self.run.event(kind, **rec)
        return rec

    def _pretrain(self) -> dict:
        cfg = self.cfg
        net = make_start_net(cfg, self.data).to(self.device)
        state = {"step": 0, "history": [], "timings": [], "u": 0.0}
        if cfg.schedule == "paper":
            # on a budget, pretraining may take at most its share of it
            pre_deadline = self.budget.share(PAPER_PRETRAIN_SHARE).deadline
            out = self._train(net, cfg.pretrain_epochs, cfg.seed, deadline=pre_deadline, label="pretrain") \
                if cfg.pretrain_epochs else None
            if out is None or not out.epochs:
                out = self._train(copy.deepcopy(net), 1, 0)  # only to time an epoch
            self._observe(state, net, out)
            epochs = out.epochs if cfg.pretrain_epochs else 0
        else:
            # An epoch or two at the starting learning rate time the start net (the cycle's
            # first epochs run at about that rate anyway); the plan is then sized from that time.
            seconds, outs = timed_epochs(lambda: self._train(net, 1, cfg.seed, cycle=(0.0, 0.0),
                                                             label="pretrain (timing)"))
            state["timings"].append([net.macs(), seconds])
            state["plan"] = self._plan(state)
            epochs = len(outs)
            net, more = self._lineage(net, state, state["plan"]["positions"][0] if state["plan"]["positions"] else 1.0,
                                      "pretrain", log=False)
            epochs += more
        start = self._score_and_log("start", net, epochs=epochs)
        start = {k: start[k] for k in ("val_acc", "test_acc", "params")}
        self.rep.log(f"start net: val acc {start['val_acc']:.4f}, test acc {start['test_acc']:.4f}, "
                     f"{start['params']:,} params")
        state.update(best=net_state(net), start=start)
        self.run.save_checkpoint(state)
        return state

    # ---------------------------------------------------------------- budget schedule

    def _plan(self, state: dict) -> dict:
        """Steps and their places in the lineage's cycle (see plan.py)."""
        cfg = self.cfg
        if cfg.steps is not None:
            k = cfg.steps
        elif not self.budget.limited:
            k = 5  # the paper's 12-hour run
        else:
            k = plan.planned_steps(cfg.n_neigh, cfg.search_share)
        positions = plan.step_positions(k) if k else []
        if not self.budget.limited:
            # epochs from the flags: pretrain, then each step's rungs, then the final training
            slice_epochs = max(1, cfg.epoch_neigh // max(sum(e for _, e in plan.halving_rungs(cfg.n_neigh, 1)), 1))
            total = cfg.pretrain_epochs + k * slice_epochs * sum(e for _, e in plan.halving_rungs(cfg.n_neigh, 1)) \
                + cfg.epoch_final
            positions = []
            at = cfg.pretrain_epochs
            for _ in range(k):
                positions.append(at / max(total, 1))
                at += slice_epochs * sum(e for _, e in plan.halving_rungs(cfg.n_neigh, 1))
            return {"positions": positions, "rate": float(max(total, 1)), "first_slice": slice_epochs}
        return {"positions": positions, "rate": None, "first_slice": None}

    def _rate(self, net: Network, state: dict, steps_left: int) -> float:
        """Epochs per unit of cycle progress from here on (fixed without a budget; sized from
        the time left with one, the report's reserve kept)."""
        if not self.budget.limited:
            return state["plan"]["rate"]
        per_epoch = self._predict_epoch(net, state)
        left = self.budget.left() - self.budget.reserve(per_epoch)
        epochs = plan.lineage_epochs(left, per_epoch, state["u"], steps_left, self.cfg.n_neigh)
        return epochs / max(1.0 - state["u"], 1e-9)

    def _lineage(self, net: Network, state: dict, until: float, label: str,
                 log: bool = True) -> tuple[Network, int]:
        """Train the lineage's best from progress u to `until` of its cycle; (net, epochs trained).
        With `log`, an event and a checkpoint record it."""
        steps_left = sum(1 for p in state["plan"]["positions"] if p >= until - 1e-9)
        rate = self._rate(net, state, steps_left)
        epochs = int(round((until - state["u"]) * rate))
        u0, trained = state["u"], 0
        if epochs >= 1:
            out = self._train(net, epochs, child_seed(self.cfg.seed, state["step"], 997), (u0, until),
                              deadline=self.budget.deadline, label=label)
            self._observe(state, net, out)
            if out.failed and "non-finite" in out.failed:
                raise NashError(f"{label}: {out.failed}; lower --lr-start")
            trained = out.epochs
            if log:
                self.run.event("lineage", step=state["step"], epochs=out.epochs, cycle=[round(u0, 6), round(until, 6)],
                               val_acc=out.val_acc, val_loss=out.val_loss, seconds=out.seconds)
        state["u"] = until
        if log:
            state["best"] = net_state(net)
            self.run.save_checkpoint(state)
        return net, trained

    def _fit_budget_step(self, candidates, step, state):
        """The step's successive-halving rungs, sized so the step's losers stay in their share."""
        parent = candidates[0].net
        steps_left = len(state["plan"]["positions"]) - step + 1
        rate = self._rate(parent, state, steps_left)
        first = state["plan"]["first_slice"] or max(1, int(round(plan.SLICE_SHARE * rate)))
        n = len(candidates)
        if self.budget.limited:
            # the whole step (every rung of every candidate) must leave the lineage its share
            per_epoch = [self._predict_epoch(c.net, state) for c in candidates]
            # a safety net for children far bigger than predicted: a step may take at most
            # STEP_SHARE of the time left, counting every rung at its most expensive candidates
            while n > 2:
                rungs = plan.halving_rungs(n, first)
                cost = sum(sum(sorted(per_epoch[:n])[-c:]) * e for c, e in rungs)
                if cost <= STEP_SHARE * max(self.budget.left(), 0):
                    break
                n -= 1
            if n < len(candidates):
                self.rep.log(f"budget: step {step} with {n} of {len(candidates)} candidates")
        return candidates[:n], plan.halving_rungs(n, first), rate

    # ---------------------------------------------------------------- paper schedule

    def _fit_paper_step(self, candidates, step, state):
        """All candidates when they fit before the final training's reserve, else the parent and
        the children that fit, else None (stepping is over)."""
        if not self.budget.limited:
            return candidates
        cfg = self.cfg
        costs = [cfg.epoch_neigh * self._predict_epoch(c.net, state) for c in candidates]
        left = self.budget.left() - self._final_reserve(candidates[0].net, state)
        fit = next((k for k in range(len(costs), 0, -1) if sum(costs[:k]) <= left), 0)
        if fit < 2 and step > 1:
            self.rep.log(f"budget: stopping before step {step} (it would take ~{sum(costs):.0f}s, "
                         f"{max(left, 0):.0f}s left before the final training)")
            return None
        fit = max(fit, 2)  # a climb makes at least one step: the parent and one child
        if fit < len(candidates):
            self.rep.log(f"budget: step {step} with {fit} of {len(candidates)} candidates")
        return candidates[:fit]

    def _final_reserve(self, best: Network, state: dict) -> float:
        # the final training, with a margin for a plan made now, and the report after it
        per_epoch = self._predict_epoch(best, state)
        return self.cfg.epoch_final * per_epoch * PLANNED_MARGIN + self.budget.reserve(per_epoch)

    # ---------------------------------------------------------------- a step

    def _candidates(self, parent: Network, step: int) -> list[Candidate]:
        """The parent (index 0) and n_neigh - 1 children of n_NM random morphisms each,
        calibrated on one training batch. Each child is a pure function of (parent, seed)."""
        cfg = self.cfg
        calib = self.data.train_x[: cfg.batch_size]
        # On a budget a child's cost is the lineage's: five random morphisms make a child cost
        # 2-7x its parent per epoch (measured on the start net), and a winner that costs 5x
        # leaves the rest of the cycle a fifth of the epochs. The budget schedule caps growth.
        max_macs = int(cfg.max_growth * parent.macs()) if cfg.schedule == "budget" and cfg.max_growth else None
        candidates = [Candidate(copy.deepcopy(parent), [], is_parent=True, origin=ChildOrigin(parent, 0, 0, None, []))]
        for j in range(1, cfg.n_neigh):
            seed = child_seed(cfg.seed, step, j)
            child, applied = random_morphisms(parent, cfg.n_nm, rng=seed, calibrate=calib, max_macs=max_macs)
            # the origin lets a remote executor ship the parent once and rebuild the child there
            candidates.append(Candidate(child, applied,
                                        origin=ChildOrigin(parent, cfg.n_nm, seed, calib, applied, max_macs)))
        return candidates

    def _step(self, candidates: list[Candidate], rungs, step: int, state: dict, rate=None):
        """Successive halving over `rungs` [(candidates, epochs)] at `rate` epochs per unit of
        the lineage's cycle (fixed for the whole step, so the rungs' slices keep their
        proportions); the paper schedule is one rung of full cycles (rate None). Returns (best
        net, its outcome)."""
        cfg = self.cfg
        alive = list(range(len(candidates)))
        bar = self.rep.task(f"step {step}", sum(c for c, _ in rungs))
        best_out = None
        for r, (count, epochs) in enumerate(rungs):
            alive = alive[:count]
            if rate is None:
                cycle = (0.0, 1.0)
            else:
                cycle = (state["u"], min(1.0, state["u"] + epochs / max(rate, 1e-9)))
            jobs = [TrainJob(j, candidates[j].net, epochs, cycle, child_seed(cfg.seed, step, j) + 7 + 101 * r,
                             deadline=self.budget.deadline, required=(j == alive[0]), origin=candidates[j].origin)
                    for j in alive]

            def done(out, r=r):
                self.rep.update(bar, advance=1, info=f"val {out.val_acc if out.ok else 'failed'}")

            outcomes = self.executor.map(jobs, (self.data, self.settings), on_done=done)
            for out in outcomes:
                cand = candidates[out.key]
                if out.net is not None:
                    cand.net = out.net
                cand.origin = None  # trained now: no longer a function of the parent
                self._observe(state, cand.net, out)
                self.run.event("child", step=step, rung=r, child=out.key, is_parent=cand.is_parent,
                               cycle=[round(cycle[0], 6), round(cycle[1], 6)],
                               morphisms=[m.to_json() for m in cand.moves], params=cand.net.num_params(),
                               train_acc=out.train_acc, train_loss=out.train_loss, epochs=out.epochs,
                               seconds=out.seconds, failed=out.failed, val_acc=out.val_acc, val_loss=out.val_loss)
                if out.failed:
                    self.rep.log(f"step {step} candidate {out.key}: {out.failed}; left out")
            ranked = sorted((o for o in outcomes if o.ok), key=lambda o: (-o.val_acc, o.val_loss, o.key))
            if not ranked:
                raise NashError(f"step {step}: every candidate failed to train (non-finite loss); lower --lr-start")
            best_out = ranked[0]
            # highest validation accuracy; on a tie (common on small validation sets) the lower
            # validation loss, then the earlier candidate
            keep = rungs[r + 1][0] if r + 1 < len(rungs) else 1
            alive = [o.key for o in ranked[:keep]]
            if cfg.schedule == "budget":
                state["u"] = cycle[1]
        self.rep.remove(bar)
        winner = candidates[best_out.key]
        self.run.event("step", step=step, best_child=best_out.key, val_acc=best_out.val_acc,
                       params=winner.net.num_params(), kept_parent=winner.is_parent)
        return winner.net, best_out

    # ---------------------------------------------------------------- final training

    def _final(self, best: Network, state: dict) -> dict:
        cfg = self.cfg
        if cfg.schedule == "budget":
            best, epochs = self._lineage(best, state, 1.0, "final training", log=False)
        else:
            epochs = cfg.epoch_final
            if self.budget.limited:
                fit = self.budget.epochs_that_fit(self._predict_epoch(best, state), margin=1.0)  # margin included
                if fit < epochs:
                    self.rep.log(f"budget: final training shortened to {max(fit, 1)} of {epochs} epochs")
                    epochs = max(fit, 1)
            out = self._train(best, epochs, cfg.seed + 1, deadline=self.budget.deadline, label="final training") \
                if epochs else None
            epochs = out.epochs if out else 0
        final = self._score_and_log("final", best, epochs=epochs)
        final = {k: final[k] for k in ("val_acc", "test_acc", "params")} | {"epochs": epochs}
        self.rep.log(f"final net: val acc {final['val_acc']:.4f}, test acc {final['test_acc']:.4f}, "
                     f"{final['params']:,} params")
        state.update(best=net_state(best), final=final)
        self.run.save_checkpoint(state)
        return state


def winner_moves(candidates: list[Candidate], winner: TrainOutcome) -> list:
    return candidates[winner.key].moves


def run_climb(config: ClimbConfig, data: DataSplits, run: RunDir, budget: Budget, reporter, executor=None) -> dict:
    """The `nash` searcher of the registry."""
    return HillClimber(config, run, data, reporter, executor).search(budget)
