"""sgdr_train: one cosine cycle of SGD (SGDR as NASH uses it), and evaluate.

Readable top to bottom on purpose (nanoGPT/airbench style): the data set is already on the
device as one tensor, batches are slices of it, augmentation runs on tensors. The learning
rate anneals per step from lr_start to lr_end over the call's epochs. On a CPU, call
nash.allocator.keep_freed_memory() once per process first (the nash CLI does): at 3x32x32 it
saves every step faulting its activations in afresh.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import iterate_batches, make_generator, mixup


@dataclass
class TrainResult:
    train_loss: float
    train_acc: float  # on the augmented training batches, so a lower bound in spirit
    epochs: int
    steps: int
    seconds: float
    images: int
    failed: str | None = None  # why training stopped early (a non-finite loss), else None
    opt_state: dict | None = None  # the optimizer's state (momentum), to continue the cycle later


def cosine_lr(step: float, total: float, lr_start: float, lr_end: float) -> float:
    return lr_end + 0.5 * (lr_start - lr_end) * (1 + math.cos(math.pi * step / max(total, 1)))


def param_groups(net: nn.Module, weight_decay: float, decay_all: bool = False):
    """Weight decay on conv/linear weights only: not on BN, biases or NASH's merge weights
    (unless `decay_all`, as the DARTS reference trains its evaluation networks)."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 or decay_all else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def precision_for(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training and evaluation on `device`; None: fp32.

    CPU: fp32 (exactness: same seed, same climb; speed). CUDA: bf16 where the GPU has it (Ampere
    on): fp32's range, so no loss scaling. Elsewhere (V100, T4) bf16 would only be emulated, so
    fp16, which sgdr_train pairs with a GradScaler."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _native_bf16(device) else torch.float16


