"""The DARTS supernet: every edge of a cell runs every op, mixed by softmax(alpha).

Architecture parameters (`alphas_normal`, `alphas_reduce`, one row per edge, one column per
op) are registered parameters, so they move with `.to()`, save with `state_dict()` and load
back, but they are handed out apart from the weights: `arch_parameters()` for the architect's
optimizer, `weights()` for the weight optimizer. The two lists are disjoint and together are
`parameters()`.

`forward` takes optional explicit op weights. With none given it uses softmax(alpha) (DARTS);
SDARTS passes perturbed softmax weights, NASP one-hot ones, and the weight step passes detached
ones so that no graph towards the alphas is built when only the weights learn.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DARTS_SPACE, OPS, FactorizedReduce, ReLUConvBN, SearchSpace, Zero, is_pool


class MixedOp(nn.Module):
    """One edge: sum_k w_k * op_k(x)."""

    def __init__(self, C: int, stride: int, op_names):
        super().__init__()
        ops = []
        for name in op_names:
            # affine=False in the search ops: a learned BN scale would compete with alpha for the
            # same role (reference choice).
            op = OPS[name](C, stride, False)
            if is_pool(name):
                # The reference follows the parameter-free pools with a BN in the search model
                # only, so their outputs are on the same scale as the convs' BN outputs.
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        # 'none' adds w * 0: nothing to the output and nothing to any gradient, so it is not run.
        self._run = [not isinstance(op, Zero) for op in self.ops]

    def forward(self, x, weights):
        out = None
        for k, op in enumerate(self.ops):
            if self._run[k]:
                y = weights[k] * op(x)
                out = y if out is None else out + y
        if out is None:  # an edge of nothing but 'none'
            out = self.ops[0](x) * weights[0]
        return out


class SearchCell(nn.Module):
    def __init__(self, space: SearchSpace, multiplier: int, c_prev_prev: int, c_prev: int, C: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.steps = space.steps
        self.multiplier = multiplier
        # The cell before a reduction cell has twice the resolution of the one before this one
        # when the previous cell reduced: the skip input s0 must be reduced too.
        self.preprocess0 = (FactorizedReduce(c_prev_prev, C, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, C, 1, 1, 0, affine=False)
        # Only edges leaving the cell's input nodes stride in a reduction cell.
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and src < space.num_inputs else 1, space.ops) for src, _ in space.edges)

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(self.steps):
            node = None
            for h in states:
                y = self.edges[e](h, weights[e])
                node = y if node is None else node + y
                e += 1
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)


def reduction_layers(layers: int) -> tuple[int, int]:
    """Cells that halve the resolution and double the channels: at 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


class Supernet(nn.Module):
    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, in_channels: int = 3, steps: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, space: SearchSpace = DARTS_SPACE):
        super().__init__()
        if space.num_inputs != 2:
            raise ValueError(f"Supernet builds DARTS-style cells with 2 input nodes; space {space.name!r} has "
                             f"{space.num_inputs} (it needs its own macro network)")
        if not 1 <= multiplier <= steps:
            raise ValueError(f"multiplier must be in 1..steps={steps}, got {multiplier}")
        self.space = space.with_steps(steps)
        self.config = dict(C=C, num_classes=num_classes, layers=layers, in_channels=in_channels, steps=steps,
                           multiplier=multiplier, stem_multiplier=stem_multiplier, space=space.name)
        self.steps, self.multiplier = steps, multiplier
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        cells, reduction_prev = [], False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cells.append(SearchCell(self.space, multiplier, c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, multiplier * c_curr
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, num_classes)
        shape = (self.space.num_edges, len(self.space.ops))
        # Near-uniform start: every op begins with (almost) the same say (reference: 1e-3 * randn).
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    # ------------------------------------------------------------------ the two parameter sets

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def op_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) per edge, (normal, reduce): what DARTS mixes the ops with."""
        return F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)

    # ------------------------------------------------------------------ running

    def forward(self, x, weights_normal=None, weights_reduce=None):
        if weights_normal is None or weights_reduce is None:
            wn, wr = self.op_weights()
            weights_normal = wn if weights_normal is None else weights_normal
            weights_reduce = wr if weights_reduce is None else weights_reduce
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal)
        return self.classifier(s1.mean(dim=(2, 3)))

    def genotype(self):
        """The DARTS argmax genotype of the current alphas."""
        from .selection import ArgmaxSelector
        return ArgmaxSelector().select(self)
