"""`pareto`: LEMONADE (Elsken, Metzen, Hutter 2019) in this project's terms: a front of networks
trading validation error against a cost (parameters or MACs), grown by exact morphisms and
shrunk by approximate ones, every child inheriting its parent's weights.

    front = {the start net, trained start_epochs}
    each generation:
        proposals: a parent drawn from the front with probability inversely proportional to
                   the density of log cost around it (a kernel density over the front: sparse
                   stretches of the cost axis first); its child by `n_nm` exact morphisms
                   (random_morphisms) or, with probability approximate_share, one shrinking
                   move (random_shrink)
        children:  `children` of the proposals, drawn again inversely to the front's density
                   at their cost (a child's cost is known before it trains: LEMONADE's cheap
                   objective decides where the expensive training goes)
        each approximate child recovers (recovery.py: distilled toward its parent), then every
        child trains child_epochs epochs of a cosine cycle through the executor
        front = the non-dominated networks among everything evaluated so far

With a budget the start net trains for start_share of it and generations run while one fits:
each generation's work (children x epochs) is sized from the time left, at most
generation_share of the budget, from epoch times measured so far (a line over MACs). Without
one, `generations` generations of `children` children.

The run directory holds what every searcher writes (best/ is the front member with the best
validation accuracy; results.json's `final` is that member, plus `front`), and front.json,
pareto.png (error against cost, earlier fronts lighter) and each front member as front/<id>/.
Every generation ends with a checkpoint (every network evaluated, the front's weights, the
timings); every draw comes from a seed that is a function of (seed, generation, proposal), so
a resumed run draws what an uninterrupted one drew, and parents are always rebuilt from the
checkpointed state, so on a CPU the two are equal, weights included. Child events are the
climb's (`step` is the generation), so climb.png shows them per generation.
"""
from __future__ import annotations

import copy
import math
import random
import shutil
import statistics
from dataclasses import dataclass, field

from morphisms import LatencyCache, MorphismError, Network, random_morphisms
from morphisms.shrink import random_shrink

from ..data import DataSplits
from ..errors import NashError, OptionError
from ..rundir import RunDir
from ..train import evaluate
from .budget import REPORT_EPOCHS, Budget, predict_epoch, timed_epochs
from .executors import LocalExecutor
from .jobs import TrainJob, train_candidate
from .limits import CostLimitsConfig, Limits
from .kit import child_seed, finish, make_start_net, net_from_state, net_state, rank_key, score, summary, \
    train_settings
from .recovery import output_distance, recover

# params and MACs are counted from the architecture (exact, free, the same on every machine);
# latency is measured once per architecture on --latency-device and kept in the checkpoint
COSTS = ("params", "macs", "latency_ms")
COST_LABELS = {"params": "parameters", "macs": "MACs per image", "latency_ms": "latency (ms per batch)"}
DEFAULT_GENERATIONS = 10  # without a budget and without --generations
# the kernel density's bandwidth over log cost: Scott's rule, but never narrower than this (a
# front of near-equal costs would otherwise make every density a spike), and this wide where
# the rule has nothing to go on (one member, or all of one cost): about a factor 1.6 in cost
MIN_BANDWIDTH, LONE_BANDWIDTH = 0.1, 0.5
FRONT_DIR, FRONT_JSON = "front", "front.json"
# a small data set's half epoch of recovery is raised to this many steps. Measured on digits (4
# trained parents, each of their 40 applicable shrinks, lr 0.05): after 10 or 20 steps a few
# children (a separable first conv, whose BN then sees other statistics) were farther from their
# parent's outputs than right after the move; after 40 every one was within 0.3x of its distance
MIN_RECOVERY_STEPS = 40


