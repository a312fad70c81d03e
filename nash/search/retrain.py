"""`retrain`: a climb's final architecture from fresh weights, trained with one SGDR cycle for
the whole budget.

The baseline that asks whether growing beat simply training what the search found: the same
network a climb ended with, but none of its inherited weights and none of its search time
spent (the whole budget is one cycle, as `none` gives the start net). `nash compare` runs it
after the `nash` run of the same seed and points `start` at that run's best network; in Python
`start` is any saved network (its weights are not used), a Network or an nn.Module.
"""
from __future__ import annotations

from dataclasses import dataclass

from morphisms import reinitialized

from ..data import DataSplits
from ..errors import OptionError
from ..rundir import RunDir
from .budget import Budget
from .kit import child_seed, make_start_net
from .none import NoneConfig
from .one_cycle import train_one_cycle


@dataclass
class RetrainConfig(NoneConfig):
    def validate(self) -> None:
        super().validate()
        if self.start is None:
            raise OptionError("retrain needs the architecture to train: start=RUN_DIR/best of a climb "
                              "(nash compare sets it to the nash run of the same seed)")


def fresh_network(cfg: RetrainConfig, data: DataSplits):
    """The start network's architecture with weights drawn from the seed alone."""
    return reinitialized(make_start_net(cfg, data), child_seed(cfg.seed, 0, 30_000))


def run_retrain(cfg: RetrainConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    return train_one_cycle("retrain", lambda: fresh_network(cfg, data), cfg, data, run, budget, rep)
