"""The DARTS-family search driver: train a supernet's weights and alphas in turn, per epoch log
and checkpoint, and select the genotype at the end.

    summary = run_search({"method": "darts", "order": 2, "epochs": 50}, RunDir.create(path, config), data)

Three plug-ins compose, each picked by name in the config:
  method + order  how the alphas learn (architect.py: darts 1st/2nd order, milenas, nasp)
  smooth          how the weight step's op weights are perturbed (smoothing.py: none, rs, adv)
  selector        how the genotype is derived at the end (selection.py: argmax, pt)
and `space` picks the cell space and its supernet (darts, nb201).

Data: the training split is cut in half, in order, as the reference does: the first half
trains the weights (MiLeNAS's L_train), the second the alphas (L_val; PT measures on it too);
the validation split stays untouched for reporting the supernet's accuracy. Each step updates
the alphas on an alpha-half batch first, then the weights on a weight-half batch, with the
alphas held fixed.

Weights: SGD, momentum 0.9, wd 3e-4, gradient norm clipped to 5, lr annealed per epoch by a
cosine from 0.025 to 0.001. Alphas: Adam 3e-4, betas (0.5, 0.999), wd 1e-3. These are the
reference's values and the defaults here.

Every epoch writes a `darts_epoch` event: losses, accuracies, the argmax genotype, `skips` (skip
connections in its normal cell), the op weights, what the variant did (`epsilon` when
smoothing, `adv_kept`/`adv_gain` for adv, `arch_train_loss` for milenas) and, with
`track_hessian`, `hessian_eig` (the dominant eigenvalue of the alpha Hessian of the loss on a
fixed alpha-half batch). alphas.png and diagnostics.png plot them.

Resumable: after every epoch one atomic checkpoint holds the supernet (weights and alphas),
both optimizers, the smoother's random state, the epoch and the random state of the batch
order; calling run_search again on the same run directory continues with the next epoch and
ends with the same alphas as an uninterrupted run (on CPU, bit for bit). PT starts over from
the search's end after an interruption; once done, its genotype is stored in the checkpoint.

Budget (a `nash.search.budget.Budget`, the search's share of the run's): an epoch starts only
if it should end before the deadline, and a step only if it should (from the mean step so far:
one SDARTS-ADV step is ten forward-backward passes, and the first steps of a process are slower
still, so a check after the step alone lets one step overrun by its whole length). The first
step always runs. With the PT selector the first 1 - `pt_share` of the budget trains and the
rest is PT's, whose measurements come first and whose fine-tuning takes what is left.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nash.data import DataSplits, iterate_batches, make_generator, set_generator_state
from nash.errors import NashError
from nash.rundir import RunDir, RunDirError, atomic_write_bytes
from nash.search.budget import Budget
from nash.train import evaluate, sgdr_train

from .architect import METHODS, strategy_for
from .diagnostics import alpha_hessian_eigenvalue, normal_skips
from .genotype import NB201Genotype, genotype_space, get_genotype
from .lower import lower
from .ops import SPACES
from .plots import plot_alphas, plot_diagnostics
from .selection import SELECTORS, PerturbationSelector, supernet_genotype
from .smoothing import SMOOTHERS, NoSmoothing, epsilon_at
from .supernet import NB201Supernet, Supernet

DEFAULTS = dict(
    space="darts", method="darts", order=1, lam=1.0, smooth="none", epsilon=0.3,
    selector="argmax", pt_tune_epochs=5, pt_share=0.5, track_hessian=False,
    epochs=50,
    channels=16, layers=None, steps=4, multiplier=4, batch_size=64, seed=0,
    w_lr=0.025, w_lr_min=0.001, momentum=0.9, wd=3e-4, grad_clip=5.0,
    arch_lr=3e-4, arch_wd=1e-3, augment=True,
)
# cells of the search network when `layers` is None: DARTS 8 cells; NAS-Bench-201 5 per stage
SPACE_LAYERS = {"darts": 8, "nb201": 5}
# What a resumed run may change: how long it runs. Everything else must match the checkpoint.
RESUME_MAY_CHANGE = ("epochs",)
EPOCH_EVENT = "darts_epoch"
PT_EVENT = "darts_pt_decision"
HESSIAN_ITERS = 20


class SearchConfigError(NashError, ValueError):
    """A search configuration value that cannot be used (one line)."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def search_config(config: dict) -> dict:
    """DEFAULTS overridden by the DARTS keys of `config` (other keys are ignored: the run's
    config may hold the data set, output folder and so on), checked; `layers` None becomes the
    space's default."""
    cfg = {k: config.get(k, v) for k, v in DEFAULTS.items()}

    def choice(key, known):
        if not (isinstance(cfg[key], str) and cfg[key] in known):
            raise SearchConfigError(f"unknown {key} {cfg[key]!r} (known: {', '.join(known)})")

    choice("space", SPACES)
    choice("method", METHODS)
    choice("smooth", SMOOTHERS)
    choice("selector", SELECTORS)
    if cfg["layers"] is None:
        cfg["layers"] = SPACE_LAYERS[cfg["space"]]
    for key in ("epochs", "channels", "layers", "steps", "multiplier", "batch_size"):
        if not (_is_int(cfg[key]) and cfg[key] >= 1):
            raise SearchConfigError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if not (_is_int(cfg["pt_tune_epochs"]) and cfg["pt_tune_epochs"] >= 0):
        raise SearchConfigError(f"pt_tune_epochs must be an integer >= 0, got {cfg['pt_tune_epochs']!r}")
    for key in ("w_lr", "w_lr_min", "momentum", "wd", "grad_clip", "arch_lr", "arch_wd", "lam"):
        if not (_is_number(cfg[key]) and cfg[key] >= 0):
            raise SearchConfigError(f"{key} must be a number >= 0, got {cfg[key]!r}")
    if not (_is_number(cfg["epsilon"]) and cfg["epsilon"] > 0):
        raise SearchConfigError(f"epsilon must be a positive number, got {cfg['epsilon']!r}")
    if not (_is_number(cfg["pt_share"]) and 0 < cfg["pt_share"] < 1):
        raise SearchConfigError(f"pt_share must be between 0 and 1, got {cfg['pt_share']!r}")
    for key in ("track_hessian", "augment"):
        if not isinstance(cfg[key], bool):
            raise SearchConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    if cfg["space"] == "nb201":
        for key in ("steps", "multiplier"):
            if cfg[key] != DEFAULTS[key]:
                raise SearchConfigError(f"{key} applies to the darts space only (nb201 cells are fixed: 3 nodes)")
    elif cfg["multiplier"] > cfg["steps"]:
        raise SearchConfigError(f"multiplier ({cfg['multiplier']}) cannot exceed steps ({cfg['steps']})")
    try:
        strategy_for(cfg["method"], cfg["order"])
    except ValueError as e:
        raise SearchConfigError(str(e)) from None
    return cfg


