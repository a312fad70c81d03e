"""prune_filters: remove the k output channels of a conv whose filters have the smallest L1 norm
(Li et al. 2017, one of LEMONADE's approximate morphisms).

Channels are tied as they are for widening (channels.py): a BN, ReLU, pool or depthwise conv
passes its input's channels through, and an add needs all its inputs laid out alike, so the
same channel indices go from every member of the conv's tied class: from each conv or linear
that produces it (its filters and bias), each BN (its entries), each depthwise conv (its
filters). Whatever reads the class loses the matching input weights; a concat that reads it
loses those channels at its input's offset and passes the cut on, a flatten loses their blocks
of features. The function moves unless the removed channels contributed nothing (a zero
filter whose BN outputs zero, say), where pruning is exact.

A plan says, per node, which channels of its output (`cut`) and of its input (`readers`) go.
"""
from __future__ import annotations

import torch
from torch import nn

from .approximate import Shrink
from .channels import is_depthwise, role, tied_class
from .edit import Edit
from .errors import GraphError
from .graph import infer_shapes, inputs_of, topological_order
from .layers import LAYERS
from .network import Network

PRUNABLE = ("conv", "linear")


def producers(e: Edit, node: str) -> list[str]:
    """The convs and linears whose filters make `node`'s tied class (`node` among them)."""
    return sorted(m for m in tied_class(e.g, node, e.shapes) if role(e.g, e.shapes, m) == "mix")


def smallest_filters(e: Edit, node: str, k: int) -> list[int]:
    """The k channels of `node`'s class whose filters, summed over the class's producers, have
    the smallest L1 norm: a channel is only weak if every producer writes little into it (each
    producer's scale counts as it is; ties go to the lower index, for a deterministic plan)."""
    norms = None
    for m in producers(e, node):
        w = e.modules[m].weight.detach().to(torch.float64)
        n = w.abs().flatten(1).sum(1).cpu()
        norms = n if norms is None else norms + n
    order = torch.argsort(norms, stable=True)
    return sorted(order[:k].tolist())


def prune_plan(e: Edit, node: str, k: int):
    """(cut, readers) for removing k channels from `node`'s class, the channels left unchosen:
    check what can be checked from the graph alone (raises MorphismError where impossible)."""
    e.need_node(node)
    kind = e.kind(node)
    if kind not in PRUNABLE:
        e.fail(f"it is a {kind}; only conv and linear layers have filters to prune")
    if is_depthwise(e.g, e.shapes, node):
        e.fail("it is a depthwise conv, whose width is its input's: prune the layer that feeds it")
    width = e.shapes[node][0]
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < width:
        e.fail(f"k must be an int in 1..{width - 1} (at least one of its {width} channels stays), got {k!r}")
    return plan_cut(e, node, list(range(k)))


def plan_cut(e: Edit, root: str, drop: list[int]):
    """Every change that removing channels `drop` of `root`'s output entails: cut[node] = the
    channels its output loses, readers[node] = those its input loses (the convs and linears
    that read a cut tensor). A mirror of channels.plan_growth."""
    g, shapes = e.g, e.shapes
    cut, readers = {}, {}
    # classes in topological order of their roots, so that a concat fed by two cut classes is
    # cut once, after both (the pending cut of a concat is recomputed each time one reaches it)
    position = {n: i for i, n in enumerate(topological_order(g))}
    pending = {root: sorted(drop)}
    while pending:
        r = min(pending, key=position.__getitem__)
        idx = pending.pop(r)
        members = tied_class(g, r, shapes)
        for m in sorted(members):
            kind = g.nodes[m]["kind"]
            m_role = role(g, shapes, m)
            if m != r and m_role == "concat":
                e.fail(f"its channels are tied (through adds) to the concat {m!r}, whose inputs would have to be cut too")
            if m_role == "fixed":
                what = "the network input" if kind == "input" else f"{m!r} ({kind}), which cannot change"
                e.fail(f"its channels are tied to {what}")
            if m_role == "mix" and g.nodes[m].get("groups", 1) != 1:
                e.fail(f"{m!r} is a grouped conv, whose groups would fall apart")
            if m in cut and cut[m] != idx:
                e.fail(f"the cut reaches {m!r} along two paths")
            cut[m] = idx
        for m in sorted(members):
            for c in sorted(g.successors(m)):
                c_role = role(g, shapes, c)
                if c in members and c_role != "mix":  # a conv can be both: it reads and makes the class
                    continue
                if c_role == "mix":
                    if g.nodes[c].get("groups", 1) != 1:
                        e.fail(f"it feeds the grouped conv {c!r}, whose groups would fall apart")
                    readers[c] = idx
                elif c_role in ("concat", "flatten"):
                    out = _concat_cut(g, shapes, c, cut) if c_role == "concat" else _flatten_cut(shapes[m], idx)
                    if c in cut and cut[c] != out:
                        e.fail(f"the cut reaches the {c_role} {c!r} after it was cut")
                    if c not in cut:
                        pending[c] = out
                else:
                    e.fail(f"it feeds {c!r} ({g.nodes[c]['kind']}), whose size is fixed")
    for c, out in cut.items():
        # a concat whose inputs were cut after its own cut was set would be cut twice
        if c != root and LAYERS[g.nodes[c]["kind"]].channels == "concat" and out != _concat_cut(g, shapes, c, cut):
            e.fail(f"the cut loops back into the concat {c!r}")
    _check_shapes(e, cut)
    return cut, readers


