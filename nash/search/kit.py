"""The searchers' kit: what every searcher opens and closes with, written once.

    net = make_start_net(cfg, data)                  # NASH start net from the seed, or cfg.start
    rec = score(net, data)                           # val/test accuracy, val loss, params
    best = min(outcomes, key=rank_key)               # highest val acc, then lower val loss, earlier key
    settings = train_settings(cfg, data)             # SGD slice settings, cutout folded into augmentation
    results = finish(run, "nash", best, final, start, rep, steps=3)   # best/, plots, results.json

A new searcher is a config (contract.py), a function using this kit and a registry line
(`nash.search.SEARCHERS`).
"""
from __future__ import annotations

import dataclasses
import json

import torch

from morphisms import Network, start_net
from morphisms.network import graph_from_json

from ..data import DataSplits
from ..report import write_run_report
from ..rundir import RunDir
from ..train import evaluate
from .contract import write_results
from .jobs import TrainSettings
from .start import start_network


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


def augmentation(cfg, data: DataSplits):
    """The data set's augmentation with the config's cutout folded in (0: the data set's own)."""
    return dataclasses.replace(data.augment, cutout=cfg.cutout) if cfg.cutout else data.augment


def train_settings(cfg, data: DataSplits) -> TrainSettings:
    """How a start-net searcher's networks train (one SGD slice of a cosine cycle)."""
    return TrainSettings(cfg.lr_start, cfg.lr_end, cfg.batch_size, augmentation(cfg, data), cfg.mixup)


def score(net: Network, data: DataSplits) -> dict:
    """{val_acc, val_loss, test_acc, params} of a network."""
    val_acc, val_loss = evaluate(net, data.val_x, data.val_y)
    test_acc, _ = evaluate(net, data.test_x, data.test_y)
    return {"val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "params": net.num_params()}


def summary(rec: dict) -> dict:
    """The part of a score that results.json keeps for a network."""
    return {k: rec[k] for k in ("val_acc", "test_acc", "params")}


def rank_key(outcome) -> tuple:
    """Sort key, best first: the highest validation accuracy; on a tie (common on small
    validation sets) the lower validation loss, then the earlier candidate. `outcome` is a
    TrainOutcome or a dict with val_acc, val_loss and key (or candidate)."""
    get = outcome.get if isinstance(outcome, dict) else lambda k, d=None: getattr(outcome, k, d)
    key = get("key")
    return -get("val_acc"), get("val_loss"), key if key is not None else get("candidate", 0)


def finish(run: RunDir, method: str, best: Network, final: dict, start: dict | None, rep, **extra) -> dict:
    """The close every searcher shares: the best network saved as RUN/best, the run report
    (plots, drawing), results.json written; returns the results."""
    best.save(run.path / "best")
    write_run_report(run, best, rep)
    return write_results(run, method, final, start, **extra)
