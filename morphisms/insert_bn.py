"""insert_bn: an identity BatchNorm after a node (NASH)."""
from __future__ import annotations

import torch

from .edit import Edit, batch_stats, identity_bn
from .graph import redirect_consumers
from .network import Network


def insert_bn(net: Network, after: str, calibrate: torch.Tensor | None = None, seed: int = 0) -> Network:
    """A child with an identity BN after `after` (eval mode; and train mode on `calibrate`).

    `seed` is accepted for a uniform signature: an identity BN has nothing random."""
    e = Edit(net, f"insert_bn after {after!r}", seed)
    e.need_node(after)
    if e.kind(after) in ("output", "aux_output"):
        e.fail("cannot insert after the output")
    shape = e.shapes[after]
    stats = batch_stats(net, calibrate, after) if calibrate is not None else None
    bn = e.add("bn", [after], module=identity_bn(shape[0], 1e-5, stats, vector=len(shape) == 1, dtype=e.dtype))
    redirect_consumers(e.g, after, bn, exclude={bn})
    return e.finish()
