"""The DARTS op set as small named modules, and the search spaces that pick from it.

One registry, `OPS`: name -> builder(C, stride, affine) -> nn.Module mapping C channels to C
channels (stride 2 halves the resolution). The supernets build their mixed edges from it; a
search space is a list of op names plus a cell topology (`SearchSpace`): the DARTS space
(8 ops, 2 input nodes, 4 intermediate nodes, 14 edges, a normal and a reduction cell) and the
NAS-Bench-201 space (5 ops, 1 input node, 3 intermediate nodes, 6 edges, one cell type).

The layer structures, paddings and dilations follow the DARTS authors' operations.py and, for
the NAS-Bench-201 ops and its residual block, the benchmark's cell_operations.py; the lowered
networks (`lower.py`) express the same ops as graph nodes, and the tests check that they agree.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from morphisms.conv import Conv2d


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN: the cells' 1x1 preprocessing (and the NAS-Bench-201 convs)."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two ReLU -> depthwise -> pointwise -> BN blocks; only the first one strides.

    Stacking two (rather than one) is the reference's choice, so its parameter counts hold."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, groups=c_in, bias=False),
            Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            Conv2d(c_in, c_in, kernel_size, stride=1, padding=padding, groups=c_in, bias=False),
            Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The 'none' op: no edge. Strided like the others so that shapes agree.

    MixedOp skips it (its contribution is w * 0 and d/dw of that is 0), but it still exists so
    that a one-hot weight vector that selects 'none' has a module to run."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: two 1x1 stride-2 convs, the second
    on the input shifted by one pixel, concatenated, then BN. Needs even input sides."""

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OpBuilder = Callable[[int, int, bool], nn.Module]

# name -> builder(C, stride, affine). Paddings keep the resolution at stride 1 and halve it
# (rounding up) at stride 2; the dilated convs use dilation 2 with padding 2 and 4 as the
# reference does.
OPS: dict[str, OpBuilder] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    # count_include_pad=False: border pixels are averages of real pixels only (reference choice)
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
    # NAS-Bench-201's plain convs. The benchmark's search cells give these convs a bias when BN
    # has no affine part; a bias right before BN is cancelled by BN's mean, so there is none here.
    "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine),
    "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
}


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction between stages: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, plus a
    shortcut of 2x2 average pooling (stride 2) and a 1x1 conv (no BN), summed. Always affine,
    in the search network too (benchmark choice). Needs even input sides."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                        Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def register_op(name: str, builder: OpBuilder) -> None:
    if name in OPS:
        raise ValueError(f"op {name!r} is already registered")
    OPS[name] = builder


def is_pool(name: str) -> bool:
    return "pool" in name


@dataclass(frozen=True)
class SearchSpace:
    """A cell space: which ops an edge chooses from, and the cell's DAG.

    A cell has `num_inputs` input nodes and `steps` intermediate nodes; every intermediate node
    reads every earlier node, one edge each. Edges are numbered node by node, inputs in order:
    this is the row order of the architecture parameters (alphas).

    `cell_types`: the cells that have their own alphas (DARTS: normal and reduction; NAS-Bench-201
    only one, its reductions being fixed residual blocks). `inputs_per_node`: how many incoming
    edges a derived cell keeps per node (DARTS: 2, 'none' then means a dropped edge and is never
    chosen); None keeps every edge, and 'none' is then an op like the others (NAS-Bench-201)."""

    name: str
    ops: tuple  # op names, the column order of the alphas
    num_inputs: int = 2
    steps: int = 4
    cell_types: tuple = ("normal", "reduce")
    inputs_per_node: int | None = 2

    def __post_init__(self):
        unknown = [o for o in self.ops if o not in OPS]
        if unknown:
            raise ValueError(f"search space {self.name!r}: unknown ops {unknown} (known: {', '.join(OPS)})")

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(source node, destination node) per edge, in alpha row order."""
        return [(j, self.num_inputs + i) for i in range(self.steps) for j in range(self.num_inputs + i)]

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def none_is_an_op(self) -> bool:
        """Whether a derived cell may choose 'none' (only where every edge is kept)."""
        return self.inputs_per_node is None

    def choosable_ops(self) -> list[int]:
        """Column indices a derived cell may pick for an edge."""
        return [k for k, op in enumerate(self.ops) if op != "none" or self.none_is_an_op]

    def with_steps(self, steps: int) -> "SearchSpace":
        return self if steps == self.steps else replace(self, steps=steps)


# The DARTS space: 8 ops, 2 input nodes, 4 intermediate nodes, 14 edges.
DARTS_SPACE = SearchSpace(
    "darts",
    ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
     "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"),
    num_inputs=2, steps=4)

# NAS-Bench-201: 5 ops, node 0 the cell input, nodes 1..3 each summing one edge from every
# earlier node (6 edges), node 3 the output; every edge is kept and 'none' is a choice.
# Alpha rows in the benchmark's order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
NB201_SPACE = SearchSpace(
    "nb201", ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
    num_inputs=1, steps=3, cell_types=("normal",), inputs_per_node=None)

SPACES: dict[str, SearchSpace] = {DARTS_SPACE.name: DARTS_SPACE, NB201_SPACE.name: NB201_SPACE}
