"""`darts`: differentiable search (DARTS family) plus training of the derived network.

With a budget, the search gets the first `search_share` of it as its own deadline (resumable,
epoch by epoch, an epoch cut short where it does not fit); then one epoch of exactly the
training to come is timed and the derived network's cosine cycle is fitted into what is left,
with the deadline as a hard stop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from ..data import DataSplits
from ..draw import draw_genotype, draw_network, to_dot
from ..errors import OptionError
from ..rundir import RunDir, atomic_write_bytes
from .budget import Budget
from .contract import SearchConfig, write_results


@dataclass
class DartsConfig(SearchConfig):
    method: str = "darts"  # darts | milenas | nasp
    order: int = 1  # darts only: first or second order
    smooth: str = "none"  # none | rs | adv (SDARTS)
    epsilon: float = 0.3
    lam: float = 1.0  # MiLeNAS
    selector: str = "argmax"  # argmax | pt
    pt_tune_epochs: int = 5
    pt_share: float = 0.5  # with a budget: the share of the search's time kept for PT
    space: str = "darts"  # darts | nb201
    track_hessian: bool = False
    epochs: int = 50
    search_share: float = 0.5
    channels: int = 16
    layers: int | None = None  # None: the space's default (8 cells for darts, 5 per stage for nb201)
    batch_size: int = 64
    train_epochs: int = 600
    train_channels: int | None = None
    train_layers: int | None = None
    train_batch_size: int = 96
    auxiliary: bool | None = None
    drop_path: float = 0.2
    cutout: int | None = None

    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("budget", "device", "epochs", "train_epochs")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.search_share < 1:
            raise OptionError(f"search_share must be between 0 and 1, got {self.search_share}")
        for name in ("train_epochs", "train_batch_size"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        from ..darts import search_config
        search_config(self.search_keys())  # the search's own checks, one line each

    def search_keys(self) -> dict:
        """The keys nash.darts.run_search reads (its budget comes apart, as a Budget)."""
        return self.to_json()


def derived_size(cfg: DartsConfig, data: DataSplits) -> tuple[int, int]:
    """(channels, cells) of the derived network: as given, else the space's default for this
    input size."""
    from ..darts.search import derived_size as space_default
    channels, layers = space_default(cfg.space, tuple(data.image_size))
    return cfg.train_channels or channels, cfg.train_layers or layers


def train_and_report(run: RunDir, genotype, data: DataSplits, cfg, rep, budget: Budget) -> dict:
    """Lower, train and evaluate a genotype within `budget`; write best/, drawings; return the
    `final` dict and the details. Shared by the darts searcher and `nash train-genotype`."""
    from ..darts import train_genotype

    channels, layers = derived_size(cfg, data)
    epochs = cfg.train_epochs
    kw = dict(channels=channels, layers=layers, batch_size=cfg.train_batch_size, auxiliary=cfg.auxiliary,
              seed=cfg.seed, drop_path=cfg.drop_path, cutout=cfg.cutout)
    if budget.limited:
        # time one epoch of exactly the training to come, then fit the cosine cycle to what is
        # left; lowering and evaluating, timed with it, come once more
        t = time.time()
        _, probe = train_genotype(genotype, data, 1, **kw)
        per_epoch = probe["seconds"]
        fit = max(1, min(epochs, budget.epochs_that_fit(per_epoch, also=time.time() - t - per_epoch)))
        if fit < epochs:
            rep.log(f"budget: training the derived network for {fit} of {epochs} epochs")
            epochs = fit
    bar = rep.task("train derived net", epochs)

    def on_epoch(e, r):
        rep.update(bar, completed=e, info=f"acc {r.train_acc:.3f}")
        run.event("train_epoch", epoch=e, train_acc=r.train_acc, train_loss=r.train_loss)

    net, res = train_genotype(genotype, data, epochs, on_epoch=on_epoch, deadline=budget.deadline, **kw)
    rep.remove(bar)
    if res["epochs"] < epochs:
        rep.log(f"budget: training stopped after {res['epochs']} of {epochs} epochs")
    net.save(run.path / "best")
    final = {"val_acc": res.get("val_acc"), "test_acc": res["test_acc"], "params": res["params_without_aux"]}
    run.event("final", **final, epochs=res["epochs"], seconds=res["seconds"])
    try:
        draw_genotype(genotype, run.path / "cells.png")
        if len(net.graph) <= 400:  # past that a drawing of every node is slow and unreadable
            draw_network(net, run.path / "architecture.png")
    except (ImportError, TypeError, ValueError) as e:  # a drawing never loses a run
        rep.log(f"drawing skipped: {e}")
    atomic_write_bytes(run.path / "architecture.dot", to_dot(net).encode())
    details = {"genotype": res["genotype"], "epochs": res["epochs"], "channels": channels, "layers": layers,
               "params_with_aux": res["params"], "train_seconds": res["seconds"], "failed": res["failed"]}
    return final, details


def run_darts(cfg: DartsConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    from ..darts import get_genotype, run_search

    bar = rep.task(f"search ({cfg.method}{', order ' + str(cfg.order) if cfg.method == 'darts' else ''})", cfg.epochs)

    def progress(ev):
        rep.update(bar, completed=ev["epoch"], info=f"val {ev['val_acc']:.3f}")
        rep.log(f"epoch {ev['epoch']}: supernet val acc {ev['val_acc']:.4f}; {ev['genotype']}")

    summary = run_search(cfg.search_keys(), run, data, progress=progress, budget=budget.share(cfg.search_share))
    rep.remove(bar)
    genotype = get_genotype(summary["genotype"])  # either space's text form
    rep.log(f"genotype after {summary['epochs_done']} epochs: {genotype}")
    final, details = train_and_report(run, genotype, data, cfg, rep, budget)
    search = {k: summary[k] for k in ("epochs_done", "seconds", "stopped", "val_acc") if k in summary}
    return write_results(run, "darts", final, search=search, search_seconds=summary["seconds"], **details)