def _native_bf16(device: torch.device) -> bool:
    with torch.cuda.device(device):  # is_bf16_supported asks about the current device
        return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast_for(device: torch.device):
    dtype = precision_for(device)
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def sgdr_train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: float, lr_start: float = 0.05,
               lr_end: float = 0.0, batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 5e-4,
               aug=None, mixup_alpha: float = 0.0, grad_clip: float | None = None, aux_weight: float = 0.0,
               drop_path: float = 0.0, seed: int = 0, on_epoch=None, deadline: float | None = None,
               decay_all: bool = False, cycle: tuple[float, float] = (0.0, 1.0),
               opt_state: dict | None = None, on_step=None) -> TrainResult:
    """Train `net` in place for `epochs` epochs of one cosine cycle; return what happened.

    epochs may be fractional (a budget's last epoch): the cycle is then round(epochs * steps per
    epoch) optimizer steps, the last epoch cut short where they end, so the learning rate still
    reaches lr_end at the end of the time there is.

    cycle: the part (u0, u1) of one cosine cycle these epochs cover, 0 <= u0 <= u1 <= 1 (default:
    the whole cycle). A climb trains its lineage in such slices, so the pieces a network goes
    through add up to one cycle; (0, 0) holds the learning rate at lr_start.
    opt_state: an earlier slice's `TrainResult.opt_state` for the same network, so a cycle
    trained in slices keeps its momentum.

    x, y: the training tensors, on the device to train on (the net is moved there).
    drop_path: the final drop-path probability, ramped linearly over epochs (DARTS evaluation).
    aux_weight: weight of the auxiliary heads' loss, when the net has any.
    decay_all: weight decay on every parameter, BN and biases too (the DARTS reference's choice).
    on_epoch(epoch, result_so_far): progress callback.
    on_step(step, total): called after each optimizer step (1..total), e.g. to average weights.
    deadline: a time.time() after which training stops, at the next optimizer step (`epochs`
    then counts the part of the last epoch trained).
    A non-finite loss stops training at the end of its epoch and is reported in `failed`, never
    raised."""
    device = x.device
    # channels_last everywhere: oneDNN's and cuDNN's fast conv layout (experiments/bench_train.py)
    net.to(device=device, memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.SGD(param_groups(net, weight_decay, decay_all), lr=lr_start, momentum=momentum)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    gen = make_generator(seed, device)  # CPU: today's streams; GPU: draws on the GPU, no host sync
    dtype = precision_for(device)
    # fp16 (a GPU without bf16) needs loss scaling; the scaler's step reads its inf check on the
    # host, one sync per step that only this fallback pays
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    n = x.shape[0]
    drop_last = n > batch_size  # a 1-sample last batch would break BN on 1x1 maps
    steps_per_epoch = n // batch_size if drop_last else 1
    u0, u1 = cycle
    if not 0.0 <= u0 <= u1 <= 1.0:
        raise ValueError(f"cycle {cycle} is not a part (u0, u1) of [0, 1]")
    total = max(1, round(epochs * steps_per_epoch))
    has_aux = bool(getattr(net, "_aux", None)) and aux_weight > 0
    drop_modules = [m for m in net.modules() if hasattr(m, "drop_prob")]
    step, images, t0 = 0, 0, time.time()
    loss_sum = correct = seen = 0.0
    failed = None
    done_epochs = 0
    for epoch in range(math.ceil(epochs)):
        for m in drop_modules:
            m.drop_prob = drop_path * (u0 + (u1 - u0) * epoch / max(epochs, 1))
        loss_sum = correct = seen = 0.0
        epoch_began, cut = step, False
        for xb, yb in iterate_batches(x, y, batch_size, shuffle=True, generator=gen, aug=aug, drop_last=drop_last):
            if step >= total:  # a fractional last epoch ends here
                break
            # past the deadline mid-epoch: stop now, not at the epoch's end (an epoch of a large
            # data set on a CPU can take minutes); a call always makes at least one step
            if deadline is not None and step > epoch_began and time.time() > deadline:
                cut = True
                break
            xb = xb.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(u0 + (u1 - u0) * step / total, 1.0, lr_start, lr_end)
            if mixup_alpha > 0:
                xb, ya, yb2, lam = mixup(xb, yb, mixup_alpha, gen)
            with autocast_for(device):
                if has_aux:
                    out, auxes = net.forward_with_aux(xb)
                else:
                    out, auxes = net(xb), []
                out = out.float()
                if mixup_alpha > 0:
                    loss = lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb2)
                else:
                    loss = F.cross_entropy(out, yb)
                for a in auxes:
                    loss = loss + aux_weight * F.cross_entropy(a.float(), yb)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip and step on the true gradients
            if grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)
                scaler.update()
            step += 1
            if on_step is not None:
                on_step(step, total)
            images += xb.shape[0]
            # accumulate on the device: no host sync per step (but the fp16 fallback's scaler)
            loss_sum += loss.detach() * xb.shape[0]
            correct += (out.detach().argmax(1) == yb).sum()
            seen += xb.shape[0]
        # a non-finite loss shows in the epoch's sum: one host sync per epoch, not per step
        if not math.isfinite(float(loss_sum)):
            failed = f"non-finite loss in epoch {epoch + 1}"
            break
        # a whole epoch, or the part of one trained (a fractional last epoch, a deadline mid-epoch)
        part = (step - epoch_began) / steps_per_epoch
        done_epochs = epoch + 1 if part >= 1 else epoch + part
        if on_epoch is not None:
            on_epoch(done_epochs, _result(loss_sum, correct, seen, done_epochs, step, t0, images, None))
        if cut or (deadline is not None and time.time() > deadline):
            break
    result = _result(loss_sum, correct, seen, done_epochs, step, t0, images, failed)
    result.opt_state = opt.state_dict()
    return result


def _result(loss_sum, correct, seen, epochs, steps, t0, images, failed) -> TrainResult:
    seen = max(float(seen), 1.0)
    return TrainResult(float(loss_sum) / seen, float(correct) / seen, epochs, steps, time.time() - t0, images, failed)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             amp: bool = True) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode, in sgdr_train's precision (`precision_for`);
    amp=False: in fp32 everywhere (for a model trained in fp32, e.g. the DARTS supernet)."""
    device = x.device
    net.to(device=device, memory_format=torch.channels_last).eval()
    correct = loss = 0.0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast_for(device) if amp else nullcontext():
            out = net(xb).float()
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    n = max(x.shape[0], 1)
    return float(correct) / n, float(loss) / n
