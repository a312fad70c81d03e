"""HillClimber: NASH's Algorithm 1 (Elsken, Metzen, Hutter 2017), resumable and on a budget.

    best = pretrain(start net)
    repeat:  children 1..n_neigh-1 = n_NM random morphisms of best, each SGDR-trained;
             child n_neigh = best itself, SGDR-trained too (so a step never goes downhill);
             best = the child with the highest validation accuracy
    SGDR-train best for epoch_final epochs; report validation and test accuracy.

Every step ends with an atomic checkpoint; a killed run resumes after its last finished step.
With a wall-clock budget the climber times its steps and stops early enough to leave time
for the final training.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field

import torch

from morphisms import Network, random_morphisms, start_net
from morphisms.network import graph_from_json

from .data import DataSplits
from .rundir import RunDir, RunDirError
from .train import evaluate, sgdr_train


@dataclass
class ClimbConfig:
    """Every knob of a climb; defaults are the paper's (reference.md)."""
    data: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    val_fraction: float = 0.1
    n_neigh: int = 8
    n_nm: int = 5
    epoch_neigh: int = 17
    epoch_final: int = 20
    lr_start: float = 0.05
    lr_end: float = 0.0
    pretrain_epochs: int = 20
    steps: int | None = None  # None with no budget: 5, the paper's 12-hour run
    budget: float | None = None  # seconds of wall-clock for the whole run
    seed: int = 0
    batch_size: int = 128
    widths: tuple = (64, 128, 256)
    mixup: float = 0.0
    cutout: int = 0
    start: str | None = None  # a saved Network to start from instead of the NASH start net
    device: str = "auto"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ClimbConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)

    @property
    def max_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return 10**9 if self.budget is not None else 5


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


@dataclass
class Candidate:
    net: Network
    moves: list = field(default_factory=list)
    is_parent: bool = False


