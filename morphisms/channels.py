"""Growing channels: which nodes must grow together, and new weights that change nothing.

Widening a conv, or concatenating a skip branch onto a node's output, gives some tensors more
channels. Channels are tied: a BN, ReLU or pool passes its input's channels straight through,
and an add needs all its inputs laid out alike. So growth spreads over a *tied class* of nodes;
every learned layer ("mix") that produces a member grows new filters (random, to break symmetry;
drawn from the edit's seeded generator),
and every learned layer that reads a member gets zero weights for the new channels, so the
function is unchanged. A concat that reads a member grows too, at an offset, and spreads on.
A flatten passes channel c on as features c*H*W .. c*H*W + H*W - 1, so a linear reading it
grows zero columns in blocks. A depthwise conv (groups = in = out channels, MobileNet's) is
tied like a BN: each output channel reads only its own input channel, so it grows with its
input, new channels getting new random filters, and whatever reads it gets zero weights for
them.

A layout is (old_pos, new_count): where each old channel sits among the new ones.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import GraphError
from .graph import infer_shapes, inputs_of
from .layers import LAYERS

TIES = ("preserve", "merge")


def is_depthwise(g, shapes, n: str) -> bool:
    """A conv whose output channel i reads input channel i alone (groups = in = out channels)."""
    a = g.nodes[n]
    if a["kind"] != "conv" or a.get("groups", 1) == 1:
        return False
    ins = inputs_of(g, n)
    return a["groups"] == a["out_channels"] == shapes[ins[0]][0]


def role(g, shapes, n: str) -> str:
    """How node `n` treats channels: its kind's role, but "preserve" for a depthwise conv."""
    return "preserve" if is_depthwise(g, shapes, n) else LAYERS[g.nodes[n]["kind"]].channels


def tied_class(g, start: str, shapes=None) -> set[str]:
    """Nodes whose outputs share `start`'s channel layout (with `shapes`, depthwise convs tie too)."""
    def tied(n):
        return (role(g, shapes, n) if shapes is not None else LAYERS[g.nodes[n]["kind"]].channels) in TIES

    members, stack = {start}, [start]
    while stack:
        n = stack.pop()
        linked = [c for c in g.successors(n) if tied(c)]
        if tied(n):
            linked += list(g.predecessors(n))
        for m in linked:
            if m not in members:
                members.add(m)
                stack.append(m)
    return members


def plan_growth(g, shapes, root: str, old_pos: list, new_count: int, fail):
    """Work out every change that growing `root`'s output to `layout` entails.

    Returns (grown, readers): grown[node] = layout of its (new) output; readers[node] = layout
    of its (new) input, for the conv/linear layers that read grown tensors. Calls `fail(why)`
    (which raises) where growth would reach something that cannot change."""
    grown, readers = {}, {}
    queue = [(root, list(old_pos), new_count)]
    while queue:
        r, pos, count = queue.pop(0)
        append = pos == list(range(len(pos)))
        members = tied_class(g, r, shapes)
        for m in sorted(members):
            kind = g.nodes[m]["kind"]
            m_role = role(g, shapes, m)
            if m != r and m_role == "mix" and not append:
                fail(f"{m!r} would have to grow new channels in the middle of its output (through a concat)")
            if m != r and m_role == "concat":
                fail(f"its channels are tied (through adds) to the concat {m!r}, which cannot grow alone")
            if m_role == "fixed":
                what = "the network input" if kind == "input" else f"{m!r} ({kind}), which cannot change"
                fail(f"its channels are tied to {what}")
            if m_role == "mix" and g.nodes[m].get("groups", 1) != 1:
                fail(f"{m!r} is a grouped conv, which cannot grow")
            if m in grown and grown[m] != (pos, count):
                fail(f"growth reaches {m!r} along two paths")
            grown[m] = (pos, count)
        for m in sorted(members):
            for c in sorted(g.successors(m)):
                kind = g.nodes[c]["kind"]
                c_role = role(g, shapes, c)
                if c in members and c_role != "mix":  # a conv can be both: it reads and makes the class
                    continue
                if c_role == "mix":
                    if g.nodes[c].get("groups", 1) != 1:
                        fail(f"it feeds the grouped conv {c!r}, which cannot take more channels")
                    readers[c] = (pos, count)
                elif c_role in ("concat", "flatten"):
                    layout = _concat_layout(g, shapes, c, grown) if c_role == "concat" else \
                        _flatten_layout(shapes[m], pos, count)
                    if c in grown and grown[c] != layout:
                        fail(f"growth reaches the {c_role} {c!r} along two paths")
                    if c not in grown:
                        grown[c] = layout
                        queue.append((c, *layout))
                else:
                    fail(f"it feeds {c!r} ({kind}), whose size is fixed (the network's output cannot grow)")
    _check_shapes(g, shapes, grown, fail)
    for c, layout in grown.items():
        # a concat whose inputs grew after its layout was set would be laid out twice
        if c != root and LAYERS[g.nodes[c]["kind"]].channels == "concat" and layout != _concat_layout(g, shapes, c, grown):
            fail(f"growth loops back into the concat {c!r}")
    return grown, readers


