"""The DARTS-family search driver: train a supernet's weights and alphas in turn, per epoch log
and checkpoint, and select the genotype at the end.

    summary = run_search({"method": "darts", "order": 2, "epochs": 50}, RunDir.create(path, config), data)

The settings and their defaults are one dataclass, `SearchSettings` (config.py); a dict of them
works as well.

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
ends with the same alphas as an uninterrupted run (on CPU, bit for bit). Every draw comes from
a generator of the search's own (inits are seeded apart, the smoother, PT and the Hessian
estimate have theirs): torch's global generator is neither used nor set. PT starts over from
the search's end after an interruption; once done, its genotype is stored in the checkpoint.

Budget (a `nash.search.budget.Budget`, the search's share of the run's): an epoch starts only
if one as long as the mean epoch so far fits (`Budget.epochs_that_fit`), and a step only if it
should end a report's reserve before the deadline (from the mean step so far, or the last where
that is longer: one SDARTS-ADV step is ten forward-backward passes, and the first steps of a
process are slower still, so a check after the step alone lets one step overrun by its whole
length). The first step always runs. With the PT selector the first 1 - `pt_share` of the
budget trains and the rest is PT's, whose measurements come first and whose fine-tuning takes
what is left.

`run_search` reads top to bottom: the settings (config.py), `prepare` and `restore` the search,
`search_epochs`, `select_genotype`, `write_outputs`. Process-wide state (denormal flushing,
thread counts) is the caller's: the nash CLI sets it once at its start.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nash.data import DataSplits, iterate_batches, make_generator, set_generator_state
from nash.rundir import RunDir, RunDirError, atomic_write_bytes
from nash.search.budget import Budget
from nash.train import evaluate

from .architect import ArchStrategy, strategy_for
from .config import SPACE_LAYERS, SearchConfigError, SearchSettings  # noqa: F401 (re-exported)
from .derived import derived_size, train_genotype  # noqa: F401 (re-exported)
from .diagnostics import alpha_hessian_eigenvalue, normal_skips
from .genotype import get_genotype
from .plots import plot_alphas, plot_diagnostics
from .selection import SELECTORS, PerturbationSelector, supernet_genotype
from .smoothing import SMOOTHERS, NoSmoothing, Smoother, epsilon_at
from .supernet import NB201Supernet, Supernet

# the settings' defaults as a dict (`layers` None: the space's default); SearchSettings holds them
DEFAULTS = SearchSettings().settings_dict()
RESUME_MAY_CHANGE = SearchSettings.RESUME_MAY_CHANGE
EPOCH_EVENT = "darts_epoch"
PT_EVENT = "darts_pt_decision"
HESSIAN_ITERS = 20


def search_config(config) -> SearchSettings:
    """The search's settings from a dict (keys that are not settings are ignored: the run's
    config may hold the data set, output folder and so on) or from a dataclass that has them,
    checked (SearchConfigError, one line); `layers` None becomes the space's default."""
    return SearchSettings.of(config)


def epoch_lr(epoch: int, cfg: SearchSettings) -> float:
    """Cosine from w_lr to w_lr_min over the configured epochs, one value per epoch (reference)."""
    return cosine(epoch, cfg.epochs, cfg.w_lr, cfg.w_lr_min)


def cosine(step: int, total: int, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / max(total, 1)))


