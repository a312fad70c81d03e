"""The DARTS op set as small named modules, and the search spaces that pick from it.

One registry, `OPS`: name -> builder(C, stride, affine) -> nn.Module mapping C channels to C
channels (stride 2 halves the resolution). The supernet builds its mixed edges from it; a
search space is just a list of op names plus a cell topology (`SearchSpace`), so another space
(NAS-Bench-201: 5 ops, 1 input node, 3 intermediate nodes, 6 edges) is one more registry entry
and one more `SearchSpace`, not a new supernet.

The layer structures, paddings and dilations follow the DARTS authors' operations.py; the
lowered evaluation network (`lower.py`) expresses the same ops as graph nodes, and the tests
check that the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN: the cells' 1x1 preprocessing (and the NAS-Bench-201 convs)."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two ReLU -> depthwise -> pointwise -> BN blocks; only the first one strides.

    Stacking two (rather than one) is the reference's choice, so its parameter counts hold."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
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
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
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
}


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
    this is the row order of the architecture parameters (alphas)."""

    name: str
    ops: tuple  # op names, the column order of the alphas; "none" (if present) means no edge
    num_inputs: int = 2
    steps: int = 4

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
    def num_nodes(self) -> int:
        return self.num_inputs + self.steps

    def with_steps(self, steps: int) -> "SearchSpace":
        return self if steps == self.steps else replace(self, steps=steps)


# The DARTS space: 8 ops, 2 input nodes, 4 intermediate nodes, 14 edges.
DARTS_SPACE = SearchSpace(
    "darts",
    ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
     "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"),
    num_inputs=2, steps=4)

SPACES: dict[str, SearchSpace] = {DARTS_SPACE.name: DARTS_SPACE}
