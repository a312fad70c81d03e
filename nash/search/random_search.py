"""`random`: random search at the same budget, the baseline that tells whether hill climbing
beats luck.

Each candidate is the start net from its own fresh initialisation grown by a random morphism
sequence as long (and its cost capped as) a climb's lineage by its end on this budget
(plan.py), trained one SGDR cycle as long as a step's winner trains in a climb; candidates
train through the executor, a batch as wide as its parallelism, until the search share is
spent (without a budget: `candidates` of epoch_neigh epochs). The best by validation accuracy
trains one more cycle for the rest of the budget (epoch_final epochs). Resumable per batch.

Cost limits (--max-params, --max-macs, --max-latency-ms) hold as in a climb (limits.py): the
sequences are sized from a plan that stops at the limits, moves over a count are never drawn,
and a candidate over the latency limit is drawn again from another seed, LATENCY_TRIES times,
then left out. Without them, random against nash under a limit compared a constrained search
with an unconstrained one (its networks grew to 1.8M parameters where the climb's were capped)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from morphisms import LatencyCache, random_morphisms, reinitialized

from ..data import DataSplits
from ..errors import NashError, OptionError
from ..rundir import RunDir
from ..train import sgdr_train
from . import plan
from .budget import Budget, timed_epochs
from .climb import ClimbConfig
from .kit import child_seed, finish, make_start_net, net_from_state, net_state, rank_key, score, summary, \
    train_settings
from .executors import LocalExecutor
from .jobs import TrainJob, train_candidate
from .limits import CostLimitsConfig, Limits, retry_seed


@dataclass
class RandomConfig(CostLimitsConfig):
    n_neigh: int = field(default=8, metadata={"help": "As the climb's: sets how many steps a climb plans, so how "
                                                      "long the morphism sequences are."})
    n_nm: int = field(default=5, metadata={"help": "Random morphisms per planned climb step."})
    candidates: int = field(default=8, metadata={"help": "Networks tried without a budget."})
    epoch_neigh: int = field(default=17, metadata={"help": "Epochs per candidate without a budget."})
    epoch_final: int = field(default=20, metadata={"help": "Epochs for the winner without a budget."})
    search_share: float = field(default=0.5, metadata={"help": "With a budget: the share spent on candidates, "
                                                               "before the winner's cycle."})

    SELECTS_ON_VALIDATION = True

    def validate(self) -> None:
        super().validate()
        for name in ("n_neigh", "n_nm", "candidates", "epoch_neigh"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.search_share < 1:
            raise OptionError(f"search_share must be between 0 and 1, got {self.search_share}")


def random_network(cfg: RandomConfig, data: DataSplits, i: int, length: int, max_macs: int | None = None,
                   max_params: int | None = None, attempt: int = 0):
    """Candidate i: the start net from its own seed, then `length` random morphisms (costing at
    most `max_macs` and `max_params`); `attempt` > 0: another draw of the morphisms (a candidate
    over the latency limit), the same start net."""
    seed = child_seed(cfg.seed, 0, 10_000 + i)
    net = make_start_net(dataclasses.replace(cfg, seed=seed), data)
    if cfg.start is not None:  # the given architecture, from a fresh initialisation drawn from the seed
        net = reinitialized(net, seed)
    if length:
        net, _ = random_morphisms(net, length, rng=retry_seed(seed, attempt), calibrate=data.train_x[: cfg.batch_size],
                                  max_macs=max_macs, max_params=max_params)
    return net


def _within_limits(cfg: RandomConfig, data: DataSplits, i: int, state: dict, limits: Limits, run: RunDir):
    """(candidate i, its costs) within every limit, or (None, None) when every draw was over (an
    `over_limit` event records each such draw); latency figures are kept in state["latency"]."""
    device = data.train_x.device
    macs = limits.macs_cap(state.get("max_macs"))
    cache = LatencyCache(state.setdefault("latency", {})) if limits.max_latency_ms is not None else None
    net, costs, over = limits.first_within(
        lambda attempt: random_network(cfg, data, i, state["length"], macs, limits.max_params, attempt).to(device),
        lambda net: limits.measure(net, cache, device))
    for attempt, _, c in over:
        run.event("over_limit", candidate=i, attempt=attempt, **c)
    return net, costs


def run_random(cfg: RandomConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    executor = executor or LocalExecutor()
    settings = train_settings(cfg, data)
    aug = settings.augment
    device = data.train_x.device
    # candidates are tried in the first search_share of the budget; the rest trains the winner
    search = budget.share(cfg.search_share)
    limits = Limits.of(cfg)
    state = run.load_checkpoint()
    if state is None:
        state = {"tried": [], "best": None, "best_key": None, "length": cfg.n_nm * 5, "epochs": cfg.epoch_neigh}
        if budget.limited:
            state.update(_sized_like_a_climb(cfg, data, budget, settings, executor))
        run.event("random_start", length=state["length"], epochs=state["epochs"])
        run.save_checkpoint(state)
    bar = rep.task("random candidates", None if budget.limited else cfg.candidates)
    width = max(1, int(executor.parallelism))
    i = len(state["tried"])
    while True:
        if not budget.limited and i >= cfg.candidates:
            break
        # a batch takes about as long as one candidate did (`wall` is its batch's)
        if budget.limited and i > 0 and search.left() < _mean_seconds(state):
            break
        began = run.elapsed()
        batch = range(i, i + (width if budget.limited else min(width, cfg.candidates - i)))
        drawn, costs = {}, {}
        for k in batch:
            drawn[k], costs[k] = _within_limits(cfg, data, k, state, limits, run)
        keys = [k for k in batch if drawn[k] is not None]
        first = state["best"] is None and not any(r.get("val_acc") is not None for r in state["tried"])
        jobs = [TrainJob(k, drawn[k], state["epochs"], (0.0, 1.0), child_seed(cfg.seed, 0, 20_000 + k),
                         deadline=search.deadline, required=(first and k == keys[0])) for k in keys]
        outs = {out.key: out for out in executor.map(jobs, (data, settings))} if jobs else {}
        wall = run.elapsed() - began  # building (morphisms, calibration) and scoring too
        for k in batch:  # state["tried"][k] is candidate k's record
            if drawn[k] is None:
                rep.log(f"random: candidate {k} over the limits in {limits.tries()} draws; left out")
                state["tried"].append({"candidate": k, "over_limit": True, "val_acc": None,
                                       "failed": "over the limits"})
                continue
            out = outs[k]
            net = out.net if out.net is not None else drawn[k]  # trained in place locally, a copy from afar
            rec = {"candidate": k, "params": net.num_params(), "epochs": out.epochs, "seconds": out.seconds,
                   "wall": wall, "val_acc": out.val_acc, "val_loss": out.val_loss, "failed": out.failed}
            if limits:  # what the limits were checked against (without them the events are as they were)
                rec.update(costs[k])
            run.event("candidate", **rec)
            state["tried"].append(rec)
            if out.ok and (state["best"] is None or rank_key(rec) < rank_key(state["tried"][state["best_key"]])):
                state["best"], state["best_key"] = net_state(net), k
            rep.update(bar, completed=k + 1, info=f"best val {max(r['val_acc'] or 0 for r in state['tried']):.4f}")
        run.save_checkpoint(state)
        i = batch[-1] + 1
    rep.remove(bar)
    state.setdefault("search_seconds", run.elapsed())
    if state["best"] is None:
        if state["tried"] and all(r.get("over_limit") for r in state["tried"]):
            raise NashError(f"random: every candidate was over the limits in {limits.tries()} draws; raise "
                            "--max-latency-ms or start from a smaller network")
        raise NashError("random: every candidate failed to train (non-finite loss); lower --lr-start")
    best = net_from_state(state["best"]).to(device)
    if "final" not in state:
        epochs = cfg.epoch_final
        if budget.limited:
            timed = state["tried"][state["best_key"]]
            # this very network's measured epoch, with the margin (it trains slower alone than it did
            # as a candidate); the last epoch may be a part of one
            epochs = max(1, budget.epochs_that_fit(max(timed["seconds"] / max(timed["epochs"], 1), 1e-9), whole=False))
        res = sgdr_train(best, data.train_x, data.train_y, epochs, cfg.lr_start, cfg.lr_end, batch_size=cfg.batch_size,
                         aug=aug, mixup_alpha=cfg.mixup, seed=cfg.seed + 1, deadline=budget.deadline)
        if res.failed:
            raise NashError(f"random: the winner's training failed ({res.failed}); lower --lr-start")
        state["final"] = summary(score(best, data)) | {"epochs": res.epochs}
        state["best"] = net_state(best)
        run.event("final", **state["final"])
        run.save_checkpoint(state)
    return finish(run, "random", best, state["final"], None, rep, candidates=len(state["tried"]),
                  search_seconds=state["search_seconds"], sequence_length=state["length"],
                  candidate_epochs=state["epochs"])


def _sized_like_a_climb(cfg: RandomConfig, data: DataSplits, budget: Budget, settings, executor) -> dict:
    """Sequence length, growth cap and epochs per candidate of a climb on this budget: the start
    net timed, the climb's plan made (plan.py, under the same cost limits); a candidate trains as
    long as a step's winner."""
    probe = make_start_net(cfg, data).to(data.train_x.device)
    seconds, _ = timed_epochs(lambda: train_candidate(TrainJob(0, probe, 1, (0.0, 0.0), cfg.seed), (data, settings)))
    n = len(data.train_y)
    climb = ClimbConfig()
    p = plan.make_plan(budget.left(), seconds, probe.macs(), probe.num_params(), 0.0, n_neigh=cfg.n_neigh,
                       iters_per_epoch=n // cfg.batch_size if n > cfg.batch_size else 1, train_images=n,
                       search_share=climb.search_share, growth=plan.GROWTH, parallel=max(1, executor.parallelism),
                       max_params=cfg.max_params, max_macs=cfg.max_macs)
    winner_epochs = sum(e for _, e in p.rungs) or p.first_slice
    return {"length": cfg.n_nm * p.steps, "epochs": max(1, winner_epochs),
            "max_macs": int(probe.macs() * climb.max_growth ** p.steps)}


def _mean_seconds(state: dict) -> float:
    done = [r["wall"] for r in state["tried"] if "wall" in r]  # a candidate over the limits was not trained
    return sum(done) / max(len(done), 1)
