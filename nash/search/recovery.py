"""Recovery after an approximate (shrinking) move: a short distillation of the child toward its
parent's outputs.

    rec = recover(child, parent, data.train_x, steps=40, lr=0.05, seed=7)   # child trained in place

Why distillation rather than plain training on the labels at the step's learning rate: a
shrink moves a trained network's function a little; what is worth getting back is that
function, the parent's training (LEMONADE's Lamarckian inheritance), not a fresh fit to the
labels, which the child's ordinary training does right after. The parent's logits are a dense
target (every class's score for every image, not one label), so a few steps recover more than
as many label steps would, and recovery needs no labels, so it cannot overfit them. The loss is
the mean squared difference of the logits rather than a KL between softmaxes: it is zero only
where the child computes the parent's function, the logits' scale included (a KL ignores a
shift of one image's logits, under which the child's cross-entropy would still differ).

The child trains in train mode (its BN statistics re-estimated after the move changed what
flows through them) against the parent in eval mode (the function that was evaluated). Draws
come from a generator of `seed`: the same call gives the same child on the same device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import iterate_batches, make_generator
from ..train import autocast_for, cosine_lr

MOMENTUM = 0.9
# a freshly shrunk child can start far off on a few images (a removed block); clipping keeps the
# first steps from throwing the inherited weights away
GRAD_CLIP = 5.0


@dataclass
class Recovery:
    steps: int
    loss_first: float  # the distillation loss of the first batch (before any step)
    loss_last: float  # of the last batch
    seconds: float
    failed: str | None = None  # a non-finite loss: the child is left as it was


def recover(child: nn.Module, parent: nn.Module, x: torch.Tensor, steps: int, lr: float, batch_size: int = 128,
            seed: int = 0, aug=None) -> Recovery:
    """Train `child` in place for `steps` SGD steps toward `parent`'s logits on batches of `x`
    (the training images, on the device to train on), the learning rate annealed from `lr` to 0
    over the steps. A non-finite loss puts the child's weights back and says so in `failed`."""
    device = x.device
    t0 = time.time()
    child.to(device=device, memory_format=torch.channels_last).train()
    parent.to(device=device, memory_format=torch.channels_last).eval()
    saved = {k: v.detach().clone() for k, v in child.state_dict().items()}
    opt = torch.optim.SGD([p for p in child.parameters() if p.requires_grad], lr=lr, momentum=MOMENTUM)
    gen = make_generator(seed, device)
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=device)  # iterate_batches wants some; unused
    drop_last = x.shape[0] > batch_size  # as sgdr_train: no 1-image last batch through BN
    done, first, last = 0, math.nan, math.nan
    total = max(1, int(steps))
    while done < total:
        for xb, _ in iterate_batches(x, labels, batch_size, shuffle=True, generator=gen, aug=aug, drop_last=drop_last):
            if done >= total:
                break
            xb = xb.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(done, total, lr, 0.0)
            with torch.no_grad(), autocast_for(device):
                target = parent(xb).float()
            with autocast_for(device):
                loss = F.mse_loss(child(xb).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(child.parameters(), GRAD_CLIP)
            opt.step()
            value = float(loss.detach())  # one sync per step: recovery is tens of steps
            if done == 0:
                first = value
            last = value
            done += 1
            if not math.isfinite(value):
                child.load_state_dict(saved)
                return Recovery(done, first, last, time.time() - t0, failed=f"non-finite loss at recovery step {done}")
    return Recovery(done, first, last, time.time() - t0)


@torch.no_grad()
def output_distance(parent: nn.Module, child: nn.Module, x: torch.Tensor) -> float:
    """The mean squared difference of the two networks' logits on `x`, both in eval mode (what
    recovery minimises, measured as the networks are evaluated). Each module's train/eval flag
    is put back afterwards."""
    flags = [(m, m.training) for net in (parent, child) for m in net.modules()]
    try:
        parent.eval()
        child.eval()
        with autocast_for(x.device):
            return float(F.mse_loss(child(x).float(), parent(x).float()))
    finally:
        for m, training in flags:
            m.training = training
