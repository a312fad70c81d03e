"""Searchers, picked by name from one registry, and the one way to run them.

    results = run_searcher("nash", ClimbConfig(budget=180), out="runs/x", reporter=rep)

Every searcher is (config class, function(config, data, run, budget, reporter, executor)):
see contract.py for what each must write and return, budget.py for the clock it is given.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data import load_dataset
from ..errors import OptionError
from ..rundir import RunDir, default_run_path
from ..version import code_version
from .climb import ClimbConfig, HillClimber, run_climb
from .budget import Budget
from .contract import SearchConfig, StartNetConfig, pick_device
from .darts import DartsConfig, run_darts
from .none import NoneConfig, run_none
from .pareto import ParetoConfig, run_pareto
from .random_search import RandomConfig, run_random
from .retrain import RetrainConfig, run_retrain
from .start import SNAPSHOT, resolve_start, with_snapshot


@dataclass(frozen=True)
class Searcher:
    config: type[SearchConfig]
    run: Callable
    description: str
    defaults: dict = field(default_factory=dict)  # config values that make this name (a variant)

    def make(self, **kw) -> SearchConfig:
        """The config for this name: its defaults, overridden by `kw`."""
        return self.config(**{**self.defaults, **kw})


SEARCHERS: dict[str, Searcher] = {
    "nash": Searcher(ClimbConfig, run_climb, "hill climbing with network morphisms (NASH)"),
    "random": Searcher(RandomConfig, run_random, "random morphism sequences, the best trained on"),
    "none": Searcher(NoneConfig, run_none, "the start net trained for the whole budget"),
    "retrain": Searcher(RetrainConfig, run_retrain, "a climb's final architecture from fresh weights, trained for "
                                                    "the whole budget"),
    "pareto": Searcher(ParetoConfig, run_pareto, "a front of accuracy against cost, grown and shrunk by morphisms "
                                                 "(LEMONADE)"),
    "darts": Searcher(DartsConfig, run_darts, "differentiable search (DARTS family) + training the result"),
    # the DARTS variants by the names the literature uses, so `nash compare` can put them side by side
    "sdarts-rs": Searcher(DartsConfig, run_darts, "SDARTS, random smoothing", {"smooth": "rs"}),
    "sdarts-adv": Searcher(DartsConfig, run_darts, "SDARTS, adversarial smoothing", {"smooth": "adv"}),
    "darts-pt": Searcher(DartsConfig, run_darts, "DARTS with perturbation-based selection", {"selector": "pt"}),
    "milenas": Searcher(DartsConfig, run_darts, "MiLeNAS mixed-level", {"method": "milenas"}),
    "nasp": Searcher(DartsConfig, run_darts, "NASP proximal", {"method": "nasp"}),
}


def searcher(name: str) -> Searcher:
    try:
        return SEARCHERS[name]
    except KeyError:
        raise OptionError(f"unknown method {name!r} (known: {', '.join(SEARCHERS)})") from None


def load_data(cfg: SearchConfig):
    return load_dataset(cfg.data, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction, subset=cfg.subset,
                        seed=cfg.seed, device=pick_device(cfg.device))


def open_run(name: str, cfg: SearchConfig | None = None, out=None, resume=None, changes: dict | None = None):
    """(run directory, config): a new run at `out` for `cfg`, or the run at `resume` with its
    stored config (and the `changes` a resume may make). Nothing is written before the config
    has been checked."""
    if resume is not None:
        run = RunDir.open(resume)
        stored = run.config
        if stored.get("method") != name:
            raise OptionError(f"{run.path} holds a {stored.get('method') or stored.get('command')!r} run, "
                              f"not {name!r}")
        cfg = searcher(name).config.from_json(stored["config"]).resumed_with(changes or {})
        return run, cfg
    run = RunDir.create(out or default_run_path(name), {"method": name, "config": cfg.to_json(),
                                                        "version": code_version()})
    return run, cfg


def run_searcher(name: str, cfg: SearchConfig | None = None, out=None, resume=None, reporter=None,
                 started: float | None = None, changes: dict | None = None, executor=None, data=None) -> dict:
    """Run (or resume) searcher `name`: load the data, open the run directory, start its clock,
    make the run's Budget (once, here), call the searcher. `started` is when the user's command
    began (time.time()), the zero of the wall-clock budget."""
    from ..progress import Reporter
    started = time.time() if started is None else started
    if resume is None:
        data = data or load_data(cfg)  # a data error leaves no run directory behind,
        cfg, start = resolve_start(cfg, data)  # nor does a start network that cannot be used,
        cfg.check_data(data)  # nor a config that does not fit the data
        out = Path(out or default_run_path(name))
        if start is not None:
            cfg = with_snapshot(cfg, out)
        run, cfg = open_run(name, cfg, out=out)
        if start is not None:
            start.save(run.path / SNAPSHOT)
    else:
        run, cfg = open_run(name, resume=resume, changes=changes)
        data = data or load_data(cfg)
        cfg.check_data(data)
    spent = run.start_clock(started)
    budget = Budget.for_run(cfg.budget, started, spent)
    rep = reporter or Reporter(quiet=True)
    with rep:
        rep.log(f"{name}: run directory {run.path}" + (f" (resumed, {spent:.0f}s spent)" if spent else ""))
        results = searcher(name).run(cfg, data, run, budget, rep, executor)
    return {**results, "run_dir": str(run.path)}  # where it is, for the caller (not in the file)


__all__ = ["Budget", "ClimbConfig", "DartsConfig", "HillClimber", "NoneConfig", "ParetoConfig", "RandomConfig", "RetrainConfig", "SEARCHERS",
           "SearchConfig", "Searcher", "StartNetConfig", "load_data", "open_run", "pick_device", "run_searcher",
           "searcher"]
