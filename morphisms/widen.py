"""widen: more filters in a conv (or linear) layer, Net2Net-style, as in NASH.

Old filters are kept, new ones start random (to break symmetry), and every layer that reads
the widened output gets zero weights for the new channels. The growth spreads through BN,
ReLU, pools, adds (whose other inputs grow alike) and concats: see channels.py."""
from __future__ import annotations

import math

from .channels import apply_growth, is_depthwise, plan_growth
from .edit import Edit
from .network import Network

WIDENABLE = ("conv", "linear")


def widen_plan(e: Edit, node: str, factor: float):
    """The growth plan for widening `node` by `factor` (raises MorphismError if impossible)."""
    e.need_node(node)
    kind = e.kind(node)
    if kind not in WIDENABLE:
        e.fail(f"it is a {kind}; only conv and linear layers can be widened")
    if is_depthwise(e.g, e.shapes, node):
        e.fail("it is a depthwise conv, whose width is its input's: widen the layer that feeds it")
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 1:
        e.fail(f"factor must be a number > 1, got {factor!r}")
    old = e.shapes[node][0]
    new = int(round(old * factor))
    if new <= old:
        e.fail(f"factor {factor} adds no channel to its {old}")
    return plan_growth(e.g, e.shapes, node, list(range(old)), new, e.fail)


def widen(net: Network, node: str, factor: float = 2.0, calibrate=None, seed: int = 0) -> Network:
    """A child whose conv/linear `node` has round(factor * width) output channels.

    The new filters are drawn from a generator seeded with `seed` (never torch's global one),
    so the same parent and seed give the same child, weights included. `calibrate` is accepted
    for a uniform signature; widening inserts no BN, so it needs none."""
    e = Edit(net, f"widen {node!r}", seed)
    grown, readers = widen_plan(e, node, factor)
    apply_growth(e, grown, readers)
    return e.finish()
