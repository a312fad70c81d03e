"""From a trained supernet to a genotype: which edges and ops survive.

A `Selector` turns a supernet (plus whatever else it needs: data for PT's perturbation
measurements, say) into a `Genotype`. `ArgmaxSelector` is the DARTS rule; the rule itself is
the pure function `argmax_cells`, usable on any alpha tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .genotype import Genotype
from .ops import DARTS_SPACE, SearchSpace


def argmax_cell(weights: torch.Tensor, space: SearchSpace) -> list[tuple[str, int]]:
    """The DARTS rule on one cell's op weights (edges x ops, already softmaxed): per
    intermediate node keep the 2 incoming edges whose strongest non-'none' op is strongest,
    and give each its strongest non-'none' op.

    Ties go to the lower index (the earlier edge, the earlier op), and a node's two edges are
    listed strongest first: both as the reference does, so the same alphas print the same
    genotype text."""
    w = weights.detach().to("cpu", torch.float64)
    allowed = [k for k, op in enumerate(space.ops) if op != "none"]
    gene, e = [], 0
    for i in range(space.steps):
        n_in = space.num_inputs + i
        rows = w[e:e + n_in, allowed]
        best_val, best_k = rows.max(dim=1)  # max returns the first index of a tie
        # sorted() is stable: equal strengths keep edge order
        edges = sorted(range(n_in), key=lambda j: -float(best_val[j]))[:2]
        gene += [(space.ops[allowed[int(best_k[j])]], j) for j in edges]
        e += n_in
    return gene


def argmax_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor, space: SearchSpace = DARTS_SPACE,
                    multiplier: int = 4) -> Genotype:
    """The genotype of the given alphas (logits: softmax is taken here)."""
    concat = list(range(space.num_inputs + space.steps - multiplier, space.num_inputs + space.steps))
    return Genotype.make(argmax_cell(F.softmax(alphas_normal.detach(), dim=-1), space), concat,
                         argmax_cell(F.softmax(alphas_reduce.detach(), dim=-1), space), concat, space)


class Selector:
    """Interface: `select(supernet, **kw) -> Genotype`."""

    name = "base"

    def select(self, supernet, **kw) -> Genotype:
        raise NotImplementedError


class ArgmaxSelector(Selector):
    name = "argmax"

    def select(self, supernet, **kw) -> Genotype:
        return argmax_genotype(supernet.alphas_normal, supernet.alphas_reduce, supernet.space, supernet.multiplier)


SELECTORS: dict[str, type[Selector]] = {ArgmaxSelector.name: ArgmaxSelector}