def _concat_cut(g, shapes, c, cut):
    out, offset = [], 0
    for u in inputs_of(g, c):
        out += [offset + p for p in cut.get(u, [])]
        offset += shapes[u][0]
    return out


def _flatten_cut(shape, idx):
    _, h, w = shape
    return [p * h * w + j for p in idx for j in range(h * w)]


def _check_shapes(e: Edit, cut):
    """Shape-check the cut graph: the last guard that the plan leaves every merge consistent."""
    probe = e.g.copy()
    for n, idx in cut.items():
        count = e.shapes[n][0] - len(idx)
        if count < 1:
            e.fail(f"the cut would leave {n!r} with no channel")
        key = {"conv": "out_channels", "linear": "out_features"}.get(e.kind(n))
        if key:
            probe.nodes[n][key] = count
        if is_depthwise(e.g, e.shapes, n):
            probe.nodes[n]["groups"] = count
    try:
        new_shapes = infer_shapes(probe)
    except GraphError as err:
        e.fail(f"the pruned network would not fit together ({err})")
    for n, idx in cut.items():
        if new_shapes[n][0] != e.shapes[n][0] - len(idx):
            e.fail(f"the cut reaches {n!r} inconsistently")


def _kept(count: int, drop, device) -> torch.Tensor:
    keep = torch.ones(count, dtype=torch.bool)
    keep[list(drop)] = False
    return keep.nonzero().flatten().to(device)


def cut_module(old: nn.Module, new: nn.Module, out_drop=None, in_drop=None, depthwise=False) -> nn.Module:
    """Copy what is left of `old`'s weights (conv, linear or BN) into the smaller `new`."""
    with torch.no_grad():
        if isinstance(new, nn.modules.batchnorm._BatchNorm):
            keep = _kept(old.num_features, out_drop or [], old.running_mean.device)
            if new.affine:
                new.weight.copy_(old.weight[keep])
                new.bias.copy_(old.bias[keep])
            new.running_mean.copy_(old.running_mean[keep])
            new.running_var.copy_(old.running_var[keep])
            new.num_batches_tracked.copy_(old.num_batches_tracked)
            return new
        w = old.weight
        if out_drop:
            keep_out = _kept(w.shape[0], out_drop, w.device)
            w = w[keep_out]
        # a depthwise conv's weight is (channels, 1, k, k): its input side is its output side
        if in_drop and not depthwise:
            w = w[:, _kept(w.shape[1], in_drop, w.device)]
        new.weight.copy_(w)
        if old.bias is not None:
            new.bias.copy_(old.bias[keep_out] if out_drop else old.bias)
    return new


def apply_cut(e: Edit, cut: dict, readers: dict) -> None:
    """Carry out a plan from `plan_cut` on an Edit: attributes, shapes, modules."""
    g = e.g
    depthwise = {n for n in cut if is_depthwise(g, e.shapes, n)}  # before the widths change
    for n, idx in cut.items():
        count = e.shapes[n][0] - len(idx)
        if e.kind(n) == "conv":
            g.nodes[n]["out_channels"] = count
            if n in depthwise:
                g.nodes[n]["groups"] = count
        elif e.kind(n) == "linear":
            g.nodes[n]["out_features"] = count
    e.refresh_shapes()
    for n in sorted(set(cut) | set(readers)):
        old = e.modules[n]
        if e.kind(n) not in ("conv", "linear", "bn"):
            continue  # relu, pools, concat, an add's scalar lam: the same for any width
        fresh = e.build(n, [e.shapes[u] for u in inputs_of(g, n)]).to(e.device, e.dtype)
        e.modules[n] = cut_module(old, fresh, cut.get(n), readers.get(n), n in depthwise)


def prune_filters(net: Network, node: str, k: int = 1, seed: int = 0):
    """(child, record): `net` with the k weakest channels (smallest filter L1 norm over the tied
    class) of conv/linear `node` removed everywhere they are tied. `seed` is accepted for a
    uniform signature: what goes is chosen by the weights, nothing is drawn."""
    e = Edit(net, f"prune_filters {node!r} (k={k!r})", seed)
    prune_plan(e, node, k)  # graph checks first: a bad k fails before any weight is read
    drop = smallest_filters(e, node, k)
    cut, readers = plan_cut(e, node, drop)
    apply_cut(e, cut, readers)
    did = {"channels": drop, "cut": sorted(n for n in cut if e.kind(n) in ("conv", "linear", "bn")),
           "readers": sorted(readers)}
    return e.finish(), Shrink.of("prune_filters", node=node, k=k, did=did)