def _check_shapes(g, shapes, grown, fail):
    """Shape-check the grown graph: the last guard that a plan leaves every merge consistent."""
    probe = g.copy()
    for n, (_, count) in grown.items():
        key = {"conv": "out_channels", "linear": "out_features"}.get(g.nodes[n]["kind"])
        if key:
            probe.nodes[n][key] = count
        if is_depthwise(g, shapes, n):
            probe.nodes[n]["groups"] = count
    try:
        new_shapes = infer_shapes(probe)
    except GraphError as e:
        fail(f"the grown network would not fit together ({e})")
    for n, (_, count) in grown.items():
        if n in new_shapes and new_shapes[n][0] != count:
            fail(f"growth reaches {n!r} inconsistently")


def _flatten_layout(shape, pos, count):
    _, h, w = shape
    return [p * h * w + k for p in pos for k in range(h * w)], count * h * w


def _concat_layout(g, shapes, c, grown):
    pos, offset = [], 0
    for u in inputs_of(g, c):
        upos, ucount = grown.get(u, (list(range(shapes[u][0])), shapes[u][0]))
        pos += [offset + p for p in upos]
        offset += ucount
    return pos, offset


def grow_module(old: nn.Module, new: nn.Module, out_layout=None, in_layout=None) -> nn.Module:
    """Copy `old`'s weights into the larger `new` at the layouts' old positions.

    New output filters keep `new`'s fresh random init (the edit's seeded draw); new input
    columns are zeroed (so they add nothing); new BN channels are identities. Works for conv,
    linear and BN."""
    with torch.no_grad():
        if isinstance(new, nn.modules.batchnorm._BatchNorm):
            idx = torch.as_tensor(out_layout[0], device=new.running_mean.device)
            if new.affine:
                new.weight.fill_(1.0)
                new.bias.zero_()
                new.weight[idx] = old.weight
                new.bias[idx] = old.bias
            new.running_mean.zero_()
            new.running_var.fill_(1.0)
            new.running_mean[idx] = old.running_mean
            new.running_var[idx] = old.running_var
            new.num_batches_tracked.copy_(old.num_batches_tracked)
            return new
        w = new.weight
        out_idx = torch.arange(old.weight.shape[0], device=w.device) if out_layout is None else \
            torch.as_tensor(out_layout[0], device=w.device)
        in_idx = torch.arange(old.weight.shape[1], device=w.device) if in_layout is None else \
            torch.as_tensor(in_layout[0], device=w.device)
        # a depthwise conv's weight is (channels, 1, k, k): it grows along the output side only
        if in_layout is not None:
            w[:, _others(in_idx, w.shape[1])] = 0.0
        w[out_idx.view(-1, 1), in_idx.view(1, -1)] = old.weight
        if old.bias is not None:
            if out_layout is not None:
                new.bias[_others(out_idx, w.shape[0])] = 0.0
            new.bias[out_idx] = old.bias
    return new


def _others(idx: torch.Tensor, count: int) -> torch.Tensor:
    mask = torch.ones(count, dtype=torch.bool, device=idx.device)
    mask[idx] = False
    return mask


def apply_growth(edit, grown: dict, readers: dict) -> None:
    """Carry out a plan from `plan_growth` on an Edit: attributes, shapes, modules."""
    g = edit.g
    depthwise = {n for n in grown if is_depthwise(g, edit.shapes, n)}  # before the widths change
    for n, (_, count) in grown.items():
        kind = g.nodes[n]["kind"]
        if kind == "conv":
            g.nodes[n]["out_channels"] = count
            if n in depthwise:
                g.nodes[n]["groups"] = count
        elif kind == "linear":
            g.nodes[n]["out_features"] = count
    edit.refresh_shapes()
    for n in sorted(set(grown) | set(readers)):
        old = edit.modules[n]
        if not any(True for _ in old.parameters()) and not list(old.buffers()):
            continue  # relu, pools, concat: nothing to carry over
        if g.nodes[n]["kind"] == "add":
            continue  # the scalar lam is the same for any width
        fresh = edit.build(n, [edit.shapes[u] for u in inputs_of(g, n)]).to(edit.device, edit.dtype)
        edit.modules[n] = grow_module(old, fresh, grown.get(n), readers.get(n))
