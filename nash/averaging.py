"""Scoring a network on the mean of its weights across a training slice (as SWA does, Izmailov
et al. 2018), its BatchNorm statistics recomputed for those weights.

Why: a climb's step compares candidates after a short slice at a high learning rate, and the
last iterate of such a slice is noisy. Measured (experiments/child_slice.py, Fashion-MNIST 10k,
a one-epoch slice at 40% of the cycle): the same parent trained again with another batch order
scores within +-0.039 of itself on the last iterate, more than any child differs from its
parent, so the step's winner is drawn by the noise. The mean of 5 snapshots across the slice
scores within +-0.0026, and higher. The lineage keeps training its last iterate: the average
is what a candidate is judged on, not what it continues from.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .train import autocast_for

BN_IMAGES = 4096  # training images whose statistics the averaged network's BatchNorms take
BN_BATCH = 256


class SnapshotAverage:
    """Sum of a network's parameters at `k` points evenly spaced over a training call, the last at
    its end: pass it as sgdr_train's on_step. k <= 1: only the last iterate (no copy is kept)."""

    def __init__(self, net: nn.Module, k: int):
        self.net = net
        self.k = max(int(k), 1)
        self.total = None
        self.points: set[int] = set()
        self.sums: list[torch.Tensor] | None = None
        self.count = 0

    def __call__(self, step: int, total: int) -> None:
        if self.k <= 1:
            return
        if total != self.total:
            self.total = total
            self.points = {max(1, round(total * (i + 1) / self.k)) for i in range(self.k)}
        if step not in self.points:
            return
        with torch.no_grad():
            params = [p.detach().float() for p in self.net.parameters()]
            if self.sums is None:
                self.sums = [p.clone() for p in params]
            else:
                for s, p in zip(self.sums, params):
                    s.add_(p)
        self.count += 1

    def network(self, bn_images: torch.Tensor) -> nn.Module:
        """The network to score: a copy with the mean of the snapshots as its parameters and its
        BatchNorm statistics recomputed over `bn_images` (cumulative, in train mode). Fewer than
        two snapshots (k <= 1, or a call cut short before its second point): the network itself."""
        if self.count < 2:
            return self.net
        avg = copy.deepcopy(self.net)
        with torch.no_grad():
            for p, s in zip(avg.parameters(), self.sums):
                p.copy_((s / self.count).to(p.dtype))
        recompute_bn(avg, bn_images)
        return avg


@torch.no_grad()
def recompute_bn(net: nn.Module, x: torch.Tensor, batch: int = BN_BATCH) -> None:
    """Reset the running statistics of `net`'s BatchNorms and take them over `x` as plain means
    of the batches' statistics (momentum None, as torch's SWA update_bn), in train mode, with
    drop-path off; the net's mode is restored."""
    was_training = net.training
    net.train()
    # a BN held in eval mode whatever train() says (frozen on purpose) keeps its statistics
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not bns:
        net.train(was_training)
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    saved = [(m, m.drop_prob) for m in net.modules() if hasattr(m, "drop_prob")]
    for m, _ in saved:
        m.drop_prob = 0.0
    x = x.to(next(net.parameters()).device)
    with autocast_for(x.device):
        for i in range(0, x.shape[0], batch):
            net(x[i:i + batch].contiguous(memory_format=torch.channels_last))
    for m, p in saved:
        m.drop_prob = p
    net.train(was_training)
