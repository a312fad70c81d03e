"""new_head: a fresh linear classifier for another number of classes (an imported model
trained on ImageNet, say, started on a data set of 10 classes).

Not a morphism: the new head's outputs are new, so nothing of the old function is kept past
the features. The rest of the network keeps its weights; the head is drawn from `seed`."""
from __future__ import annotations

from .edit import Edit
from .graph import inputs_of
from .network import Network


def new_head(net: Network, num_classes: int, seed: int = 0) -> Network:
    """A copy of `net` whose linear layer before the output (and before every auxiliary output)
    has `num_classes` outputs, initialised as torch initialises a Linear, from `seed`."""
    e = Edit(net, f"new head of {num_classes} classes", seed)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        e.fail(f"the number of classes must be a positive int, got {num_classes!r}")
    outs = [n for n in e.g if e.kind(n) in ("output", "aux_output")]
    heads = []
    for out in sorted(outs):
        head = inputs_of(e.g, out)[0]
        if e.kind(head) != "linear":
            e.fail(f"{out!r} is computed by {head!r} ({e.kind(head)}), not by a linear layer that could be replaced")
        if any(c != out for c in e.g.successors(head)):
            e.fail(f"the classifier {head!r} also feeds {sorted(c for c in e.g.successors(head) if c != out)}")
        heads.append(head)
    for head in heads:
        e.g.nodes[head]["out_features"] = num_classes
    e.refresh_shapes()
    for head in heads:
        e.modules[head] = e.build(head, [e.shapes[u] for u in inputs_of(e.g, head)]).to(e.device, e.dtype)
    return e.finish()


def reinitialized(net: Network, seed: int = 0) -> Network:
    """The same architecture with fresh weights, as a new Network(graph) would have them, but
    drawn from `seed` (conv and linear as torch's default init; BN at ones and zeros with
    running statistics (0, 1); a weighted add's lam as its graph attribute says)."""
    e = Edit(net, "reinitialize", seed)
    for n in sorted(e.g):
        e.modules[n] = e.build(n, [e.shapes[u] for u in inputs_of(e.g, n)]).to(e.device, e.dtype)
    return e.finish()