def build(cfg, data: DataSplits):
    """Supernet (seeded init, without disturbing the caller's global RNG), weight optimizer,
    architecture strategy, for `cfg` (SearchSettings, or a dict of them)."""
    cfg = SearchSettings.of(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(cfg.seed)  # CPU only: torch.manual_seed would reseed CUDA
        if cfg.space == "nb201":
            supernet = NB201Supernet(cfg.channels, data.num_classes, cfg.layers, data.in_channels)
        else:
            supernet = Supernet(cfg.channels, data.num_classes, cfg.layers, data.in_channels, cfg.steps,
                                cfg.multiplier)
    supernet.to(data.train_x.device)
    w_optimizer = torch.optim.SGD(supernet.weights(), lr=cfg.w_lr, momentum=cfg.momentum, weight_decay=cfg.wd)
    extra = {"lam": cfg.lam} if cfg.method == "milenas" else {}
    strategy = strategy_for(cfg.method, cfg.order)(supernet, lr=cfg.arch_lr, weight_decay=cfg.arch_wd, **extra)
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
    the next step, as long as the mean step so far or the last step, whichever is longer, would
    end past it (the first step always runs); `cut` is then True (not in an epoch's event)."""
    supernet.train()
    for group in w_optimizer.param_groups:
        group["lr"] = lr
    bs = cfg.batch_size
    weights = supernet.weights()
    drop_w, drop_a = len(w_half[0]) > bs, len(a_half[0]) > bs  # full batches only, when there are any
    loss_sum = correct = 0.0
    sums: dict = {}
    seen = steps = 0
    began = last = time.time()
    cut = False
    for (xt, yt), (xv, yv) in zip(iterate_batches(*w_half, bs, generator=generator, aug=aug, drop_last=drop_w),
                                  iterate_batches(*a_half, bs, generator=generator, aug=aug, drop_last=drop_a)):
        loss, logits, info = search_step(supernet, strategy, w_optimizer, (xt, yt), (xv, yv), lr, cfg.grad_clip,
                                         weights, perturb)
        # accumulated on the device: no host sync per step (but NASP's one: which ops its weight step runs)
        loss_sum += loss.detach() * len(yt)
        correct += (logits.detach().argmax(1) == yt).sum()
        for key, value in info.items():
            sums[key] = sums.get(key, 0.0) + value.detach()
        seen += len(yt)
        steps += 1
        if deadline is not None:
            # the next step as long as the mean step, or as the last where steps grow slower
            # (other jobs on a shared CPU): a step started on the mean alone overran its share
            now = time.time()
            step, last = max((now - began) / steps, now - last), now
            if now + step > deadline:
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
    selector = PerturbationSelector(seed=cfg.seed)
    supernet.train()  # measurements use batch statistics; switching once here, not per measurement
    optimizer = torch.optim.SGD(supernet.weights(), lr=cfg.w_lr / 10, momentum=cfg.momentum,
                                weight_decay=cfg.wd)
    total = cfg.pt_tune_epochs * (selector.rounds(supernet.space) - 1)
    done, epoch_seconds = [0], []

    def tune(until):
        t0, ran = time.time(), 0
        for _ in range(cfg.pt_tune_epochs):
            mean = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0.0
            if until is not None and time.time() + mean > until:
                break
            lr = cosine(done[0], total, cfg.w_lr / 10, cfg.w_lr_min)
            t = time.time()
            train_epoch(supernet, strategy, optimizer, w_half, a_half, cfg, lr, generator, aug, until, perturb)
            epoch_seconds.append(time.time() - t)
            done[0] += 1
            ran += 1
        run.event("darts_pt_tune", epochs=ran, of=cfg.pt_tune_epochs, seconds=round(time.time() - t0, 3))

    def accuracy(weights):
        return supernet_accuracy(supernet, *a_half, weights, cfg.batch_size)

    def record(**fields):
        run.event(PT_EVENT, **fields)

    return selector.select(supernet, accuracy=accuracy,
                           weights=lambda: strategy.weight_step_weights(supernet),
                           tune=tune if cfg.pt_tune_epochs else None, record=record, deadline=deadline)


@dataclass
class Search:
    """A search in progress: its parts, the splits it trains on and how far it got (what its
    checkpoint holds)."""
    cfg: SearchSettings
    supernet: nn.Module
    w_optimizer: torch.optim.Optimizer
    strategy: ArchStrategy
    smoother: Smoother
    generator: torch.Generator  # the batch order's (and augmentation's); nothing draws from torch's global one
    w_half: tuple
    a_half: tuple
    val: tuple
    aug: object
    epochs_done: int = 0
    seconds: float = 0.0
    epoch_seconds: list = field(default_factory=list)
    val_acc: float | None = None
    selection: dict | None = None  # {"epoch", "genotype"}: PT's, once it ran on that epoch's end
    saved: dict | None = None  # the state the last checkpoint holds

    def perturbation(self, epoch: int):
        """(epsilon, perturb) of the smoother at `epoch` (its epsilon ramped); (None, None)
        without smoothing."""
        if isinstance(self.smoother, NoSmoothing):
            return None, None
        epsilon = epsilon_at(epoch, self.cfg.epochs, self.cfg.epsilon)
        return epsilon, partial(self.smoother.perturb, epsilon=epsilon)

    def state(self) -> dict:
        """The checkpoint's contents; the supernet's tensors by reference, so it is saved (or
        copied) before they change."""
        return {"config": self.cfg.settings_dict(), "epoch": self.epochs_done, "seconds": self.seconds,
                "epoch_seconds": list(self.epoch_seconds), "val_acc": self.val_acc,
                "supernet": self.supernet.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
                "arch": self.strategy.state_dict(), "smooth": self.smoother.state_dict(),
                "rng": {"batches": self.generator.get_state()}}


def prepare(cfg: SearchSettings, data: DataSplits) -> Search:
    """A new search: the supernet and its optimizers, the smoother, the batch order, the data's
    halves (weights, alphas) and the split the supernet is scored on."""
    supernet, w_optimizer, strategy = build(cfg, data)
    w_half, a_half = split_halves(data)
    device = data.train_x.device
    return Search(cfg, supernet, w_optimizer, strategy, smoother=SMOOTHERS[cfg.smooth](seed=cfg.seed, device=device),
                  generator=make_generator(cfg.seed, device),  # on a GPU: batches drawn there
                  w_half=w_half, a_half=a_half, val=(data.val_x, data.val_y) if len(data.val_x) else a_half,
                  aug=data.augment if cfg.augment else None)


def restore(search: Search, run: RunDir) -> bool:
    """Continue `search` from the checkpoint in `run`, if it has one (made with the same
    settings but RESUME_MAY_CHANGE, else RunDirError); whether it had."""
    state = run.load_checkpoint()
    if state is None:
        return False
    old = state["config"]
    for key, value in search.cfg.settings_dict().items():
        if key not in RESUME_MAY_CHANGE and old.get(key, DEFAULTS[key]) != value:
            raise RunDirError(f"{run.path}: its checkpoint was made with {key}={old.get(key)!r}, "
                              f"not {value!r}; resume with the same settings or start a new run")
    search.supernet.load_state_dict(state["supernet"])
    search.w_optimizer.load_state_dict(state["w_optimizer"])
    search.strategy.load_state_dict(state["arch"])
    if "smooth" in state:
        search.smoother.load_state_dict(state["smooth"])
    # a resume may change the device; an older checkpoint's "torch" entry (the global
    # generator's state) is ignored: the search draws nothing from it
    set_generator_state(search.generator, state["rng"]["batches"])
    search.epochs_done, search.seconds = int(state["epoch"]), float(state["seconds"])
    search.epoch_seconds, search.val_acc = list(state["epoch_seconds"]), state.get("val_acc")
    search.selection, search.saved = state.get("selection"), state
    return True


def search_epoch(search: Search, epoch: int, deadline: float | None) -> tuple[dict, bool]:
    """Train epoch `epoch` (from 0; cut short where its next step would end past `deadline`)
    and score the supernet on the validation split: (the epoch's event fields, whether it was
    cut)."""
    cfg = search.cfg
    t0 = time.time()
    lr = epoch_lr(epoch, cfg)
    epsilon, perturb = search.perturbation(epoch)
    stats = train_epoch(search.supernet, search.strategy, search.w_optimizer, search.w_half, search.a_half, cfg, lr,
                        search.generator, search.aug, deadline, perturb)
    cut = stats.pop("cut", False)
    evaluated = _Evaluated(search.supernet, search.strategy.weight_step_weights(search.supernet),
                           search.strategy.skip_zero_ops)
    search.val_acc, val_loss = evaluate(evaluated, *search.val, batch_size=256,
                                        amp=False)  # fp32, as the search trains and PT measures
    genotype = supernet_genotype(search.supernet)
    event = dict(epoch=epoch + 1, epochs=cfg.epochs, lr=lr, **stats, val_acc=search.val_acc, val_loss=val_loss,
                 genotype=str(genotype), skips=normal_skips(genotype))
    if epsilon is not None:
        event["epsilon"] = epsilon
    if cfg.track_hessian:
        batch = (search.a_half[0][:cfg.batch_size], search.a_half[1][:cfg.batch_size])
        event["hessian_eig"] = alpha_hessian_eigenvalue(search.supernet, search.strategy, batch, HESSIAN_ITERS,
                                                        seed=cfg.seed + epoch)
    seconds = time.time() - t0
    search.epochs_done, search.seconds = epoch + 1, search.seconds + seconds
    search.epoch_seconds.append(seconds)
    event.update(seconds=round(seconds, 3), **_alphas_lists(search.supernet))
    return event, cut


def search_epochs(search: Search, run: RunDir, budget: Budget, progress=None) -> str | None:
    """The search's epochs from where it stands to `epochs`, each logged and checkpointed.
    Within `budget` (with PT, its first 1 - pt_share): an epoch starts only where one, as long as
    the mean epoch so far, fits (the first always starts), and is cut short where it does not.
    Returns "budget" where the budget stopped it, else None."""
    cfg = search.cfg
    training = budget.share(1 - cfg.pt_share) if cfg.selector == "pt" else budget
    # steps stop short of the deadline by the reserve an epoch's end takes (the validation pass,
    # the checkpoint, the plots), so that the search ends within its share
    steps_until = None if training.deadline is None else training.deadline - training.reserve(0.0)
    for epoch in range(search.epochs_done, cfg.epochs):
        if search.epoch_seconds and training.epochs_that_fit(statistics.fmean(search.epoch_seconds)) < 1:
            return "budget"
        event, cut = search_epoch(search, epoch, steps_until)
        run.event(EPOCH_EVENT, **event)
        search.saved, search.selection = search.state(), None
        run.save_checkpoint(search.saved)
        if progress is not None:
            progress(event)
        if cut:
            return "budget"
    return None


def select_genotype(search: Search, run: RunDir, budget: Budget):
    """The genotype of the search's end, by its selector. PT fine-tunes the supernet, so the
    checkpoint keeps the search's end and, once PT is done, its genotype; an interrupted PT
    starts over."""
    cfg = search.cfg
    if search.selection is not None and search.selection.get("epoch") == search.epochs_done:
        return get_genotype(search.selection["genotype"])  # PT already ran on this search's end
    if cfg.selector != "pt":
        return SELECTORS[cfg.selector]().select(search.supernet)
    saved = copy.deepcopy(search.saved)  # before PT changes the tensors it refers to
    _, perturb = search.perturbation(max(search.epochs_done - 1, 0))
    genotype = run_pt(search.supernet, search.strategy, cfg, search.w_half, search.a_half, search.generator,
                      search.aug, perturb, run, budget.deadline)
    if saved is not None:
        saved["selection"] = {"epoch": search.epochs_done, "genotype": str(genotype)}
        run.save_checkpoint(saved)
    return genotype


def write_outputs(run: RunDir, genotype, space) -> None:
    """genotype.json, genotype.txt, and the plots of the epochs' events (alphas.png,
    diagnostics.png)."""
    run.write_json("genotype.json", genotype.to_json())
    atomic_write_bytes(run.path / "genotype.txt", (str(genotype) + "\n").encode())
    events = run.events(EPOCH_EVENT)
    plot_alphas(events, run.path / "alphas.png", space)
    plot_diagnostics(events, run.path / "diagnostics.png")


def run_search(config, run: RunDir, data: DataSplits, progress=None, budget: Budget | None = None) -> dict:
    """Search (or resume the search in `run`) within `budget` (None: none); select; write
    genotype.json, genotype.txt, alphas.png, diagnostics.png.

    config: the settings (SearchSettings, a DartsConfig, or a dict; see `search_config`).
    progress(event: dict) is called after every epoch with that epoch's event fields.
    Returns {"genotype": text, "epochs_done", "epochs", "seconds", "stopped": None | "budget",
    "val_acc", "space", "selector"}."""
    cfg = search_config(config)
    started = time.time()
    search = prepare(cfg, data)
    if restore(search, run):
        run.event("darts_resume", epoch=search.epochs_done)
    else:
        run.event("darts_start", params=sum(p.numel() for p in search.supernet.weights()),
                  w_half=len(search.w_half[0]), alpha_half=len(search.a_half[0]),
                  **{k: getattr(cfg, k) for k in ("space", "method", "order", "smooth", "selector")})
    budget = budget or Budget()
    stopped = search_epochs(search, run, budget, progress)
    genotype = select_genotype(search, run, budget)
    write_outputs(run, genotype, search.supernet.space)
    done = search.epochs_done
    run.event("darts_done", genotype=str(genotype), epochs_done=done, seconds=round(search.seconds, 3),
              stopped=stopped, selector=cfg.selector, total_seconds=round(time.time() - started, 3))
    return {"genotype": str(genotype), "epochs_done": done, "epochs": cfg.epochs, "seconds": search.seconds,
            "stopped": stopped, "val_acc": search.val_acc, "space": cfg.space, "selector": cfg.selector}
