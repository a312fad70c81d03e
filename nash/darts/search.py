"""The DARTS search driver: train a supernet's weights and alphas in turn, per epoch log and
checkpoint, and derive the genotype at the end.

    summary = run_search({"method": "darts", "order": 2, "epochs": 50}, RunDir.create(path, config), data)

Data: the training split is cut in half, in order, as the reference does: the first half
trains the weights, the second the alphas (the validation split stays untouched for reporting
the supernet's accuracy). Each step updates the alphas on an alpha-half batch first, then the
weights on a weight-half batch, with the alphas held fixed (their softmax detached).

Weights: SGD, momentum 0.9, wd 3e-4, gradient norm clipped to 5, lr annealed per epoch by a
cosine from 0.025 to 0.001. Alphas: Adam 3e-4, betas (0.5, 0.999), wd 1e-3. These are the
reference's values and the defaults here.

Resumable: after every epoch one atomic checkpoint holds the supernet (weights and alphas),
both optimizers, the lr schedule position, the epoch and the random state of the batch
order; calling run_search again on the same run directory continues with the next epoch and
ends with the same alphas as an uninterrupted run (on CPU, bit for bit).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from nash.data import DataSplits, iterate_batches
from nash.rundir import RunDir, RunDirError, atomic_write_bytes
from nash.train import evaluate, sgdr_train

from .architect import strategy_for
from .genotype import get_genotype
from .lower import lower
from .selection import SELECTORS
from .supernet import Supernet
from nash.errors import NashError

DEFAULTS = dict(
    method="darts", order=1, epochs=50, budget_seconds=None,
    channels=16, layers=8, steps=4, multiplier=4, batch_size=64, seed=0,
    w_lr=0.025, w_lr_min=0.001, momentum=0.9, wd=3e-4, grad_clip=5.0,
    arch_lr=3e-4, arch_wd=1e-3, augment=True, selector="argmax",
)
# What a resumed run may change: how long it runs. Everything else must match the checkpoint.
RESUME_MAY_CHANGE = ("epochs", "budget_seconds")
EPOCH_EVENT = "darts_epoch"


class SearchConfigError(NashError, ValueError):
    """A search configuration value that cannot be used (one line)."""


def search_config(config: dict) -> dict:
    """DEFAULTS overridden by the DARTS keys of `config` (other keys are ignored: the run's
    config may hold the data set, output folder and so on), checked."""
    cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}
    if cfg["budget_seconds"] is not None and not cfg["budget_seconds"] > 0:
        raise SearchConfigError(f"budget_seconds must be positive, got {cfg['budget_seconds']!r}")
    for key in ("epochs", "channels", "layers", "steps", "multiplier", "batch_size"):
        if not (isinstance(cfg[key], int) and not isinstance(cfg[key], bool) and cfg[key] >= 1):
            raise SearchConfigError(f"{key} must be a positive integer, got {cfg[key]!r}")
    for key in ("w_lr", "w_lr_min", "momentum", "wd", "grad_clip", "arch_lr", "arch_wd"):
        if not (isinstance(cfg[key], (int, float)) and cfg[key] >= 0):
            raise SearchConfigError(f"{key} must be a number >= 0, got {cfg[key]!r}")
    if cfg["multiplier"] > cfg["steps"]:
        raise SearchConfigError(f"multiplier ({cfg['multiplier']}) cannot exceed steps ({cfg['steps']})")
    if cfg["selector"] not in SELECTORS:
        raise SearchConfigError(f"unknown selector {cfg['selector']!r} (known: {', '.join(SELECTORS)})")
    try:
        strategy_for(cfg["method"], cfg["order"])
    except ValueError as e:
        raise SearchConfigError(str(e)) from None
    return cfg


def epoch_lr(epoch: int, cfg: dict) -> float:
    """Cosine from w_lr to w_lr_min over the configured epochs, one value per epoch (reference)."""
    return cfg["w_lr_min"] + 0.5 * (cfg["w_lr"] - cfg["w_lr_min"]) * (1 + math.cos(math.pi * epoch / cfg["epochs"]))


def build(cfg: dict, data: DataSplits):
    """Supernet (seeded init, without disturbing the caller's global RNG), weight optimizer,
    architecture strategy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        supernet = Supernet(cfg["channels"], data.num_classes, cfg["layers"], data.in_channels,
                            cfg["steps"], cfg["multiplier"])
    supernet.to(data.train_x.device)
    w_optimizer = torch.optim.SGD(supernet.weights(), lr=cfg["w_lr"], momentum=cfg["momentum"],
                                  weight_decay=cfg["wd"])
    strategy = strategy_for(cfg["method"], cfg["order"])(supernet, lr=cfg["arch_lr"], weight_decay=cfg["arch_wd"])
    return supernet, w_optimizer, strategy


def split_halves(data: DataSplits):
    """(weight-half x, y), (alpha-half x, y) of the training split (reference: 50/50, in order)."""
    n = len(data.train_x)
    if n < 2:
        raise SearchConfigError(f"{data.name}: {n} training images cannot be split into weight and alpha halves")
    half = n // 2
    return (data.train_x[:half], data.train_y[:half]), (data.train_x[half:], data.train_y[half:])


def _alphas_lists(supernet) -> dict:
    wn, wr = supernet.op_weights()
    return {"alphas_normal": [[round(v, 6) for v in row] for row in wn.detach().cpu().tolist()],
            "alphas_reduce": [[round(v, 6) for v in row] for row in wr.detach().cpu().tolist()]}


def search_step(supernet, strategy, w_optimizer, train_batch, val_batch, lr: float, grad_clip: float | None,
                weights=None):
    """One DARTS step: the alphas first (on the alpha batch), then the weights (on the weight
    batch) with the op weights the strategy gives (detached softmax). Returns (weight loss,
    logits, the strategy's info)."""
    info = strategy.step(supernet, train_batch, val_batch, w_optimizer, lr)
    wn, wr = strategy.weight_step_weights(supernet)
    x, y = train_batch
    logits = supernet(x, wn, wr)
    loss = F.cross_entropy(logits, y)
    w_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(supernet.weights() if weights is None else weights, grad_clip)
    w_optimizer.step()
    return loss.detach(), logits.detach(), info


def train_epoch(supernet, strategy, w_optimizer, w_half, a_half, cfg, lr, generator, aug, deadline=None) -> dict:
    """One epoch of alternating steps; returns train loss/acc and the mean alpha-batch loss.
    Past `deadline` (a time.time()) the epoch ends early, after the step in flight."""
    supernet.train()
    for group in w_optimizer.param_groups:
        group["lr"] = lr
    bs = cfg["batch_size"]
    weights = supernet.weights()
    drop_w, drop_a = len(w_half[0]) > bs, len(a_half[0]) > bs  # full batches only, when there are any
    loss_sum = correct = arch_loss = 0.0
    seen = steps = 0
    for (xt, yt), (xv, yv) in zip(iterate_batches(*w_half, bs, generator=generator, aug=aug, drop_last=drop_w),
                                  iterate_batches(*a_half, bs, generator=generator, aug=aug, drop_last=drop_a)):
        loss, logits, info = search_step(supernet, strategy, w_optimizer, (xt, yt), (xv, yv), lr, cfg["grad_clip"],
                                         weights)
        # accumulated on the device: no host sync per step
        loss_sum += loss.detach() * len(yt)
        correct += (logits.detach().argmax(1) == yt).sum()
        arch_loss += info["val_loss"]
        seen += len(yt)
        steps += 1
        if deadline is not None and time.time() > deadline:
            break
    seen = max(seen, 1)
    return {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen,
            "arch_loss": float(arch_loss) / max(steps, 1), "steps": steps}


def run_search(config: dict, run: RunDir, data: DataSplits, progress=None) -> dict:
    """Search (or resume the search in `run`); write genotype.json, genotype.txt, alphas.png.

    progress(event: dict) is called after every epoch with that epoch's event fields.
    Returns {"genotype": text, "epochs_done", "epochs", "seconds", "stopped": None | "budget",
    "val_acc"}."""
    cfg = search_config(config)
    if data.train_x.device.type == "cpu":
        # as sgdr_train does: denormal floats (tiny momentum buffers and BN statistics late in a
        # search) take a slow path on x86
        torch.set_flush_denormal(True)
    supernet, w_optimizer, strategy = build(cfg, data)
    w_half, a_half = split_halves(data)
    val = (data.val_x, data.val_y) if len(data.val_x) else a_half
    aug = data.augment if cfg["augment"] else None
    generator = torch.Generator().manual_seed(cfg["seed"])
    selector = SELECTORS[cfg["selector"]]()

    start, seconds, epoch_seconds, val_acc = 0, 0.0, [], None
    state = run.load_checkpoint()
    if state is not None:
        old = state["config"]
        for key in DEFAULTS:
            if key not in RESUME_MAY_CHANGE and old.get(key) != cfg[key]:
                raise RunDirError(f"{run.path}: its checkpoint was made with {key}={old.get(key)!r}, "
                                  f"not {cfg[key]!r}; resume with the same settings or start a new run")
        supernet.load_state_dict(state["supernet"])
        w_optimizer.load_state_dict(state["w_optimizer"])
        strategy.load_state_dict(state["arch"])
        generator.set_state(state["rng"]["batches"])
        torch.set_rng_state(state["rng"]["torch"])
        start, seconds = int(state["epoch"]), float(state["seconds"])
        epoch_seconds, val_acc = list(state["epoch_seconds"]), state.get("val_acc")
        run.event("darts_resume", epoch=start)
    else:
        run.event("darts_start", params=sum(p.numel() for p in supernet.weights()),
                  w_half=len(w_half[0]), alpha_half=len(a_half[0]), **{k: cfg[k] for k in ("method", "order")})

    stopped = None
    for epoch in range(start, cfg["epochs"]):
        budget = cfg["budget_seconds"]
        # Start an epoch only if it should end within the budget (the first one always runs).
        if budget is not None and epoch_seconds and seconds + sum(epoch_seconds) / len(epoch_seconds) > budget:
            stopped = "budget"
            break
        t0 = time.time()
        lr = epoch_lr(epoch, cfg)
        # a budget also bounds the epoch itself: the first epoch of a big search may not fit
        deadline = None if budget is None else t0 + (budget - seconds)
        stats = train_epoch(supernet, strategy, w_optimizer, w_half, a_half, cfg, lr, generator, aug, deadline)
        val_acc, val_loss = evaluate(supernet, *val, batch_size=256)
        genotype = selector.select(supernet)
        dt = time.time() - t0
        seconds += dt
        epoch_seconds.append(dt)
        event = dict(epoch=epoch + 1, epochs=cfg["epochs"], lr=lr, **stats, val_acc=val_acc, val_loss=val_loss,
                     genotype=str(genotype), seconds=round(dt, 3), **_alphas_lists(supernet))
        run.event(EPOCH_EVENT, **event)
        run.save_checkpoint({
            "config": cfg, "epoch": epoch + 1, "seconds": seconds, "epoch_seconds": epoch_seconds,
            "val_acc": val_acc, "supernet": supernet.state_dict(), "w_optimizer": w_optimizer.state_dict(),
            "arch": strategy.state_dict(), "scheduler": {"epoch": epoch + 1, "lr": lr},
            "rng": {"batches": generator.get_state(), "torch": torch.get_rng_state()},
        })
        if progress is not None:
            progress(event)

    genotype = selector.select(supernet)
    run.write_json("genotype.json", genotype.to_json())
    atomic_write_bytes(run.path / "genotype.txt", (str(genotype) + "\n").encode())
    plot_alphas(run.events(EPOCH_EVENT), run.path / "alphas.png", supernet.space)
    done = len(epoch_seconds)
    run.event("darts_done", genotype=str(genotype), epochs_done=done, seconds=round(seconds, 3), stopped=stopped)
    return {"genotype": str(genotype), "epochs_done": done, "epochs": cfg["epochs"], "seconds": seconds,
            "stopped": stopped, "val_acc": val_acc}


def plot_alphas(events: list[dict], path, space) -> bool:
    """softmax(alpha) of every edge over the epochs, one panel per edge (rows: intermediate
    nodes, columns: their inputs), normal cell left, reduction cell right. PNG via the Agg
    canvas directly, so no pyplot backend is touched. Returns False (with a warning) when
    matplotlib is missing or there is nothing to plot."""
    if not events:
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: no alphas.png", stacklevel=2)
        return False
    epochs = [e["epoch"] for e in events]
    cols = space.num_inputs + space.steps - 1
    fig = Figure(figsize=(2.0 * 2 * cols, 1.6 * space.steps + 0.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(space.steps, 2 * cols, squeeze=False, sharex=True, sharey=True)
    for block, key in enumerate(("alphas_normal", "alphas_reduce")):
        series = torch.tensor([e[key] for e in events])  # epochs x edges x ops
        for row in range(space.steps):
            for col in range(cols):
                ax = axes[row][block * cols + col]
                edge = [k for k, (src, dst) in enumerate(space.edges) if dst == space.num_inputs + row and src == col]
                if not edge:
                    ax.axis("off")
                    continue
                for k, op in enumerate(space.ops):
                    ax.plot(epochs, series[:, edge[0], k].tolist(), label=op, linewidth=1)
                ax.set_title(f"{key.split('_')[1]}: {col}->{space.num_inputs + row}", fontsize=7)
                ax.tick_params(labelsize=6)
    fig.suptitle("softmax(alpha) of every edge (source -> node) over the epochs", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(space.ops), fontsize=7)
    # fixed margins: tight_layout over dozens of panels costs seconds
    fig.subplots_adjust(left=0.03, right=0.99, top=0.94, bottom=0.12, wspace=0.15, hspace=0.45)
    fig.savefig(path, dpi=90)
    return True


def train_genotype(genotype, data: DataSplits, epochs: int, channels: int = 36, layers: int = 20,
                   lr: float = 0.025, lr_end: float = 0.0, batch_size: int = 96, momentum: float = 0.9,
                   weight_decay: float = 3e-4, auxiliary: bool | None = None, aux_weight: float = 0.4,
                   drop_path: float = 0.2, cutout: int | None = None, grad_clip: float = 5.0, seed: int = 0,
                   on_epoch=None, deadline: float | None = None):
    """Lower `genotype` and train it from scratch as DARTS evaluates a cell (defaults: 36
    channels, 20 cells, batch 96, lr 0.025 cosine to 0, wd 3e-4, auxiliary weight 0.4,
    drop path 0.2 ramped linearly, cutout 16, grad clip 5). Returns (net, result dict).

    auxiliary=None: on where it fits (an 8x8 map at 2/3 depth, i.e. 32x32 inputs).
    cutout=None: 16 for inputs of at least 32x32, else off."""
    genotype = get_genotype(genotype)
    size = tuple(data.image_size)
    if auxiliary is None:
        auxiliary = min(size) >= 32
    if cutout is None:
        cutout = 16 if min(size) >= 32 else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = lower(genotype, channels, layers, data.num_classes, data.in_channels, auxiliary=auxiliary,
                    drop_path=0.0, input_size=size)
    aug = replace(data.augment, cutout=cutout) if data.augment else None
    res = sgdr_train(net, data.train_x, data.train_y, epochs, lr_start=lr, lr_end=lr_end, batch_size=batch_size,
                     momentum=momentum, weight_decay=weight_decay, aug=aug, grad_clip=grad_clip,
                     aux_weight=aux_weight if auxiliary else 0.0, drop_path=drop_path, seed=seed,
                     on_epoch=on_epoch, deadline=deadline,
                     decay_all=True)  # the reference decays every weight of its evaluation network
    result = {"genotype": str(genotype), "params": net.num_params(),
              "params_without_aux": sum(net.node_params(n) for n in net.layers if not n.startswith("aux_")),
              "train_loss": res.train_loss, "train_acc": res.train_acc, "epochs": res.epochs, "steps": res.steps,
              "seconds": res.seconds, "failed": res.failed}
    if len(data.val_x):
        result["val_acc"], result["val_loss"] = evaluate(net, data.val_x, data.val_y)
    result["test_acc"], result["test_loss"] = evaluate(net, data.test_x, data.test_y)
    return net, result
