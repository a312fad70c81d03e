"""`darts`: differentiable search (DARTS family) plus training of the derived network.

With a budget, the search gets the first `search_share` of it as its own deadline (resumable,
epoch by epoch, an epoch cut short where it does not fit); the derived network then trains for
one cosine cycle fitted into what is left, re-planned after every epoch (`train_within`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import ClassVar

from ..darts.config import SearchSettings
from ..darts.derived import DerivedNet
from ..darts.derived import derived_size as space_default
from ..data import DataSplits
from ..draw import draw_genotype, draw_network, to_dot
from ..errors import OptionError
from ..rundir import RunDir, atomic_write_bytes
from ..train import TrainResult
from .budget import Budget
from .contract import SearchConfig, write_results


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class DartsConfig(SearchSettings, SearchConfig):
    """The search's settings (nash.darts.config.SearchSettings, inherited: one default and one
    check each), the contract's (data, seed, budget, device) and how the derived network trains."""
    search_share: float = _option(0.5, "With a budget: the share of it given to the search; the rest trains the "
                                       "derived network.")
    train_epochs: int = _option(600, "Epochs to train the derived network (with a budget: at most).")
    train_channels: int | None = _option(None, "Derived network's channels (default 36 for 32x32 inputs and "
                                               "larger, else 16; nb201: 16).")
    train_layers: int | None = _option(None, "Derived network's cells (default 20 for 32x32 inputs and larger, "
                                             "else 8; nb201: 5 per stage).")
    train_batch_size: int = _option(96, "Derived network's batch size.")
    auxiliary: bool | None = _option(None, "Derived network's auxiliary head (default: on for 32x32 inputs).")
    drop_path: float = _option(0.2, "Derived network's drop-path probability, ramped up over its training.")
    cutout: int | None = _option(None, "Cutout size for training the derived network (default 16 for 32x32 "
                                       "inputs, else off).")

    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = (*SearchConfig.RESUME_MAY_CHANGE,
                                                    *SearchSettings.RESUME_MAY_CHANGE, "train_epochs")

    def validate(self) -> None:
        super().validate()  # the search's settings, then the contract's
        if not (isinstance(self.search_share, (int, float)) and 0 < self.search_share < 1):
            raise OptionError(f"search_share must be between 0 and 1, got {self.search_share}")
        for name in ("train_epochs", "train_batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise OptionError(f"{name} must be an integer of at least 1, got {value!r}")


def derived_size(cfg: DartsConfig, data: DataSplits) -> tuple[int, int]:
    """(channels, cells) of the derived network: as given, else the space's default for this
    input size."""
    channels, layers = space_default(cfg.space, tuple(data.image_size))
    return cfg.train_channels or channels, cfg.train_layers or layers


def planning_seconds(trained: list[TrainResult]) -> float:
    """Seconds per epoch to plan the rest of a cycle with: the median epoch since the first
    (which carries a process's one-off costs), so that one slow epoch (another job's burst on a
    shared CPU) does not end the cycle early; the first epoch's while there is no other."""
    seconds = [r.seconds for r in trained]
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]


MIN_LAST_EPOCH = 0.05  # a last part-epoch shorter than this is not worth its pass over the data


def train_within(derived: DerivedNet, budget: Budget, most: int, on_epoch=None) -> list[TrainResult]:
    """Train `derived` for one cosine cycle of at most `most` epochs that ends by the budget's
    deadline, with its reserve for evaluating and reporting kept; returns the epochs' results.

    The first epoch, at the starting learning rate, times the network, and counts: on a small
    budget one epoch is a large part of it. After every epoch the rest of the cycle is re-planned
    from the time left and the epochs' times so far (`planning_seconds`), so the cycle still
    ends at the deadline where epochs grow slower (other jobs on a shared CPU) or faster (the
    first epoch of a process carries one-off costs)."""
    trained, u = [], 0.0
    # where the search left no room at all, the one epoch that always runs is the whole cycle
    only_one = most == 1 or budget.left() <= budget.reserve(0.0)
    while u < 1.0 and len(trained) < most:
        if not trained:
            cycle = (0.0, 1.0) if only_one else (0.0, 0.0)
        else:
            # epochs that fit, a fraction included: the last epoch may be a part of one, so the
            # cycle ends with the time instead of a whole epoch early
            left = min(budget.epochs_that_fit(planning_seconds(trained), whole=False), most - len(trained))
            if left < MIN_LAST_EPOCH:
                break
            cycle = (u, u + (1.0 - u) * min(1.0, left) / left)
        done = len(trained)
        epochs = 1 if not trained or left >= 1 else left
        res = derived.train(epochs, cycle, trained[-1].opt_state if trained else None, seed=derived.seed + done,
                            on_epoch=None if on_epoch is None else lambda e, r: on_epoch(done + e, r))
        trained.append(res)
        u = cycle[1]
        if res.failed or res.epochs < 1:
            break
    return trained