@dataclass
class ParetoConfig(CostLimitsConfig):
    """A LEMONADE search; the cost limits (--max-params, ...) bound every network it trains."""
    cost: str = field(default="params", metadata={"choices": COSTS, "help": (
        "The cost the front trades against validation error: parameters, multiply-accumulates per image, or "
        "milliseconds per batch of --latency-batch on --latency-device (measured once per architecture).")})
    generations: int | None = field(default=None, metadata={"help": (
        f"Generations (default: while the budget lasts; {DEFAULT_GENERATIONS} without one). A resume may raise it.")})
    children: int = field(default=8, metadata={"help": "Children trained per generation (fewer where the budget "
                                                       "is short)."})
    proposals: int = field(default=16, metadata={"help": "Children made (untrained) per generation, of which "
                                                         "--children are drawn where the front is sparse."})
    n_nm: int = field(default=2, metadata={"help": "Exact morphisms per exact child."})
    approximate_share: float = field(default=0.5, metadata={"help": "Share of the children made by a shrinking "
                                                                    "move (then recovered) instead of morphisms."})
    child_epochs: int = field(default=4, metadata={"help": "Epochs each child trains (one cosine cycle)."})
    start_epochs: int = field(default=10, metadata={"help": "Epochs the start net trains without a budget."})
    recovery_epochs: float = field(default=0.5, metadata={"help": "Epochs of distillation toward the parent after "
                                                                  "a shrinking move (at least 40 steps; 0: none)."})
    start_share: float = field(default=0.1, metadata={"help": "With a budget: the share that trains the start "
                                                              "net."})
    generation_share: float = field(default=0.1, metadata={"help": "With a budget: one generation takes at most "
                                                                   "this share of it."})

    RESUME_MAY_CHANGE = ("budget", "device", "generations")
    SELECTS_ON_VALIDATION = True

    def validate(self) -> None:
        super().validate()
        if self.cost not in COSTS:
            raise OptionError(f"unknown cost {self.cost!r} (known: {', '.join(COSTS)})")
        for name in ("children", "n_nm", "child_epochs"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("start_epochs", "recovery_epochs"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.proposals < self.children:
            raise OptionError(f"proposals ({self.proposals}) must be at least children ({self.children}): the "
                              f"children are drawn from the proposals")
        if self.generations is not None and self.generations < 0:
            raise OptionError(f"generations must be at least 0, got {self.generations}")
        if not 0 <= self.approximate_share <= 1:
            raise OptionError(f"approximate_share must be in [0, 1], got {self.approximate_share}")
        if not 0 < self.start_share < 1 or not 0 < self.generation_share <= 1:
            raise OptionError(f"start_share must be in (0, 1) and generation_share in (0, 1], got "
                              f"{self.start_share} and {self.generation_share}")


# ------------------------------------------------------------------------------ the front

def non_dominated(points) -> list:
    """The keys of `points` [(key, error, cost), ...] that no other point dominates: one is
    dominated by another that is no worse in both and better in one, or equal in both and
    listed earlier (of twins, the first stays). In the order given."""
    points = list(points)
    keep = []
    for i, (key, err, cost) in enumerate(points):
        beaten = any((e <= err and c <= cost and (e < err or c < cost)) or (e == err and c == cost and j < i)
                     for j, (_, e, c) in enumerate(points) if j != i)
        if not beaten:
            keep.append(key)
    return keep


def inverse_density(at, of) -> list[float]:
    """For each cost in `at`, 1 / (a Gaussian kernel density over the log costs `of` there):
    large where the front is sparse. Scott's bandwidth, at least MIN_BANDWIDTH."""
    logs = [math.log(max(c, 1e-9)) for c in of]
    n = len(logs)
    spread = statistics.pstdev(logs) if n > 1 else 0.0
    h = max(1.06 * spread * n ** -0.2, MIN_BANDWIDTH) if spread > 0 else LONE_BANDWIDTH
    out = []
    for c in at:
        x = math.log(max(c, 1e-9))
        density = sum(math.exp(-0.5 * ((x - l) / h) ** 2) for l in logs) / (n * h * math.sqrt(2 * math.pi))
        out.append(1.0 / max(density, 1e-300))
    return out


def draw_without_replacement(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """k indices, each drawn with probability proportional to its weight among those left."""
    left = list(range(len(weights)))
    picked = []
    for _ in range(min(k, len(left))):
        i = rng.choices(range(len(left)), weights=[weights[j] for j in left])[0]
        picked.append(left.pop(i))
    return picked


@dataclass
class Proposal:
    parent: int  # the parent's id
    family: str  # "exact" or "approximate"
    moves: list  # the morphisms or the shrink, as JSON
    net: Network
    costs: dict  # params, macs (and latency_ms where measured)
    recovery: dict | None = None


# ------------------------------------------------------------------------------ the search

class ParetoSearch:
    def __init__(self, cfg: ParetoConfig, data: DataSplits, run: RunDir, rep, executor=None):
        self.cfg, self.data, self.run, self.rep = cfg, data, run, rep
        self.executor = executor or LocalExecutor()
        self.parallelism = max(1, int(getattr(self.executor, "parallelism", 1)))
        self.settings = train_settings(cfg, data)
        self.device = data.train_x.device
        self.limits = Limits.of(cfg)
        self.budget = Budget()

    def cost(self, rec: dict) -> float:
        return rec[self.cfg.cost]

    def measure(self, net: Network, state: dict) -> dict:
        """{"params", "macs"} of `net`, and "latency_ms" where it is the cost or limited: measured
        once per architecture, the figures kept in the checkpoint (state["latency"]), so a
        resumed run sees the numbers the first session measured."""
        out = {"params": net.num_params(), "macs": net.macs()}
        if self.cfg.cost == "latency_ms" or self.limits.max_latency_ms is not None:
            cache = LatencyCache(state.setdefault("latency", {}))
            out["latency_ms"] = cache.latency(net, self.limits.device(self.device), self.cfg.latency_batch)
        return out

    def search(self, budget: Budget) -> dict:
        cfg, run = self.cfg, self.run
        self.budget = budget
        state = run.load_checkpoint()
        if state is None:
            state = self._start()
        else:
            self.rep.log(f"resuming after generation {state['generation']} ({run.spent_before:.0f}s already spent)")
        limit = cfg.generations if cfg.generations is not None else \
            (math.inf if budget.limited else DEFAULT_GENERATIONS)
        bar = self.rep.task("pareto", None if math.isinf(limit) else limit)
        self.rep.update(bar, completed=state["generation"])
        while state["generation"] < limit:
            if not self._generation(state["generation"] + 1, state):
                break
            self.rep.update(bar, completed=state["generation"], info=f"front {len(state['front'])}")
        self.rep.remove(bar)
        return self._finish(state)

    # ---------------------------------------------------------------- the start net

    def _start(self) -> dict:
        cfg, budget = self.cfg, self.budget
        net = make_start_net(cfg, self.data).to(self.device)
        timings, epochs = [], 0
        if budget.limited:
            # an epoch or two at lr_start time the net (as the climb does); the rest of the start
            # share is one cosine cycle
            seconds, probes = timed_epochs(lambda: self._train(net, 1, (0.0, 0.0), cfg.seed, required=True))
            timings.append([net.macs(), seconds])
            epochs = len(probes)
            more = budget.share(cfg.start_share).epochs_that_fit(seconds)
            if more >= 1:
                out = self._train(net, more, (0.0, 1.0), cfg.seed + 1, deadline=budget.deadline)
                epochs += out.epochs
        elif cfg.start_epochs:
            out = self._train(net, cfg.start_epochs, (0.0, 1.0), cfg.seed, required=True)
            if out.epochs:
                timings.append([net.macs(), out.seconds / out.epochs])
            epochs = out.epochs
        rec = score(net, self.data)
        if not math.isfinite(rec["val_loss"]):
            raise NashError("pareto: the start net's training diverged (non-finite loss); lower --lr-start")
        state = {"generation": 0, "timings": timings, "overheads": [], "start": summary(rec), "search_seconds": 0.0}
        costs = self.measure(net, state)
        start = {"id": 0, "generation": 0, "family": "start", "parent": None, "moves": [], **costs,
                 "val_acc": rec["val_acc"], "val_loss": rec["val_loss"], "epochs": epochs}
        self.run.event("start", **{**rec, **costs}, epochs=epochs)
        self.rep.log(f"start net: val acc {rec['val_acc']:.4f}, {costs['params']:,} params, {costs['macs']:,} MACs")
        if not timings:  # no epoch trained (start_epochs 0): time one on a copy, for the budget's arithmetic
            out = self._train(copy.deepcopy(net), 1, (0.0, 0.0), cfg.seed, required=True)
            timings.append([net.macs(), out.seconds])
        state.update(records=[start], front=[0], nets={"0": net_state(net)})
        self.run.save_checkpoint(state)
        return state

    def _train(self, net, epochs, cycle, seed, deadline=None, required=False):
        out = train_candidate(TrainJob(0, net, epochs, cycle, seed, deadline=deadline, required=required),
                              (self.data, self.settings))
        if out.failed and required:
            raise NashError(f"pareto: the start net's training failed ({out.failed}); lower --lr-start")
        return out

    # ---------------------------------------------------------------- one generation

    def _generation(self, g: int, state: dict) -> bool:
        """Run generation g and checkpoint it; False where none fits in the budget (nothing done)."""
        cfg, run = self.cfg, self.run
        began = run.elapsed()
        records = {r["id"]: r for r in state["records"]}
        front = [records[i] for i in state["front"]]
        # parents from the checkpointed state, never from the nets in memory: an uninterrupted
        # run then starts each generation exactly as a resumed one does
        parents = {r["id"]: net_from_state(state["nets"][str(r["id"])]).to(self.device) for r in front}
        proposals = self._propose(g, front, parents, state)
        if not proposals:
            self.rep.log(f"generation {g}: every child drawn is over a cost limit; the search ends")
            return False
        chosen, epochs = self._fit(g, proposals, front, state)
        if not chosen:
            self.rep.log(f"generation {g}: no child fits in the time left; the search ends")
            return False
        recovery_seconds = 0.0
        for j in chosen:  # in this process, before dispatch: the parent is here, and recovery is short
            p = proposals[j]
            if p.family == "approximate" and cfg.recovery_epochs:
                recovery_seconds += self._recover(p, parents[p.parent], g, j)
        next_id = max(records) + 1
        ids = {j: next_id + k for k, j in enumerate(chosen)}
        jobs = [TrainJob(ids[j], proposals[j].net, epochs, (0.0, 1.0), child_seed(cfg.seed, g, 5_000 + j),
                         deadline=self.budget.deadline) for j in chosen]
        outs = self.executor.map(jobs, (self.data, self.settings))
        new = []
        for j, out in zip(chosen, outs):
            p = proposals[j]
            net = out.net if out.net is not None else p.net  # trained in place locally, a copy from afar
            rec = {"id": ids[j], "generation": g, "family": p.family, "parent": p.parent, "moves": p.moves, **p.costs,
                   "val_acc": out.val_acc, "val_loss": out.val_loss, "epochs": out.epochs, "failed": out.failed}
            run.event("child", step=g, id=rec["id"], parent=p.parent, family=p.family, morphisms=p.moves, **p.costs,
                      epochs=out.epochs, seconds=out.seconds, train_acc=out.train_acc, train_loss=out.train_loss,
                      val_acc=out.val_acc, val_loss=out.val_loss, failed=out.failed, recovery=p.recovery)
            state["records"].append(rec)
            if out.epochs:
                state["timings"].append([rec["macs"], out.seconds / out.epochs])
            # a finite training loss can still leave a validation loss that compares as nothing
            if out.ok and math.isfinite(out.val_loss):
                new.append((rec, net))
            else:
                self.rep.log(f"generation {g} child {rec['id']}: {out.failed or 'non-finite validation loss'}; "
                             f"left out")
        # domination is transitive: what the old front dominated stays dominated, so the front of
        # everything evaluated is the old front's members and the new children, filtered
        pool = sorted(front + [r for r, _ in new], key=lambda r: r["id"])
        kept = non_dominated((r["id"], 1.0 - r["val_acc"], self.cost(r)) for r in pool)
        nets = {str(i): state["nets"][str(i)] for i in kept if str(i) in state["nets"]}
        nets.update({str(r["id"]): net_state(n) for r, n in new if r["id"] in kept})
        by_id = {r["id"]: r for r in pool}
        state.update(generation=g, front=sorted(kept, key=lambda i: (self.cost(by_id[i]), i)), nets=nets,
                     search_seconds=run.elapsed())
        trained = sum(o.seconds for o in outs) / self.parallelism
        state["overheads"].append(max(0.0, run.elapsed() - began - trained - recovery_seconds))
        best = max(r["val_acc"] for r in pool)
        run.event("generation", generation=g, children=len(chosen), epochs=epochs, front=state["front"],
                  evaluated=len(state["records"]), best_val=best)
        run.save_checkpoint(state)
        self.rep.log(f"generation {g}: {len(new)} of {len(chosen)} children scored ({epochs} "
                     f"epoch{'s' if epochs != 1 else ''} each), front of {len(kept)}, best val acc {best:.4f}")
        return True

    def _propose(self, g: int, front: list, parents: dict, state: dict) -> list[Proposal]:
        """cfg.proposals children of parents drawn where the front is sparse, each a pure
        function of (parent, seed); a child over a cost limit is left out (morphisms that would
        exceed a count are not drawn at all)."""
        cfg, limits = self.cfg, self.limits
        rng = random.Random(child_seed(cfg.seed, g, 0))
        weights = inverse_density([self.cost(r) for r in front], [self.cost(r) for r in front])
        calib = self.data.train_x[: cfg.batch_size]
        out = []
        for j in range(cfg.proposals):
            parent = rng.choices(front, weights=weights)[0]["id"]
            approximate = rng.random() < cfg.approximate_share
            seed = child_seed(cfg.seed, g, 1 + j)
            made = None
            if approximate:
                try:
                    net, shrink = random_shrink(parents[parent], rng=seed)
                    made = ("approximate", [shrink.to_json()], net)
                except MorphismError:  # nothing of the kind applies to this parent: a morphism instead
                    pass
            if made is None:
                net, applied = random_morphisms(parents[parent], cfg.n_nm, rng=seed, calibrate=calib,
                                                max_macs=limits.max_macs, max_params=limits.max_params)
                made = ("exact", [m.to_json() for m in applied], net)
            costs = self.measure(made[2], state)
            if not limits.over(costs):
                out.append(Proposal(parent, made[0], made[1], made[2], costs))
        return out

    def _fit(self, g: int, proposals: list[Proposal], front: list, state: dict) -> tuple[list[int], int]:
        """(the proposals to train, epochs each): `children` drawn inversely to the front's
        density at their cost; on a budget, the epochs and then the children cut until the
        generation fits in its share and in the time left."""
        cfg, budget = self.cfg, self.budget
        rng = random.Random(child_seed(cfg.seed, g, 9_999))
        weights = inverse_density([self.cost(p.costs) for p in proposals], [self.cost(r) for r in front])
        chosen = sorted(draw_without_replacement(rng, weights, cfg.children))
        if not budget.limited:
            return chosen, cfg.child_epochs
        timings = state["timings"]
        epoch = {j: predict_epoch(timings, proposals[j].costs["macs"]) for j in chosen}
        recovery = self._recovery_steps() / self._steps_per_epoch()  # in epochs: a step costs about a training step
        overhead = statistics.median(state["overheads"][-3:]) if state["overheads"] else 0.0

        def seconds(js, epochs):
            work = sum(epoch[j] * (epochs + (recovery if proposals[j].family == "approximate" else 0)) for j in js)
            return work / self.parallelism + overhead

        # kept for the end: each front member's test score and save, and the report
        ends = [predict_epoch(timings, r["macs"]) for r in front]
        left = budget.left() - budget.reserve(max(ends)) - REPORT_EPOCHS * sum(ends)
        room = min(left, cfg.generation_share * (budget.deadline - budget.origin))
        epochs = cfg.child_epochs
        while epochs > 1 and seconds(chosen, epochs) > room:
            epochs -= 1
        while len(chosen) > 1 and seconds(chosen, epochs) > room:
            chosen.pop()
        if not chosen or seconds(chosen, epochs) > left:
            return [], 0
        return chosen, epochs

    def _steps_per_epoch(self) -> int:
        n = len(self.data.train_y)
        return n // self.cfg.batch_size if n > self.cfg.batch_size else 1

    def _recovery_steps(self) -> int:
        if not self.cfg.recovery_epochs:
            return 0
        return max(MIN_RECOVERY_STEPS, round(self.cfg.recovery_epochs * self._steps_per_epoch()))

    def _recover(self, p: Proposal, parent: Network, g: int, j: int) -> float:
        """Recover an approximate child in place; its output distance to the parent (on a
        validation batch) before and after goes into its event. Returns the seconds spent."""
        cfg, data = self.cfg, self.data
        probe = data.val_x[: cfg.batch_size]
        before = output_distance(parent, p.net, probe)
        r = recover(p.net, parent, data.train_x, self._recovery_steps(), cfg.lr_start, cfg.batch_size,
                    seed=child_seed(cfg.seed, g, 7_000 + j), aug=self.settings.augment)
        p.recovery = {"steps": r.steps, "distance_before": before,
                      "distance_after": output_distance(parent, p.net, probe), "failed": r.failed}
        return r.seconds

    # ---------------------------------------------------------------- the end

    def _finish(self, state: dict) -> dict:
        """front/<id>/, front.json, pareto.png, best/ and results.json from the checkpointed state
        (so a finished run that is resumed with more generations writes them afresh)."""
        run, data = self.run, self.data
        records = {r["id"]: r for r in state["records"]}
        members, nets = [], {}
        for i in state["front"]:
            net = net_from_state(state["nets"][str(i)]).to(self.device)
            test_acc, _ = evaluate(net, data.test_x, data.test_y)
            r = records[i]
            nets[i] = net
            members.append({"id": i, "generation": r["generation"], "family": r["family"], "parent": r["parent"],
                            "val_acc": r["val_acc"], "test_acc": test_acc,
                            **{k: r[k] for k in COSTS if k in r}, "path": f"{FRONT_DIR}/{i}"})
            net.save(run.path / FRONT_DIR / str(i))
        for old in (run.path / FRONT_DIR).iterdir():  # members an earlier finish saved that have left the front
            if old.is_dir() and old.name not in {str(i) for i in state["front"]}:
                shutil.rmtree(old)
        doc = {"cost": self.cfg.cost, "generations": state["generation"], "evaluated": len(state["records"]),
               "members": members}
        run.write_json(FRONT_JSON, doc)
        plot_front(run, self.cfg.cost, self.rep)
        best = min(members, key=lambda m: rank_key({**m, "val_loss": records[m["id"]]["val_loss"], "key": m["id"]}))
        final = {k: best[k] for k in ("val_acc", "test_acc", "params")}
        return finish(run, "pareto", nets[best["id"]], final, state["start"], self.rep, front=members,
                      cost=self.cfg.cost, generations=state["generation"], evaluated=len(state["records"]),
                      best_id=best["id"], search_seconds=state["search_seconds"])


# ------------------------------------------------------------------------------ reading a run

def evaluated_from_events(run: RunDir) -> list[dict]:
    """Every network a pareto run scored, from its events: {id, generation, val_acc, and its
    costs: params, macs (latency_ms where measured)}, the start net's id 0."""
    out = []
    for e in run.events():
        costs = {k: e[k] for k in COSTS if k in e}
        if e["event"] == "start":
            out.append({"id": 0, "generation": 0, "val_acc": e["val_acc"], **costs})
        elif e["event"] == "child" and not e.get("failed") and e.get("val_acc") is not None \
                and math.isfinite(e.get("val_loss", math.nan)):
            out.append({"id": e["id"], "generation": e["step"], "val_acc": e["val_acc"], **costs})
    return out


def fronts_over_time(evaluated: list[dict], cost: str) -> list[list[dict]]:
    """The front after each generation (0: the start net alone), from the evaluated networks."""
    last = max((e["generation"] for e in evaluated), default=0)
    fronts = []
    for g in range(last + 1):
        pool = sorted((e for e in evaluated if e["generation"] <= g), key=lambda e: e["id"])
        keep = set(non_dominated((e["id"], 1.0 - e["val_acc"], e[cost]) for e in pool))
        fronts.append(sorted((e for e in pool if e["id"] in keep), key=lambda e: e[cost]))
    return fronts


def plot_front(run: RunDir, cost: str, rep=None) -> None:
    from ..report import front_figure, save_figure
    evaluated = evaluated_from_events(run)
    try:
        fig = front_figure([(e[cost], 1.0 - e["val_acc"]) for e in evaluated],
                           [[(e[cost], 1.0 - e["val_acc"]) for e in f] for f in fronts_over_time(evaluated, cost)],
                           COST_LABELS[cost])
        save_figure(fig, run.path / "pareto.png")
    except ImportError as e:  # as the run report: a broken matplotlib should not lose the run
        if rep:
            rep.log(f"pareto.png skipped: {e}")


def front_member(run_dir, max_params: int | None = None, max_macs: int | None = None) -> dict:
    """The member of a pareto run's front with the best validation accuracy among those within
    the limits (front.json), its `path` made absolute; NashError naming the cheapest where none
    fits."""
    run = RunDir.open(run_dir)
    doc = run.read_json(FRONT_JSON)
    members = doc["members"]
    fits = [m for m in members if (max_params is None or m["params"] <= max_params)
            and (max_macs is None or m["macs"] <= max_macs)]
    if not fits:
        limits = " and ".join(f"at most {v:,} {k}" for k, v in (("params", max_params), ("MACs", max_macs))
                              if v is not None)
        cheapest = min(members, key=lambda m: (m["params"], m["macs"]))
        raise OptionError(f"no network on {run.path}'s front has {limits} (its smallest: {cheapest['params']:,} "
                          f"params, {cheapest['macs']:,} MACs)")
    best = max(fits, key=lambda m: (m["val_acc"], -m["params"], -m["id"]))
    return {**best, "path": str(run.path / best["path"])}


def run_pareto(cfg: ParetoConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    """The `pareto` searcher of the registry."""
    return ParetoSearch(cfg, data, run, rep, executor).search(budget)
