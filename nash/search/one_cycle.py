"""One network trained with one SGDR cycle for the whole budget: `none` (the start net) and
`retrain` (a climb's architecture from fresh weights).

With a budget, an epoch or two at the starting learning rate time the net, and the rest of the
cycle is sized to end at the deadline, re-planned after every chunk (a tenth of the cycle) from
the time left; the last epoch may be a part of one, so the learning rate reaches its end with
the time. The optimizer's momentum is carried across chunks; each ends with a validation score
and a checkpoint: resumable, and a curve to compare.
"""
from __future__ import annotations

import math

from ..data import DataSplits
from ..errors import NashError
from ..rundir import RunDir
from ..train import evaluate, sgdr_train
from .budget import Budget, timed_epochs
from .kit import augmentation, finish, net_from_state, net_state, score, summary

CHUNK = 0.1  # of the cycle, between checkpoints


def train_one_cycle(method: str, make_net, cfg, data: DataSplits, run: RunDir, budget: Budget, rep) -> dict:
    """Train the network `make_net()` gives with one SGDR cycle for the whole budget (`cfg.epochs`
    without one), resumably; write the run's results as `method`."""
    aug = augmentation(cfg, data)

    def train(net, epochs, cycle, seed, opt_state=None):
        return sgdr_train(net, data.train_x, data.train_y, epochs, cfg.lr_start, cfg.lr_end, batch_size=cfg.batch_size,
                          aug=aug, mixup_alpha=cfg.mixup, seed=seed, cycle=cycle, opt_state=opt_state,
                          deadline=budget.deadline)

    state = run.load_checkpoint()
    if state is None:
        net = make_net().to(data.train_x.device)
        rec = score(net, data)
        start = summary(rec)
        run.event("start", **rec)
        state = {"best": net_state(net), "start": start, "u": 0.0, "done": 0, "opt": None, "epoch_seconds": None}
        if budget.limited:
            # as the climb does: an epoch or two at lr_start time the net, then the cycle is planned
            seconds, probes = timed_epochs(lambda: train(net, 1, (0.0, 0.0), cfg.seed))
            state.update(best=net_state(net), done=len(probes), opt=probes[-1].opt_state, epoch_seconds=seconds)
        run.save_checkpoint(state)
    net = net_from_state(state["best"]).to(data.train_x.device)
    n_train = len(data.train_y)
    steps_per_epoch = n_train // cfg.batch_size if n_train > cfg.batch_size else 1
    bar = rep.task("train", None if budget.limited else cfg.epochs)
    while state["u"] < 1.0:
        # the epochs left, re-planned from the time left after every chunk (the first epoch's
        # time includes one-off warm-up costs), the learning rate continuing where it is; on a
        # budget the last epoch may be a part of one, so the cycle ends with the time
        if budget.limited:
            left = budget.epochs_that_fit(state["epoch_seconds"], whole=False)
            if left * steps_per_epoch < 1:
                rep.log(f"budget: training stopped at {state['u']:.0%} of its cycle")
                break
        else:
            left = cfg.epochs - state["done"]
            if left < 1:
                break
        n = min(left, max(1, math.ceil(left * CHUNK / (1.0 - state["u"]))))
        u1 = 1.0 if n == left else state["u"] + (1.0 - state["u"]) * n / left
        res = train(net, n, (state["u"], u1), cfg.seed + int(state["done"]), state["opt"])
        if res.failed:
            raise NashError(f"{method}: {res.failed}; lower --lr-start")
        val_acc, val_loss = evaluate(net, data.val_x, data.val_y)
        state.update(best=net_state(net), done=state["done"] + res.epochs, opt=res.opt_state, u=u1,
                     epoch_seconds=res.seconds / max(res.epochs, 1))
        run.event("epoch", epoch=state["done"], cycle=round(u1, 6), train_loss=res.train_loss, val_acc=val_acc,
                  val_loss=val_loss)
        run.save_checkpoint(state)
        rep.update(bar, completed=state["done"], info=f"val {val_acc:.4f}")
    rep.remove(bar)
    final = summary(score(net, data))
    run.event("final", **final, epochs=state["done"])
    return finish(run, method, net, final, state["start"], rep, epochs=state["done"], search_seconds=0.0)