def draw(run: RunDir, genotype, net, rep) -> None:
    """cells.png, architecture.png (up to 400 nodes) and architecture.dot."""
    try:
        draw_genotype(genotype, run.path / "cells.png")
        if len(net.graph) <= 400:  # past that a drawing of every node is slow and unreadable
            draw_network(net, run.path / "architecture.png")
    except (ImportError, TypeError, ValueError) as e:  # a drawing never loses a run
        rep.log(f"drawing skipped: {e}")
    atomic_write_bytes(run.path / "architecture.dot", to_dot(net).encode())


def train_and_report(run: RunDir, genotype, data: DataSplits, cfg, rep, budget: Budget) -> dict:
    """Lower, train and evaluate a genotype within `budget` (`train_within`); write best/,
    drawings; return the `final` dict and the details. Shared by the darts searcher and `nash
    train-genotype`."""
    channels, layers = derived_size(cfg, data)
    derived = DerivedNet(genotype, data, channels=channels, layers=layers, batch_size=cfg.train_batch_size,
                         auxiliary=cfg.auxiliary, seed=cfg.seed, drop_path=cfg.drop_path, cutout=cfg.cutout)
    # drawn before training (a drawing shows the structure, which training leaves as it is): on a
    # busy CPU drawing takes seconds, which the cycle's plan then counts instead of the reserve
    draw(run, genotype, derived.net, rep)
    bar = rep.task("train derived net", None if budget.limited else cfg.train_epochs)

    def on_epoch(e, r):
        rep.update(bar, completed=e, info=f"acc {r.train_acc:.3f}")
        run.event("train_epoch", epoch=e, train_acc=r.train_acc, train_loss=r.train_loss)

    if budget.limited:
        trained = train_within(derived, budget, cfg.train_epochs, on_epoch)
    else:
        trained = [derived.train(cfg.train_epochs, on_epoch=on_epoch)]
    rep.remove(bar)
    res = derived.result(trained)
    if res["epochs"] < cfg.train_epochs:
        rep.log(f"budget: the derived network trained for {res['epochs']} of {cfg.train_epochs} epochs")
    net = derived.net
    net.save(run.path / "best")
    final = {"val_acc": res.get("val_acc"), "test_acc": res["test_acc"], "params": res["params_without_aux"]}
    run.event("final", **final, epochs=res["epochs"], seconds=res["seconds"])
    details = {"genotype": res["genotype"], "epochs": res["epochs"], "channels": channels, "layers": layers,
               "params_with_aux": res["params"], "train_seconds": res["seconds"], "failed": res["failed"]}
    return final, details


def run_darts(cfg: DartsConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    from ..darts import get_genotype, run_search

    bar = rep.task(f"search ({cfg.method}{', order ' + str(cfg.order) if cfg.method == 'darts' else ''})", cfg.epochs)

    def progress(ev):
        rep.update(bar, completed=ev["epoch"], info=f"val {ev['val_acc']:.3f}")
        rep.log(f"epoch {ev['epoch']}: supernet val acc {ev['val_acc']:.4f}; {ev['genotype']}")

    summary = run_search(cfg, run, data, progress=progress, budget=budget.share(cfg.search_share))
    rep.remove(bar)
    genotype = get_genotype(summary["genotype"])  # either space's text form
    rep.log(f"genotype after {summary['epochs_done']} epochs: {genotype}")
    final, details = train_and_report(run, genotype, data, cfg, rep, budget)
    search = {k: summary[k] for k in ("epochs_done", "seconds", "stopped", "val_acc") if k in summary}
    return write_results(run, "darts", final, search=search, search_seconds=summary["seconds"], **details)
