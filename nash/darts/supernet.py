"""The supernets: every edge of a cell runs every op, mixed by op weights derived from alpha.

Two macro networks share one base (`CellSupernet`): `Supernet`, the DARTS search network
(normal and reduction cells, alphas `alphas_normal` and `alphas_reduce`), and `NB201Supernet`,
NAS-Bench-201's (one cell type, `alphas_normal` only; its reductions are fixed residual
blocks). `cell_types` names the cells that have alphas; every list or tuple of alphas or op
weights below is in that order.

Architecture parameters are registered parameters, so they move with `.to()`, save with
`state_dict()` and load back, but they are handed out apart from the weights:
`arch_parameters()` for the architect's optimizer, `weights()` for the weight optimizer. The
two lists are disjoint and together are `parameters()`.

`op_weights()` is the architecture as continuous op weights: softmax(alpha) per edge (DARTS),
or the alphas themselves when a strategy uses them as plain values (`relaxation = "plain"`,
NASP). Edges a selector has already decided (`fix_edge`, PT) keep their fixed row whatever
alpha says, in every forward pass and every strategy's gradient.

The forward pass is the fast path of `fused.py` (a node's outgoing edges computed together, in
channels_last); `plain.py` computes the same function the DARTS reference's way.

`forward(x, *weights)` takes optional explicit op weights, one tensor per cell type. With none
given it uses `op_weights()`; SDARTS passes perturbed weights, NASP one-hot ones, and the
weight step passes detached ones so that no graph towards the alphas is built when only the
weights learn. `skip_zero=True` runs only the ops whose weight is not exactly 0 (NASP's weight
step: a one-hot row runs a single op); deciding that costs one host sync per cell type.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .fused import op_plan, source_edges
from .ops import (DARTS_SPACE, NB201_SPACE, OPS, FactorizedReduce, ReLUConvBN, ResNetBasicBlock, SearchSpace, Zero,
                  is_pool)


class MixedOp(nn.Module):
    """One edge: sum_k w_k * op_k(x)."""

    def __init__(self, C: int, stride: int, op_names, pool_bn: bool = True):
        super().__init__()
        ops = []
        for name in op_names:
            # affine=False in the search ops: a learned BN scale would compete with alpha for the
            # same role (reference choice).
            op = OPS[name](C, stride, False)
            if pool_bn and is_pool(name):
                # The DARTS reference follows the parameter-free pools with a BN in the search
                # model only, so their outputs are on the same scale as the convs' BN outputs
                # (NAS-Bench-201's search cells do not: pool_bn=False there).
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self.zero = Zero(stride)
        # 'none' adds w * 0: nothing to the output and nothing to any gradient, so it is not run.
        self._run = [not isinstance(op, Zero) for op in self.ops]
        self.plans = [op_plan(op) for op in self.ops]  # how the fast path runs each op (fused.py)

    def forward(self, x, weights, active=None):
        """sum_k weights[k] * op_k(x) over the ops that run; active: per op, whether to run it
        (None: all). A cell computes all edges leaving a node together instead (`source_edges`)."""
        return source_edges(x, [self], [weights], [active])[0]


class CellSupernet(nn.Module):
    """What the architects, smoothers and selectors need from a supernet, whatever its macro
    network: the alphas per cell type, the weights, the op weights, fixed (decided) edges.
    Subclasses set `space`, register `alphas_<cell type>` and implement `run`."""

    space: SearchSpace
    # "softmax": op weights are softmax(alpha) (DARTS); "plain": the alphas are the op weights,
    # kept in [0, 1] by their strategy (NASP)
    relaxation = "softmax"

    @property
    def cell_types(self) -> tuple:
        return self.space.cell_types

    def _init_alphas(self):
        # channels_last: the convs' fast layout on CPU (oneDNN) and GPU alike; 5-10x faster
        # depthwise convs on CPU than NCHW (experiments/bench_darts.py). Inputs are converted in
        # forward; the weights here, once.
        self.to(memory_format=torch.channels_last)
        shape = (self.space.num_edges, len(self.space.ops))
        for cell in self.cell_types:
            # Near-uniform start: every op begins with (almost) the same say (reference: 1e-3 * randn).
            self.register_parameter(f"alphas_{cell}", nn.Parameter(1e-3 * torch.randn(shape)))
        self._fixed: dict[str, dict[int, torch.Tensor]] = {}

    # ------------------------------------------------------------------ the two parameter sets

    def arch_parameters(self) -> list[nn.Parameter]:
        return [getattr(self, f"alphas_{cell}") for cell in self.cell_types]

    def weights(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    @contextmanager
    def weights_frozen(self):
        """Forward passes inside build no graph towards the weights: for passes whose only
        gradient anyone reads is the alphas' (or the op weights'). Autograd then neither computes
        weight gradients nor keeps what only they need (a conv's input, for one). The weights'
        requires_grad is off for the duration and restored after, also on an exception."""
        frozen = [p for p in self.weights() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def op_weights(self) -> tuple[torch.Tensor, ...]:
        """The op weights of every edge, one (edges x ops) tensor per cell type (see module doc)."""
        return self.apply_fixed(self.relaxed_weights())

    def relaxed_weights(self) -> tuple[torch.Tensor, ...]:
        """The op weights as alpha says, decided edges included (what their argmax would be)."""
        return tuple(F.softmax(a, dim=-1) if self.relaxation == "softmax" else a for a in self.arch_parameters())

    # ------------------------------------------------------------------ decided edges (PT)

    def fix_edge(self, cell: str, edge: int, row: torch.Tensor) -> None:
        """From now on edge `edge` of cell type `cell` mixes its ops with `row` (a one-hot row:
        the op PT kept; zeros: an edge PT dropped), whatever alpha says."""
        if cell not in self.cell_types:
            raise ValueError(f"unknown cell type {cell!r} (this supernet has {', '.join(self.cell_types)})")
        alphas = getattr(self, f"alphas_{cell}")
        # kept where the alphas live: `apply_fixed` runs every forward, and a CPU row would be
        # copied to the GPU each time (a blocking copy, waiting for all queued GPU work)
        self._fixed.setdefault(cell, {})[int(edge)] = row.detach().to(alphas.device, alphas.dtype).clone()

    def fixed_edges(self, cell: str) -> dict[int, torch.Tensor]:
        return dict(self._fixed.get(cell, {}))

    def clear_fixed(self) -> None:
        self._fixed = {}

    def apply_fixed(self, weights) -> tuple[torch.Tensor, ...]:
        """`weights` (one tensor per cell type) with the fixed rows put in; no copy when nothing
        is fixed. A fixed row passes no gradient to its alphas."""
        out = []
        for cell, w in zip(self.cell_types, weights):
            fixed = self._fixed.get(cell)
            if fixed:
                rows = list(w.unbind(0))
                for e, row in fixed.items():
                    rows[e] = row.to(w)
                w = torch.stack(rows)
            out.append(w)
        return tuple(out)

    # ------------------------------------------------------------------ running

    def forward(self, x, *weights, skip_zero: bool = False):
        if len(weights) > len(self.cell_types):
            raise ValueError(f"{len(weights)} op weight tensors for {len(self.cell_types)} cell type(s)")
        defaults = None
        ws = []
        for i in range(len(self.cell_types)):
            w = weights[i] if i < len(weights) else None
            if w is None:
                defaults = self.op_weights() if defaults is None else defaults
                w = defaults[i]
            ws.append(w)
        active = _nonzero_lists(ws) if skip_zero else None
        return self.run(x.contiguous(memory_format=torch.channels_last), ws, active)

    def run(self, x, weights: list, active: list | None):
        raise NotImplementedError


def _nonzero_lists(ws) -> list:
    """Per cell type, per edge, per op: whether its weight is nonzero, as Python lists. Which ops
    run is the host's decision, so this is one host sync per forward (one copy of every cell
    type's zero pattern), the price of running only the chosen ops."""
    flat = torch.cat([w.detach().ne(0).flatten() for w in ws]).tolist()
    out, i = [], 0
    for w in ws:
        rows, cols = w.shape
        out.append([flat[i + r * cols:i + (r + 1) * cols] for r in range(rows)])
        i += rows * cols
    return out


def run_cell(edges, space: SearchSpace, inputs: list, weights, active) -> list:
    """Every node of a cell: `inputs` (the input nodes' values), then each intermediate node, the
    sum of its incoming edges in source order. The edges leaving a node are computed together
    as soon as the node is complete (`source_edges`), which is when all its sources are done."""
    nodes = list(inputs)
    sums: dict = {}
    out_edges: dict = {}
    for e, (src, dst) in enumerate(space.edges):
        out_edges.setdefault(src, []).append((e, dst))
    for src in range(space.num_inputs + space.steps):
        if src >= len(nodes):  # every source of this node is done (sources come in order)
            nodes.append(sums.pop(src))
        leaving = out_edges.get(src)
        if not leaving:
            continue
        ys = source_edges(nodes[src], [edges[e] for e, _ in leaving], [weights[e] for e, _ in leaving],
                          [None if active is None else active[e] for e, _ in leaving])
        for (_, dst), y in zip(leaving, ys):
            # y is a fresh tensor (source_edges): accumulating in place into it is safe
            sums[dst] = y if dst not in sums else sums[dst].add_(y)
    return nodes


# ---------------------------------------------------------------------------------------------
# DARTS


class SearchCell(nn.Module):
    def __init__(self, space: SearchSpace, multiplier: int, c_prev_prev: int, c_prev: int, C: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.space = space
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

    def forward(self, s0, s1, weights, active=None):
        return torch.cat(run_cell(self.edges, self.space, [self.preprocess0(s0), self.preprocess1(s1)], weights,
                                  active)[-self.multiplier:], dim=1)


def reduction_layers(layers: int) -> tuple[int, int]:
    """Cells that halve the resolution and double the channels: at 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


class Supernet(CellSupernet):
    """The DARTS search network: stem, `layers` cells (reductions at 1/3 and 2/3 depth), global
    pooling, linear."""

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, in_channels: int = 3, steps: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, space: SearchSpace = DARTS_SPACE):
        super().__init__()
        if space.num_inputs != 2 or len(space.cell_types) != 2:
            raise ValueError(f"Supernet builds DARTS-style cells (2 input nodes, normal and reduction cells); "
                             f"space {space.name!r} needs its own macro network")
        if not 1 <= multiplier <= steps:
            raise ValueError(f"multiplier must be in 1..steps={steps}, got {multiplier}")
        self.space = space.with_steps(steps)
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
        self._init_alphas()

    def run(self, x, weights, active):
        wn, wr = weights
        an, ar = (None, None) if active is None else active
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, wr if cell.reduction else wn, ar if cell.reduction else an)
        return self.classifier(s1.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------
# NAS-Bench-201


class NB201SearchCell(nn.Module):
    """Node 0 is the cell input; node j sums one mixed edge from every node i < j; the last node
    is the output."""

    def __init__(self, space: SearchSpace, C: int):
        super().__init__()
        self.space = space
        # pool_bn=False: the benchmark's search cells have no BN after the pool
        self.edges = nn.ModuleList(MixedOp(C, 1, space.ops, pool_bn=False) for _ in space.edges)

    def forward(self, x, weights, active=None):
        return run_cell(self.edges, self.space, [x], weights, active)[-1]


class NB201Supernet(CellSupernet):
    """NAS-Bench-201's search network (the benchmark's DARTS model): stem 3x3 conv C + BN; three
    stages of `layers` cells at C, 2C, 4C channels with a residual block of stride 2 between
    them; BN, ReLU, global average pooling, linear. One set of alphas (6 x 5) for every cell."""

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 5, in_channels: int = 3,
                 space: SearchSpace = NB201_SPACE):
        super().__init__()
        if space.num_inputs != 1 or len(space.cell_types) != 1:
            raise ValueError(f"NB201Supernet builds one cell type with 1 input node; space {space.name!r} does not fit")
        self.space = space
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells, c = [], C
        for stage in range(3):
            if stage:
                cells.append(ResNetBasicBlock(c, 2 * c))
                c *= 2
            cells += [NB201SearchCell(space, c) for _ in range(layers)]
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)
        self._init_alphas()

    def run(self, x, weights, active):
        (w,), a = weights, (None if active is None else active[0])
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, w, a) if isinstance(cell, NB201SearchCell) else cell(x)
        return self.classifier(self.lastact(x).mean(dim=(2, 3)))
