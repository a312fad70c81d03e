"""`none`: no search. The start net trained with one SGDR cycle for the whole budget.

The baseline every search must beat at equal wall-clock. With a budget, one epoch at the
starting learning rate times the net, and the rest of the cycle is sized to end at the
deadline. The cycle is trained in chunks (a tenth each) with the optimizer's momentum carried
across, a checkpoint and a validation score after each: resumable, and a curve to compare.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from ..data import DataSplits
from ..errors import NashError, OptionError
from ..report import write_climb_report
from ..rundir import RunDir
from ..train import evaluate, sgdr_train
from .climb import make_start_net, net_from_state, net_state
from .contract import SearchConfig, time_left, write_results

CHUNKS = 10


@dataclass
class NoneConfig(SearchConfig):
    epochs: int = 125  # without a budget: what the paper's 5-step climb trains its lineage for
    lr_start: float = 0.05
    lr_end: float = 0.0
    batch_size: int = 128
    widths: tuple = (64, 128, 256)
    mixup: float = 0.0
    cutout: int = 0
    start: str | None = None

    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("budget", "device")

    def validate(self) -> None:
        super().validate()
        if self.epochs < 1 or self.batch_size < 1:
            raise OptionError(f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}")


def run_none(cfg: NoneConfig, data: DataSplits, run: RunDir, deadline: float | None, rep, executor=None) -> dict:
    aug = dataclasses.replace(data.augment, cutout=cfg.cutout) if cfg.cutout else data.augment

    def train(net, epochs, cycle, seed, opt_state=None, stop=None):
        return sgdr_train(net, data.train_x, data.train_y, epochs, cfg.lr_start, cfg.lr_end, batch_size=cfg.batch_size,
                          aug=aug, mixup_alpha=cfg.mixup, seed=seed, cycle=cycle, opt_state=opt_state, deadline=stop)

    state = run.load_checkpoint()
    if state is None:
        net = make_start_net(cfg, data).to(data.train_x.device)
        epochs = cfg.epochs
        if deadline is not None:
            probe = train(net, 1, (0.0, 0.0), cfg.seed)  # as the climb does: timing at lr_start
            reserve = 3.0 + 0.2 * probe.seconds
            epochs = max(1, math.floor((time_left(deadline) - reserve) / (probe.seconds * 1.05)))
        val_acc, val_loss = evaluate(net, data.val_x, data.val_y)
        test_acc, _ = evaluate(net, data.test_x, data.test_y)
        start = {"val_acc": val_acc, "test_acc": test_acc, "params": net.num_params()}
        run.event("start", **start, val_loss=val_loss)
        state = {"best": net_state(net), "start": start, "epochs": epochs, "done": 0, "opt": None}
        run.save_checkpoint(state)
    net = net_from_state(state["best"]).to(data.train_x.device)
    total = state["epochs"]
    bounds = sorted({round(total * i / CHUNKS) for i in range(CHUNKS + 1)})
    bar = rep.task("train", total)
    rep.update(bar, completed=state["done"])
    for a, b in zip(bounds, bounds[1:]):
        if b <= state["done"]:
            continue
        # the last chunk ignores the deadline: a cycle cut before it anneals is worth less
        res = train(net, b - a, (a / total, b / total), cfg.seed + a, state["opt"],
                    stop=None if b == total else deadline)
        if res.failed:
            raise NashError(f"none: {res.failed}; lower --lr-start")
        val_acc, val_loss = evaluate(net, data.val_x, data.val_y)
        run.event("epoch", epoch=a + res.epochs, of=total, train_loss=res.train_loss, val_acc=val_acc,
                  val_loss=val_loss)
        state.update(best=net_state(net), done=a + res.epochs, opt=res.opt_state)
        run.save_checkpoint(state)
        rep.update(bar, completed=state["done"], info=f"val {val_acc:.4f}")
        if res.epochs < b - a:
            rep.log(f"budget: training stopped after {state['done']} of {total} epochs")
            break
    rep.remove(bar)
    test_acc, _ = evaluate(net, data.test_x, data.test_y)
    val_acc, val_loss = evaluate(net, data.val_x, data.val_y)
    final = {"val_acc": val_acc, "test_acc": test_acc, "params": net.num_params()}
    run.event("final", **final, epochs=state["done"])
    net.save(run.path / "best")
    write_climb_report(run, net, rep)
    return write_results(run, "none", final, state["start"], epochs=state["done"])
