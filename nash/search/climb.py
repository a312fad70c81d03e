"""HillClimber: NASH's Algorithm 1 (Elsken, Metzen, Hutter 2017), resumable and on a budget.

    best = pretrain(start net)
    repeat:  children 1..n_neigh-1 = n_NM random morphisms of best, each trained;
             the parent, best itself, trained too (so a step never goes downhill);
             best = the candidate with the highest validation accuracy
    train best; report validation and test accuracy.

Two schedules (schedules.py, plug-ins of the loop) decide how the training time is spent:
- `paper`: exactly Algorithm 1 with the paper's defaults: every candidate gets one full SGDR
  cycle of epoch_neigh epochs, the winner epoch_final epochs of a new cycle.
- `budget` (the default): one cosine cycle for the lineage over the whole run and successive
  halving inside each step, the steps planned from the budget (see plan.py for the why).

Every step ends with an atomic checkpoint; a killed run resumes after its last finished step.

Cost limits (--max-params, --max-macs, --max-latency-ms; limits.py): no candidate over one is
trained. Moves that would exceed a count are never drawn; a child over the latency limit is
drawn again from another seed (a few times, then the step has fewer children). The start net
is checked before the run begins, so the winner is within every limit.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from morphisms import LatencyCache, Network, random_morphisms

from ..data import DataSplits
from ..errors import NashError, OptionError
from ..rundir import RunDir
from .budget import Budget, predict_epoch, timed_epochs
from .executors import LocalExecutor
from .jobs import ChildOrigin, TrainJob, TrainOutcome, net_fingerprint, train_candidate
from .kit import child_seed, finish, make_start_net, net_from_state, net_state, rank_key, score, summary, \
    train_settings
from .limits import CostLimitsConfig, Limits, retry_seed
from .schedules import SCHEDULES


@dataclass
class ClimbConfig(CostLimitsConfig):
    """Every knob of a climb; the defaults are the paper's (reference.md) but the schedule.
    The cost limits (max_params, max_macs, max_latency_ms, ...) come from CostLimitsConfig."""
    schedule: str = field(default="budget", metadata={"choices": SCHEDULES, "help": (
        "budget: one learning-rate cycle for the lineage, successive halving in each step, sized from the budget. "
        "paper: exactly Algorithm 1 (a full SGDR cycle per candidate).")})
    n_neigh: int = field(default=8, metadata={"help": "Candidates per step (the parent is one)."})
    n_nm: int = field(default=5, metadata={"help": "Random morphisms per child."})
    epoch_neigh: int = field(default=17, metadata={"help": "Epochs per step's candidates (paper schedule; without "
                                                           "a budget also the budget schedule's step length)."})
    epoch_final: int = field(default=20, metadata={"help": "Epochs for the winner (without a budget)."})
    pretrain_epochs: int = field(default=20, metadata={"help": "Epochs for the start net (without a budget; with "
                                                               "one, the lineage trains until its first step)."})
    steps: int | None = field(default=None, metadata={"help": "Hill-climbing steps (default: planned from --budget; "
                                                               "5, the paper's 12-hour run, without one)."})
    search_share: float = field(default=0.2, metadata={"help": "budget schedule: the share of the budget spent on "
                                                               "candidates that lose."})
    max_growth: float | None = field(default=2.0, metadata={"help": "budget schedule: a child may cost at most this "
                                                                    "many times its parent per epoch (MACs)."})
    capacity_first: bool = field(default=True, metadata={"help": (
        "budget schedule: each child of a step starts from a different capacity move (a deepen or widen that fits "
        "the growth cap, in a seeded order), then n_nm - 1 random morphisms; off: n_nm random morphisms (the paper's "
        "children, which the paper schedule always makes).")})
    score_snapshots: int = field(default=5, metadata={"help": (
        "budget schedule: a step ranks its candidates on the mean of this many snapshots of their weights "
        "across the slice, BatchNorm statistics recomputed (SWA); 1: on the last iterate.")})

    SELECTS_ON_VALIDATION = True

    def validate(self) -> None:
        super().validate()
        if self.schedule not in SCHEDULES:
            raise OptionError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        for name in ("n_neigh", "n_nm", "score_snapshots"):
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


@dataclass
class Candidate:
    net: Network
    moves: list = field(default_factory=list)
    is_parent: bool = False
    origin: ChildOrigin | None = None  # how `net` is made from the parent, until it is trained
    costs: dict = field(default_factory=dict)  # params, macs (and latency_ms where limited)


class HillClimber:
    """Runs a climb in `run` on `data`, its work sized from the `Budget` that `search` gets; the
    schedule (schedules.py) decides how the time is spent, this class keeps the loop."""

    def __init__(self, config: ClimbConfig, run: RunDir, data: DataSplits, reporter, executor=None):
        self.cfg = config
        self.run = run
        self.data = data
        self.rep = reporter
        self.device = data.train_x.device
        self.settings = train_settings(config, data)
        self.executor = executor or LocalExecutor()
        self.parallelism = max(1, int(self.executor.parallelism))
        n = len(data.train_y)
        self.iters_per_epoch = n // config.batch_size if n > config.batch_size else 1
        self.budget = Budget()
        self.limits = Limits.of(config)
        self.schedule = SCHEDULES[config.schedule](self)

    # ---------------------------------------------------------------- what schedules use

    def train(self, net: Network, epochs: float, seed: int, cycle=(0.0, 1.0), deadline=None, label="",
              required=False, opt_state=None) -> TrainOutcome:
        """Train one network in this process (the lineage, between steps) and score it;
        `opt_state`: the optimizer's state from the piece before (momentum carried)."""
        bar = self.rep.task(label, epochs) if label else None

        def on_epoch(epoch, res):
            self.rep.update(bar, completed=epoch, info=f"loss {res.train_loss:.3f} acc {res.train_acc:.3f}")

        job = TrainJob(0, net, epochs, cycle, seed, deadline=deadline, required=required, opt_state=opt_state,
                       carry_momentum=self.budget.limited)
        out = train_candidate(job, (self.data, self.settings), on_epoch=on_epoch)
        self.rep.remove(bar)
        return out

    def predict_epoch(self, net: Network, state: dict) -> float:
        """Seconds a training epoch of `net` may take, from the timings so far (budget.py)."""
        return predict_epoch(state["timings"], net.macs())

    def costs(self, net: Network, state: dict) -> dict:
        """{"params", "macs"} of `net` under a limit, and "latency_ms" under a latency limit: measured
        once per architecture, the figures kept in the checkpoint (state["latency"]) for a resume."""
        if not self.limits:  # no limit: the events hold what they held before limits existed
            return {"params": net.num_params()}
        cache = LatencyCache(state.setdefault("latency", {})) if self.limits.max_latency_ms is not None else None
        return self.limits.measure(net, cache, self.device)

    def observe(self, state: dict, net: Network, out: TrainOutcome) -> None:
        if out.epochs:
            state["timings"].append([net.macs(), out.seconds / out.epochs])

    # ---------------------------------------------------------------- the algorithm

    def search(self, budget: Budget) -> dict:
        """Climb (or continue a checkpointed climb) within `budget` and write the results."""
        run, sched = self.run, self.schedule
        self.budget = budget
        state = run.load_checkpoint()
        if state is None:
            state = self._pretrain()
        else:
            self.rep.log(f"resuming after step {state['step']} ({run.spent_before:.0f}s already spent)")
        best = net_from_state(state["best"]).to(self.device)

        steps_bar = self.rep.task("climb", sched.max_steps(state))
        self.rep.update(steps_bar, completed=state["step"])
        while state["step"] < sched.max_steps(state) and not state.get("final"):
            step = state["step"] + 1
            best, go = sched.before_step(best, state, step)
            if not go:
                break
            candidates = self._candidates(best, step, state)
            if len(candidates) < 2:
                self.rep.log(f"step {step}: no child fits under the limits; no more steps")
                break
            fitted = sched.fit_step(candidates, step, state)
            if fitted is None:
                break
            candidates, rungs, rate = fitted
            best, winner = self._step(candidates, rungs, step, state, rate)
            state["step"] = step
            state["best"] = net_state(best)
            state["search_seconds"] = run.elapsed()  # until the last step's end
            state["history"].append({"step": step, "val_acc": winner.val_acc, "params": best.num_params(),
                                     "macs": best.macs(), "growth": best.macs() / max(candidates[0].net.macs(), 1),
                                     "morphisms": [m.to_json() for m in candidates[winner.key].moves]})
            state.setdefault("kept", []).append(winner.key == 0)
            sched.after_step(state, best)
            run.save_checkpoint(state)
            self.rep.update(steps_bar, total=sched.max_steps(state), completed=step,
                            info=f"best val {winner.val_acc:.4f}")
            self.rep.log(f"step {step}: best val acc {winner.val_acc:.4f}, {best.num_params():,} params "
                         f"({'parent kept' if winner.key == 0 else 'child ' + str(winner.key)})")
        self.rep.remove(steps_bar)
        if not state.get("final"):
            state = self._final(best, state)
        best = net_from_state(state["best"]).to(self.device)
        return finish(run, "nash", best, state["final"], state["start"], self.rep, steps=state["step"],
                      history=state["history"], schedule=self.cfg.schedule,
                      search_seconds=state.get("search_seconds", 0.0), final_epochs=state["final"]["epochs"])

    def _pretrain(self) -> dict:
        net = make_start_net(self.cfg, self.data).to(self.device)
        state = {"step": 0, "history": [], "timings": [], "u": 0.0}
        epochs = self.schedule.pretrain(net, state)
        rec = score(net, self.data)
        self.run.event("start", **{**rec, **self.costs(net, state)}, epochs=epochs)
        start = summary(rec)
        self.rep.log(f"start net: val acc {start['val_acc']:.4f}, test acc {start['test_acc']:.4f}, "
                     f"{start['params']:,} params")
        state.update(best=net_state(net), start=start, start_score={"digest": net_fingerprint(net), "rec": rec})
        self.run.save_checkpoint(state)
        return state

    def _candidates(self, parent: Network, step: int, state: dict) -> list[Candidate]:
        """The parent (index 0) and the children of n_NM random morphisms each (n_neigh - 1, or
        as many as the plan has room for), calibrated on one training batch; under the budget
        schedule each child's first morphism is its own capacity move (schedule.first_moves). Each child is a
        pure function of (parent, seed); under the cost limits it is drawn within the counts,
        and one over the latency limit is drawn again from another seed (`retry_seed`), at most
        LATENCY_TRIES times, then left out (an `over_limit` event records each such draw)."""
        cfg, limits = self.cfg, self.limits
        calib = self.data.train_x[: cfg.batch_size]
        max_macs = self.schedule.max_macs(parent)  # the schedule's cap and --max-macs, the tighter
        max_params = limits.max_params
        count = min(cfg.n_neigh, (state.get("plan") or {}).get("candidates") or cfg.n_neigh)
        measured = len(state.get("latency", ()))
        candidates = [Candidate(copy.deepcopy(parent), [], is_parent=True, origin=ChildOrigin(parent, 0, 0, None, []),
                                costs=self.costs(parent, state))]
        dropped = []
        firsts = self.schedule.first_moves(parent, step, max_macs, max_params)
        for j in range(1, max(count, 2)):
            def draw(attempt, j=j):
                seed = retry_seed(child_seed(cfg.seed, step, j), attempt)
                # a redraw for latency is a plain random draw: the capacity move may be what is slow
                first = firsts[(j - 1) % len(firsts)] if firsts and attempt == 0 else None
                child, applied = random_morphisms(parent, cfg.n_nm, rng=seed, calibrate=calib, max_macs=max_macs,
                                                  max_params=max_params, first=first)
                return child, applied, seed, first
            got, costs, over = limits.first_within(draw, lambda d: self.costs(d[0], state))
            dropped += [dict(step=step, child=j, attempt=attempt, morphisms=[m.to_json() for m in d[1]], **c)
                        for attempt, d, c in over]
            if got is None:
                self.rep.log(f"step {step}: child {j} over the limits in {limits.tries()} draws; left out")
                continue
            child, applied, seed, first = got
            # the origin lets a remote executor ship the parent once and rebuild the child there
            candidates.append(Candidate(child, applied, costs=costs, origin=ChildOrigin(
                parent, cfg.n_nm, seed, calib, applied, max_macs, max_params, first)))
        if len(state.get("latency", ())) > measured:
            # a resumed run must see the figures this one decided on, the step in flight included
            # (saved before this step's events: a resume cuts the log back to the checkpoint)
            self.run.save_checkpoint(state)
        for event in dropped:
            self.run.event("over_limit", **event)
        return candidates

    def _step(self, candidates: list[Candidate], rungs, step: int, state: dict, rate=None):
        """Successive halving over `rungs` [(candidates, epochs)], each rung at the place in the
        cycle the schedule gives (the paper schedule: one rung of full cycles). Returns (best
        net, its outcome)."""
        cfg = self.cfg
        alive = list(range(len(candidates)))
        bar = self.rep.task(f"step {step}", sum(c for c, _ in rungs))
        best_out = None
        for r, (count, epochs) in enumerate(rungs):
            alive = alive[:count]
            cycle = self.schedule.rung_cycle(state, epochs, rate)
            jobs = [TrainJob(j, candidates[j].net, epochs, cycle, child_seed(cfg.seed, step, j) + 7 + 101 * r,
                             deadline=self.budget.deadline, required=(j == alive[0]), origin=candidates[j].origin,
                             average=self.schedule.score_snapshots())
                    for j in alive]

            def done(out):
                self.rep.update(bar, advance=1, info=f"val {out.val_acc if out.ok else 'failed'}")

            outcomes = self.executor.map(jobs, (self.data, self.settings), on_done=done)
            for out in outcomes:
                cand = candidates[out.key]
                if out.net is not None:
                    cand.net = out.net
                cand.origin = None  # trained now: no longer a function of the parent
                self.observe(state, cand.net, out)
                self.run.event("child", step=step, rung=r, child=out.key, is_parent=cand.is_parent,
                               cycle=[round(cycle[0], 6), round(cycle[1], 6)],
                               morphisms=[m.to_json() for m in cand.moves], **cand.costs,
                               train_acc=out.train_acc, train_loss=out.train_loss, epochs=out.epochs,
                               seconds=out.seconds, failed=out.failed, val_acc=out.val_acc, val_loss=out.val_loss,
                               averaged=out.extra.get("averaged", 1))
                if out.failed:
                    self.rep.log(f"step {step} candidate {out.key}: {out.failed}; left out")
            ranked = sorted((o for o in outcomes if o.ok), key=rank_key)
            if not ranked:
                raise NashError(f"step {step}: every candidate failed to train (non-finite loss); lower --lr-start")
            best_out = ranked[0]
            keep = rungs[r + 1][0] if r + 1 < len(rungs) else 1
            alive = [o.key for o in ranked[:keep]]
            self.schedule.after_rung(state, cycle)
        self.rep.remove(bar)
        winner = candidates[best_out.key]
        self.run.event("step", step=step, best_child=best_out.key, val_acc=best_out.val_acc,
                       params=winner.net.num_params(), kept_parent=winner.is_parent)
        return winner.net, best_out

    def _final(self, best: Network, state: dict) -> dict:
        best, epochs = self.schedule.final(best, state)
        # a budget with no room for a step trains the start net to the end of its cycle before
        # the start is scored: then the final net is the start net, and scoring it again (a pass
        # over the validation and test splits, seconds on 10,000 test images) would run past
        # the deadline that the report's reserve was sized for
        known = state.get("start_score")
        rec = known["rec"] if known and known["digest"] == net_fingerprint(best) else score(best, self.data)
        self.run.event("final", **rec, epochs=epochs)
        final = summary(rec) | {"epochs": epochs}
        self.rep.log(f"final net: val acc {final['val_acc']:.4f}, test acc {final['test_acc']:.4f}, "
                     f"{final['params']:,} params")
        state.update(best=net_state(best), final=final)
        self.run.save_checkpoint(state)
        return state