def derived_size(space_name: str, image_size) -> tuple[int, int]:
    """Default (channels, layers) of the network derived from a search in `space_name`.
    darts: the DARTS evaluation size, 36 channels and 20 cells, for inputs of 32x32 and more;
    16 and 8 (the search size) below, where a 20-cell network has too few pixels and too few
    images to learn from in a CPU budget. nb201: the benchmark's 16 channels, 5 cells per stage."""
    if space_name == "nb201":
        return 16, 5
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return (36, 20) if min(size) >= 32 else (16, 8)


def epoch_lr(epoch: int, cfg: dict) -> float:
    """Cosine from w_lr to w_lr_min over the configured epochs, one value per epoch (reference)."""
    return cosine(epoch, cfg["epochs"], cfg["w_lr"], cfg["w_lr_min"])


def cosine(step: int, total: int, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / max(total, 1)))


def build(cfg: dict, data: DataSplits):
    """Supernet (seeded init, without disturbing the caller's global RNG), weight optimizer,
    architecture strategy."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(cfg["seed"])  # CPU only: torch.manual_seed would reseed CUDA
        if cfg["space"] == "nb201":
            supernet = NB201Supernet(cfg["channels"], data.num_classes, cfg["layers"], data.in_channels)
        else:
            supernet = Supernet(cfg["channels"], data.num_classes, cfg["layers"], data.in_channels,
                                cfg["steps"], cfg["multiplier"])
    supernet.to(data.train_x.device)
    w_optimizer = torch.optim.SGD(supernet.weights(), lr=cfg["w_lr"], momentum=cfg["momentum"],
                                  weight_decay=cfg["wd"])
    extra = {"lam": cfg["lam"]} if cfg["method"] == "milenas" else {}
    strategy = strategy_for(cfg["method"], cfg["order"])(supernet, lr=cfg["arch_lr"], weight_decay=cfg["arch_wd"],
                                                         **extra)
    return supernet, w_optimizer, strategy


def split_halves(data: DataSplits):
    """(weight-half x, y), (alpha-half x, y) of the training split (reference: 50/50, in order)."""
    n = len(data.train_x)
    if n < 2:
        raise SearchConfigError(f"{data.name}: {n} training images cannot be split into weight and alpha halves")
    half = n // 2
    return (data.train_x[:half], data.train_y[:half]), (data.train_x[half:], data.train_y[half:])


def _alphas_lists(supernet) -> dict:
    """The op weights per cell type as nested lists (softmax(alpha); NASP: its plain alphas)."""
    return {f"alphas_{cell}": [[round(v, 6) for v in row] for row in w.detach().cpu().tolist()]
            for cell, w in zip(supernet.cell_types, supernet.op_weights())}


class _Evaluated(nn.Module):
    """The supernet run with fixed op weights, as a plain module for `evaluate`."""

    def __init__(self, supernet, weights, skip_zero):
        super().__init__()
        self.supernet, self.op_weights, self.skip_zero = supernet, weights, skip_zero

    def forward(self, x):
        return self.supernet(x, *self.op_weights, skip_zero=self.skip_zero)


def search_step(supernet, strategy, w_optimizer, train_batch, val_batch, lr: float, grad_clip: float | None,
                weights=None, perturb=None):
    """One step: the alphas first (on the alpha batch), then the weights (on the weight batch)
    with the op weights the strategy gives (detached), perturbed by `perturb(supernet, weights,
    batch)` when given (smoothing). Returns (weight loss, logits, info: the strategy's and the
    smoother's scalars)."""
    info = strategy.step(supernet, train_batch, val_batch, w_optimizer, lr)
    ws = strategy.weight_step_weights(supernet)
    if perturb is not None:
        ws, extra = perturb(supernet, ws, train_batch)
        ws = supernet.apply_fixed(ws)  # a decided (PT) edge stays as decided
        info = {**info, **extra}
    x, y = train_batch
    logits = supernet(x, *ws, skip_zero=strategy.skip_zero_ops)
    loss = F.cross_entropy(logits, y)
    w_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(supernet.weights() if weights is None else weights, grad_clip)
    w_optimizer.step()
    return loss.detach(), logits.detach(), info


def train_epoch(supernet, strategy, w_optimizer, w_half, a_half, cfg, lr, generator, aug, deadline=None,
                perturb=None) -> dict:
    """One epoch of alternating steps; returns train loss/acc, the mean alpha-batch loss
    (`arch_loss`) and the mean of every other scalar the strategy (`arch_<name>`) and the
    smoother (`<name>`) report. With a `deadline` (a time.time()) the epoch ends early where
    the next step, as long as the mean step so far, would end past it (the first step always
    runs); `cut` is then True (not in an epoch's event)."""
    supernet.train()
    for group in w_optimizer.param_groups:
        group["lr"] = lr
    bs = cfg["batch_size"]
    weights = supernet.weights()
    drop_w, drop_a = len(w_half[0]) > bs, len(a_half[0]) > bs  # full batches only, when there are any
    loss_sum = correct = 0.0
    sums: dict = {}
    seen = steps = 0
    began, cut = time.time(), False
    for (xt, yt), (xv, yv) in zip(iterate_batches(*w_half, bs, generator=generator, aug=aug, drop_last=drop_w),
                                  iterate_batches(*a_half, bs, generator=generator, aug=aug, drop_last=drop_a)):
        loss, logits, info = search_step(supernet, strategy, w_optimizer, (xt, yt), (xv, yv), lr, cfg["grad_clip"],
                                         weights, perturb)
        # accumulated on the device: no host sync per step (but NASP's one: which ops its weight step runs)
        loss_sum += loss.detach() * len(yt)
        correct += (logits.detach().argmax(1) == yt).sum()
        for key, value in info.items():
            sums[key] = sums.get(key, 0.0) + value.detach()
        seen += len(yt)
        steps += 1
        if deadline is not None and time.time() + (time.time() - began) / steps > deadline:
            cut = True
            break
    seen = max(seen, 1)
    stats = {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen, "steps": steps}
    if cut:
        stats["cut"] = True
    for key, total in sums.items():
        name = "arch_loss" if key == "val_loss" else key if key.startswith("adv_") else f"arch_{key}"
        stats[name] = float(total) / max(steps, 1)
    return stats


def supernet_accuracy(supernet, x, y, weights, batch_size: int) -> float:
    """Accuracy of the supernet run with `weights` on (x, y), batch by batch, with BN in training
    mode (batch statistics, as PT measures: the authors' "disable running stats for
    projection"); BN running statistics are restored, so measuring leaves the supernet as it was."""
    buffers = [b.detach().clone() for b in supernet.buffers()]
    was_training = supernet.training
    if not was_training:  # switching walks every module: only when needed
        supernet.train()
    correct = 0
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                out = supernet(x[i:i + batch_size], *weights, skip_zero=True)
                correct += (out.argmax(1) == y[i:i + batch_size]).sum()
    finally:
        if not was_training:
            supernet.eval()
        with torch.no_grad():
            for b, s in zip(supernet.buffers(), buffers):
                b.copy_(s)
    return float(correct) / max(len(x), 1)


def run_pt(supernet, strategy, cfg, w_half, a_half, generator, aug, perturb, run: RunDir, deadline):
    """PT on the trained supernet (see `PerturbationSelector`): measurements on the alpha half,
    fine-tuning between rounds with a fresh SGD at lr w_lr / 10 (authors: the optimizer is reset
    to a tenth of the learning rate) annealed by a cosine to w_lr_min over all tuning epochs."""
    selector = PerturbationSelector(seed=cfg["seed"])
    supernet.train()  # measurements use batch statistics; switching once here, not per measurement
    optimizer = torch.optim.SGD(supernet.weights(), lr=cfg["w_lr"] / 10, momentum=cfg["momentum"],
                                weight_decay=cfg["wd"])
    total = cfg["pt_tune_epochs"] * (selector.rounds(supernet.space) - 1)
    done, epoch_seconds = [0], []

    def tune(until):
        t0, ran = time.time(), 0
        for _ in range(cfg["pt_tune_epochs"]):
            mean = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0.0
            if until is not None and time.time() + mean > until:
                break
            lr = cosine(done[0], total, cfg["w_lr"] / 10, cfg["w_lr_min"])
            t = time.time()
            train_epoch(supernet, strategy, optimizer, w_half, a_half, cfg, lr, generator, aug, until, perturb)
            epoch_seconds.append(time.time() - t)
            done[0] += 1
            ran += 1
        run.event("darts_pt_tune", epochs=ran, of=cfg["pt_tune_epochs"], seconds=round(time.time() - t0, 3))

    def accuracy(weights):
        return supernet_accuracy(supernet, *a_half, weights, cfg["batch_size"])

    def record(**fields):
        run.event(PT_EVENT, **fields)

    return selector.select(supernet, accuracy=accuracy,
                           weights=lambda: strategy.weight_step_weights(supernet),
                           tune=tune if cfg["pt_tune_epochs"] else None, record=record, deadline=deadline)


def run_search(config: dict, run: RunDir, data: DataSplits, progress=None, budget: Budget | None = None) -> dict:
    """Search (or resume the search in `run`) within `budget` (None: none); select; write
    genotype.json, genotype.txt, alphas.png, diagnostics.png.

    progress(event: dict) is called after every epoch with that epoch's event fields.
    Returns {"genotype": text, "epochs_done", "epochs", "seconds", "stopped": None | "budget",
    "val_acc", "space", "selector"}."""
    cfg = search_config(config)
    started = time.time()
    if data.train_x.device.type == "cpu":
        # as sgdr_train does: denormal floats (tiny momentum buffers and BN statistics late in a
        # search) take a slow path on x86
        torch.set_flush_denormal(True)
    supernet, w_optimizer, strategy = build(cfg, data)
    smoother = SMOOTHERS[cfg["smooth"]](seed=cfg["seed"], device=data.train_x.device)
    smoothing = not isinstance(smoother, NoSmoothing)
    w_half, a_half = split_halves(data)
    val = (data.val_x, data.val_y) if len(data.val_x) else a_half
    hessian_batch = (a_half[0][:cfg["batch_size"]], a_half[1][:cfg["batch_size"]])
    aug = data.augment if cfg["augment"] else None
    generator = make_generator(cfg["seed"], data.train_x.device)  # on a GPU: batches drawn there

    start, seconds, epoch_seconds, val_acc, selection = 0, 0.0, [], None, None
    state = run.load_checkpoint()
    if state is not None:
        old = state["config"]
        for key in DEFAULTS:
            if key not in RESUME_MAY_CHANGE and old.get(key, DEFAULTS[key]) != cfg[key]:
                raise RunDirError(f"{run.path}: its checkpoint was made with {key}={old.get(key)!r}, "
                                  f"not {cfg[key]!r}; resume with the same settings or start a new run")
        supernet.load_state_dict(state["supernet"])
        w_optimizer.load_state_dict(state["w_optimizer"])
        strategy.load_state_dict(state["arch"])
        if "smooth" in state:
            smoother.load_state_dict(state["smooth"])
        set_generator_state(generator, state["rng"]["batches"])  # a resume may change the device
        torch.set_rng_state(state["rng"]["torch"])
        start, seconds = int(state["epoch"]), float(state["seconds"])
        epoch_seconds, val_acc = list(state["epoch_seconds"]), state.get("val_acc")
        selection = state.get("selection")
        run.event("darts_resume", epoch=start)
    else:
        run.event("darts_start", params=sum(p.numel() for p in supernet.weights()),
                  w_half=len(w_half[0]), alpha_half=len(a_half[0]),
                  **{k: cfg[k] for k in ("space", "method", "order", "smooth", "selector")})

    budget = budget or Budget()
    # with PT, the last pt_share of the budget is kept for it
    training = budget.share(1 - cfg["pt_share"]) if cfg["selector"] == "pt" else budget
    stopped = None
    for epoch in range(start, cfg["epochs"]):
        # Start an epoch only if it should end within the budget (the first one always runs).
        if epoch_seconds and training.left() < sum(epoch_seconds) / len(epoch_seconds):
            stopped = "budget"
            break
        t0 = time.time()
        lr = epoch_lr(epoch, cfg)
        epsilon = epsilon_at(epoch, cfg["epochs"], cfg["epsilon"]) if smoothing else None
        perturb = partial(smoother.perturb, epsilon=epsilon) if smoothing else None
        # a budget also bounds the epoch itself: the first epoch of a big search may not fit
        stats = train_epoch(supernet, strategy, w_optimizer, w_half, a_half, cfg, lr, generator, aug,
                            training.deadline, perturb)
        cut = stats.pop("cut", False)
        val_acc, val_loss = evaluate(_Evaluated(supernet, strategy.weight_step_weights(supernet),
                                                strategy.skip_zero_ops), *val, batch_size=256,
                                  amp=False)  # fp32, as the search trains and PT measures
        genotype = supernet_genotype(supernet)
        event = dict(epoch=epoch + 1, epochs=cfg["epochs"], lr=lr, **stats, val_acc=val_acc, val_loss=val_loss,
                     genotype=str(genotype), skips=normal_skips(genotype))
        if smoothing:
            event["epsilon"] = epsilon
        if cfg["track_hessian"]:
            event["hessian_eig"] = alpha_hessian_eigenvalue(supernet, strategy, hessian_batch, HESSIAN_ITERS,
                                                            seed=cfg["seed"] + epoch)
        dt = time.time() - t0
        seconds += dt
        epoch_seconds.append(dt)
        event.update(seconds=round(dt, 3), **_alphas_lists(supernet))
        run.event(EPOCH_EVENT, **event)
        state = {
            "config": cfg, "epoch": epoch + 1, "seconds": seconds, "epoch_seconds": epoch_seconds,
            "val_acc": val_acc, "supernet": supernet.state_dict(), "w_optimizer": w_optimizer.state_dict(),
            "arch": strategy.state_dict(), "smooth": smoother.state_dict(),
            "rng": {"batches": generator.get_state(), "torch": torch.get_rng_state()},
        }
        run.save_checkpoint(state)
        selection = None
        if progress is not None:
            progress(event)
        if cut:
            stopped = "budget"
            break

    done = len(epoch_seconds)
    if selection is not None and selection.get("epoch") == done:
        genotype = get_genotype(selection["genotype"])  # PT already ran on this search's end
    elif cfg["selector"] == "pt":
        if state is not None:
            # PT fine-tunes the supernet: what the checkpoint keeps is the search's end
            state = copy.deepcopy(state)
        smoothing_end = epsilon_at(max(done - 1, 0), cfg["epochs"], cfg["epsilon"]) if smoothing else None
        genotype = run_pt(supernet, strategy, cfg, w_half, a_half, generator, aug,
                          partial(smoother.perturb, epsilon=smoothing_end) if smoothing else None, run,
                          budget.deadline)
        if state is not None:
            state["selection"] = {"epoch": done, "genotype": str(genotype)}
            run.save_checkpoint(state)
    else:
        genotype = SELECTORS[cfg["selector"]]().select(supernet)
    run.write_json("genotype.json", genotype.to_json())
    atomic_write_bytes(run.path / "genotype.txt", (str(genotype) + "\n").encode())
    events = run.events(EPOCH_EVENT)
    plot_alphas(events, run.path / "alphas.png", supernet.space)
    plot_diagnostics(events, run.path / "diagnostics.png")
    run.event("darts_done", genotype=str(genotype), epochs_done=done, seconds=round(seconds, 3), stopped=stopped,
              selector=cfg["selector"], total_seconds=round(time.time() - started, 3))
    return {"genotype": str(genotype), "epochs_done": done, "epochs": cfg["epochs"], "seconds": seconds,
            "stopped": stopped, "val_acc": val_acc, "space": cfg["space"], "selector": cfg["selector"]}


def train_genotype(genotype, data: DataSplits, epochs: int, channels: int | None = None, layers: int | None = None,
                   lr: float = 0.025, lr_end: float = 0.0, batch_size: int = 96, momentum: float = 0.9,
                   weight_decay: float = 3e-4, auxiliary: bool | None = None, aux_weight: float = 0.4,
                   drop_path: float = 0.2, cutout: int | None = None, grad_clip: float = 5.0, seed: int = 0,
                   on_epoch=None, deadline: float | None = None):
    """Lower `genotype` (DARTS or NAS-Bench-201) and train it from scratch as DARTS evaluates a
    cell (batch 96, lr 0.025 cosine to 0, wd 3e-4, auxiliary weight 0.4, drop path 0.2 ramped
    linearly, cutout 16, grad clip 5). Returns (net, result dict).

    channels, layers None: `derived_size` of the genotype's space (DARTS: 36 channels and 20
    cells for 32x32 inputs, else 16 and 8; NAS-Bench-201: 16 channels, 5 cells per stage).
    auxiliary=None: on where it fits (DARTS, an 8x8 map at 2/3 depth, i.e. 32x32 inputs);
    NAS-Bench-201 networks have none. cutout=None: 16 for DARTS networks on inputs of at least
    32x32, else off (the benchmark trains without it)."""
    genotype = get_genotype(genotype)
    size = tuple(data.image_size)
    nb201 = isinstance(genotype, NB201Genotype)
    default_channels, default_layers = derived_size(genotype_space(genotype).name, size)
    channels = default_channels if channels is None else channels
    layers = default_layers if layers is None else layers
    if auxiliary is None:
        auxiliary = not nb201 and min(size) >= 32
    if cutout is None:
        cutout = 16 if not nb201 and min(size) >= 32 else 0
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA
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