class HillClimber:
    def __init__(self, config: ClimbConfig, run: RunDir, data: DataSplits, reporter):
        self.cfg = config
        self.run = run
        self.data = data
        self.rep = reporter
        self.device = data.train_x.device
        self.aug = dataclasses.replace(data.augment, cutout=config.cutout) if config.cutout else data.augment

    # ---------------------------------------------------------------- training one network

    def _train(self, net: Network, epochs: int, seed: int, deadline=None, label=""):
        bar = self.rep.task(label, epochs) if label else None

        def on_epoch(epoch, res):
            self.rep.update(bar, completed=epoch, info=f"loss {res.train_loss:.3f} acc {res.train_acc:.3f}")

        res = sgdr_train(net, self.data.train_x, self.data.train_y, epochs, self.cfg.lr_start, self.cfg.lr_end,
                         batch_size=self.cfg.batch_size, aug=self.aug, mixup_alpha=self.cfg.mixup, seed=seed,
                         on_epoch=on_epoch, deadline=deadline)
        self.rep.remove(bar)
        return res

    def _scores(self, net: Network) -> dict:
        val_acc, val_loss = evaluate(net, self.data.val_x, self.data.val_y)
        return {"val_acc": val_acc, "val_loss": val_loss, "params": net.num_params()}

    # ---------------------------------------------------------------- the algorithm

    def run_climb(self, started: float | None = None) -> dict:
        """Climb (or continue a checkpointed climb) and write the results; `started` is when
        the user's command began (time.time()), the zero of the wall-clock budget."""
        cfg, run = self.cfg, self.run
        t_session = started or time.time()
        state = run.load_checkpoint()
        elapsed_before = state["elapsed"] if state else 0.0
        # a small margin for what runs outside our clock: interpreter start, imports, exit
        margin = min(0.02 * cfg.budget, 10.0) if cfg.budget else 0.0
        deadline = t_session + (cfg.budget - elapsed_before) - margin if cfg.budget else None

        def elapsed():
            return elapsed_before + time.time() - t_session

        if state is None:
            state = self._pretrain(deadline, elapsed)
        else:
            self.rep.log(f"resuming after step {state['step']} ({elapsed_before:.0f}s already spent)")
        best = net_from_state(state["best"]).to(self.device)
        epoch_seconds = state["epoch_seconds"]  # per training epoch of the current best

        # with only a budget the number of steps is unknown: an open-ended bar
        steps_bar = self.rep.task("climb", cfg.max_steps if cfg.steps is not None or not cfg.budget else None)
        self.rep.update(steps_bar, completed=state["step"])
        while state["step"] < cfg.max_steps and not state.get("final"):
            step = state["step"] + 1
            candidates = self._candidates(best, step)
            if deadline is not None:
                costs = [cfg.epoch_neigh * self._epoch_time(c.net, state) for c in candidates]
                left = deadline - time.time() - self._final_reserve(epoch_seconds)
                fit = next((k for k in range(len(costs), 0, -1) if sum(costs[:k]) <= left), 0)
                if fit < 2:  # not even the parent and one child: stepping is over
                    self.rep.log(f"budget: stopping before step {step} (it would take ~{sum(costs):.0f}s, "
                                 f"{max(left, 0):.0f}s left before the final training)")
                    break
                if fit < len(candidates):
                    # the last step uses the time that is left: the parent and the children that fit
                    self.rep.log(f"budget: step {step} with {fit} of {len(candidates)} candidates")
                    candidates = candidates[:fit]
            best, winner = self._step(candidates, step, state,
                                      deadline - self._final_reserve(epoch_seconds) if deadline else None)
            epoch_seconds = winner["seconds"] / max(winner["epochs"], 1)
            state.update(step=step, best=net_state(best), epoch_seconds=epoch_seconds, elapsed=elapsed())
            state["history"].append({"step": step, "val_acc": winner["val_acc"], "params": winner["params"],
                                     "morphisms": winner["morphisms"]})
            run.save_checkpoint(state)
            self.rep.update(steps_bar, completed=step, info=f"best val {winner['val_acc']:.4f}")
            self.rep.log(f"step {step}: best val acc {winner['val_acc']:.4f}, {winner['params']:,} params "
                         f"({'parent kept' if winner['is_parent'] else 'child ' + str(winner['child'])})")
        self.rep.remove(steps_bar)
        if not state.get("final"):
            state = self._final(best, state, deadline, elapsed)
        state["elapsed"] = elapsed()
        return self._write_results(state, net_from_state(state["best"]).to(self.device))

    def _final_reserve(self, epoch_seconds: float) -> float:
        # the final training plus evaluation and writing the report, with a margin
        return self.cfg.epoch_final * epoch_seconds * 1.15 + 5.0

    def _pretrain(self, deadline, elapsed) -> dict:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if cfg.start:
            net = Network.load(cfg.start)
            if net.input_shape != (self.data.in_channels, *self.data.image_size) or net.num_classes != self.data.num_classes:
                raise RunDirError(f"--start {cfg.start}: network takes {net.input_shape} -> {net.num_classes} classes, "
                                  f"the data is {(self.data.in_channels, *self.data.image_size)} -> {self.data.num_classes}")
        else:
            net = start_net(self.data.in_channels, self.data.num_classes, cfg.widths, self.data.image_size)
        net.to(self.device)
        # on a budget, pretraining may take at most a quarter of it
        pre_deadline = None if deadline is None else time.time() + 0.25 * cfg.budget
        res = self._train(net, cfg.pretrain_epochs, cfg.seed, pre_deadline, "pretrain") if cfg.pretrain_epochs else None
        scores = self._scores(net)
        test_acc, _ = evaluate(net, self.data.test_x, self.data.test_y)
        start = {"val_acc": scores["val_acc"], "test_acc": test_acc, "params": scores["params"]}
        epoch_seconds = res.seconds / max(res.epochs, 1) if res else self._time_one_epoch(net)
        self.run.event("start", **start, epochs=res.epochs if res else 0, seconds=res.seconds if res else 0.0)
        self.rep.log(f"start net: val acc {start['val_acc']:.4f}, test acc {test_acc:.4f}, {start['params']:,} params")
        state = {"step": 0, "best": net_state(net), "start": start, "history": [], "epoch_seconds": epoch_seconds,
                 "timings": [[net.macs(), epoch_seconds]], "elapsed": elapsed()}
        self.run.save_checkpoint(state)
        return state

    def _time_one_epoch(self, net: Network) -> float:
        probe = copy.deepcopy(net)
        return self._train(probe, 1, 0).seconds

    def _candidates(self, parent: Network, step: int) -> list[Candidate]:
        """The parent (trained first, so a step cut short by the budget still has it) and
        n_neigh - 1 children of n_NM random morphisms each, calibrated on one training batch."""
        cfg = self.cfg
        calib = self.data.train_x[: cfg.batch_size]
        candidates = [Candidate(copy.deepcopy(parent), [], is_parent=True)]
        for j in range(1, cfg.n_neigh):
            seed = child_seed(cfg.seed, step, j)
            torch.manual_seed(seed)  # new filters and 1x1 convs draw their init from here
            child, applied = random_morphisms(parent, cfg.n_nm, rng=seed, calibrate=calib)
            candidates.append(Candidate(child, applied))
        return candidates

    def _epoch_time(self, net: Network, state: dict) -> float:
        """Predicted seconds per training epoch, from a line fitted to (MACs, seconds) seen so far."""
        obs = state["timings"]
        x = net.macs()
        if len({m for m, _ in obs}) < 2:
            m0, s0 = obs[-1]
            return s0 * max(1.0, x / max(m0, 1))
        n = len(obs)
        mx = sum(m for m, _ in obs) / n
        my = sum(s for _, s in obs) / n
        b = sum((m - mx) * (s - my) for m, s in obs) / max(sum((m - mx) ** 2 for m, _ in obs), 1e-12)
        b = max(b, 0.0)
        return max(my + b * (x - mx), min(s for _, s in obs)) * 1.1

    def _step(self, candidates: list[Candidate], step: int, state: dict, deadline):
        """Train every candidate; return (best net, its record). A candidate cut off by the
        deadline is left out of the comparison (the parent, trained first, always competes)."""
        cfg = self.cfg
        bar = self.rep.task(f"step {step}", len(candidates))
        records = []
        for j, cand in enumerate(candidates):
            if records and deadline is not None and time.time() > deadline:
                self.rep.log(f"budget: step {step} ends after {j} of {len(candidates)} candidates")
                break
            res = self._train(cand.net, cfg.epoch_neigh, child_seed(cfg.seed, step, j) + 7, deadline,
                              label=f"  candidate {j + 1}/{len(candidates)}")
            if res.epochs:
                state["timings"].append([cand.net.macs(), res.seconds / res.epochs])
            if res.failed is None and res.epochs < cfg.epoch_neigh and j > 0:
                self.rep.log(f"budget: candidate {j} cut off after {res.epochs} epochs; left out")
                break
            rec = {"step": step, "child": j, "is_parent": cand.is_parent,
                   "morphisms": [m.to_json() for m in cand.moves], "params": cand.net.num_params(),
                   "train_acc": res.train_acc, "train_loss": res.train_loss, "epochs": res.epochs,
                   "seconds": res.seconds, "failed": res.failed}
            if res.failed is None:
                rec.update({k: v for k, v in self._scores(cand.net).items() if k != "params"})
            else:
                rec.update(val_acc=None, val_loss=None)
                self.rep.log(f"step {step} child {j}: {res.failed}; dropped")
            self.run.event("child", **rec)
            records.append(rec)
            self.rep.update(bar, advance=1, info=f"val {rec['val_acc'] if rec['val_acc'] is not None else 'failed'}")
        self.rep.remove(bar)
        # highest validation accuracy; on a tie (common on small validation sets) the lower
        # validation loss, then the earlier candidate
        ok = [(r["val_acc"], -r["val_loss"], -r["child"]) for r in records if r["val_acc"] is not None]
        if not ok:
            raise RunDirError(f"step {step}: every candidate failed to train (non-finite loss); lower --lr-start")
        best_j = -max(ok)[2]
        winner = records[best_j]
        self.run.event("step", step=step, best_child=best_j, val_acc=winner["val_acc"], params=winner["params"],
                       kept_parent=winner["is_parent"])
        return candidates[best_j].net, winner

    def _final(self, best: Network, state: dict, deadline, elapsed) -> dict:
        cfg = self.cfg
        epochs = cfg.epoch_final
        if deadline is not None:
            fit = int((deadline - time.time() - 5.0) / max(state["epoch_seconds"] * 1.05, 1e-6))
            if fit < epochs:
                self.rep.log(f"budget: final training shortened to {max(fit, 1)} of {epochs} epochs")
                epochs = max(fit, 1)
        res = self._train(best, epochs, cfg.seed + 1, deadline, "final training") if epochs else None
        scores = self._scores(best)
        test_acc, _ = evaluate(best, self.data.test_x, self.data.test_y)
        final = {"val_acc": scores["val_acc"], "test_acc": test_acc, "params": scores["params"],
                 "epochs": res.epochs if res else 0}
        self.run.event("final", **final, seconds=res.seconds if res else 0.0)
        self.rep.log(f"final net: val acc {final['val_acc']:.4f}, test acc {test_acc:.4f}, {final['params']:,} params")
        state.update(best=net_state(best), final=final, elapsed=elapsed())
        self.run.save_checkpoint(state)
        return state

    def _write_results(self, state: dict, best: Network) -> dict:
        from .report import write_climb_report
        best.save(self.run.path / "best")
        results = {"start": state["start"], "final": {k: state["final"][k] for k in ("val_acc", "test_acc", "params")},
                   "steps": state["step"], "history": state["history"], "seconds": state["elapsed"],
                   "final_epochs": state["final"]["epochs"]}
        self.run.write_json("results.json", results)
        write_climb_report(self.run, best, self.rep)
        return results
