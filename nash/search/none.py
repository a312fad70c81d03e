"""`none`: no search. The start net trained with one SGDR cycle for the whole budget
(one_cycle.py): the baseline every search must beat at equal wall-clock."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import DataSplits
from ..errors import OptionError
from ..rundir import RunDir
from .budget import Budget
from .contract import StartNetConfig
from .kit import make_start_net
from .one_cycle import train_one_cycle


@dataclass
class NoneConfig(StartNetConfig):
    epochs: int = field(default=125, metadata={"help": "Epochs of the one cycle without a budget (what the paper's "
                                                      "5-step climb trains its lineage for)."})

    def validate(self) -> None:
        super().validate()
        if self.epochs < 1:
            raise OptionError(f"epochs must be at least 1, got {self.epochs}")


def run_none(cfg: NoneConfig, data: DataSplits, run: RunDir, budget: Budget, rep, executor=None) -> dict:
    return train_one_cycle("none", lambda: make_start_net(cfg, data), cfg, data, run, budget, rep)