def preview_plan(config: ClimbConfig, data: DataSplits, budget: Budget, executor=None) -> dict:
    """What a budget-schedule climb of `config` would plan on `data` within `budget`: the start
    net timed for an epoch or two, as a climb begins, then the plan (plan.py) with the start
    net's cost and the timing. Trains nothing else and writes nothing."""
    from ..progress import Reporter
    if config.schedule != "budget" or not budget.limited:
        raise OptionError("--plan needs --budget and the budget schedule (the paper schedule's steps are fixed)")
    climber = HillClimber(config, None, data, Reporter(quiet=True), executor)
    climber.budget = budget
    net = make_start_net(config, data).to(climber.device)
    seconds, _ = timed_epochs(lambda: climber.train(net, 1, config.seed, cycle=(0.0, 0.0)))
    state = {"step": 0, "timings": [[net.macs(), seconds]], "u": 0.0}
    p = climber.schedule.plan_from(net, state)
    return {**p.to_json(), "epoch_seconds": seconds, "start_macs": net.macs(), "start_params": net.num_params(),
            "parallelism": climber.parallelism, "budget_seconds": config.budget, "time_left": budget.left()}


def run_climb(config: ClimbConfig, data: DataSplits, run: RunDir, budget: Budget, reporter, executor=None) -> dict:
    """The `nash` searcher of the registry."""
    return HillClimber(config, run, data, reporter, executor).search(budget)
