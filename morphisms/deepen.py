"""deepen: insert Conv-BN-ReLU that starts as the identity (NASH)."""
from __future__ import annotations

import torch

from .edit import Edit, batch_stats, identity_bn, is_nonneg
from .graph import redirect_consumers
from .network import Network

# block ends; is_nonneg then decides (a pool of GELUs can be negative, a pool of ReLU6s not)
DEEPEN_AFTER = ("relu", "relu6", "maxpool", "avgpool", "add", "concat")


def deepen(net: Network, after: str, kernel_size: int = 3, calibrate: torch.Tensor | None = None,
           seed: int = 0) -> Network:
    """A child with Conv(k x k, identity)-BN(identity)-ReLU inserted after node `after`.

    `after` must have a non-negative output (a ReLU, or a pool or merge of ReLUs), so the new
    ReLU is the identity too. With `calibrate` (a batch), the BN is set from that batch's
    statistics, so the child also matches in train mode on it. `seed` is accepted for a uniform
    signature: the inserted layers are identities, nothing random."""
    e = Edit(net, f"deepen after {after!r}", seed)
    e.need_node(after)
    shape = e.shapes[after]
    if e.kind(after) in ("output", "aux_output"):
        e.fail("cannot insert after the output")
    if len(shape) != 3:
        e.fail(f"its output is a vector {shape}, not a feature map")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        e.fail(f"kernel_size must be an odd positive int, got {kernel_size!r}")
    if not is_nonneg(e, after):
        e.fail("its output can be negative, so the inserted ReLU would change the function; "
               "deepen after a relu, or a pool or merge of relus")
    channels = shape[0]
    conv = e.add("conv", [after], out_channels=channels, kernel_size=kernel_size)
    with torch.no_grad():
        w = e.modules[conv].weight
        w.zero_()
        centre = kernel_size // 2
        w[torch.arange(channels), torch.arange(channels), centre, centre] = 1.0
    stats = batch_stats(net, calibrate, after) if calibrate is not None else None
    bn = e.add("bn", [conv], module=identity_bn(channels, 1e-5, stats, dtype=e.dtype))
    relu = e.add("relu", [bn])
    redirect_consumers(e.g, after, relu, exclude={conv})
    return e.finish()
