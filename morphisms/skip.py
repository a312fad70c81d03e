"""add_skip: a skip connection from `src` to `dst`, additive or concatenating (NASH).

The branch takes `src`'s output, max-pooled down to `dst`'s resolution where needed.
- "add": dst' = lam * dst + (1 - lam) * branch with lam = 1 (learnable); a 1x1 conv on the
  branch matches channels where they differ. lam = 1 makes the branch contribute exactly 0.
- "concat": dst' = concat(dst, branch); every layer reading dst' gets zero weights for the
  branch's channels (the growth machinery of channels.py)."""
from __future__ import annotations

import networkx as nx

from .channels import apply_growth, plan_growth
from .edit import Edit
from .graph import replace_input
from .network import Network

SKIP_MODES = ("add", "concat")


def _check(e: Edit, src: str, dst: str, mode: str) -> int:
    """Validate a skip and return the pooling factor from src to dst resolution."""
    e.need_node(src, "source node")
    e.need_node(dst, "destination node")
    if mode not in SKIP_MODES:
        e.fail(f"mode must be one of {SKIP_MODES}, got {mode!r}")
    if src == dst:
        e.fail("source and destination are the same node")
    if e.kind(dst) in ("input", "output", "aux_output"):
        e.fail(f"the destination cannot be the network's {e.kind(dst)}")
    if e.kind(src) in ("output", "aux_output"):
        e.fail("the source cannot be an output")
    if not nx.has_path(e.g, src, dst):
        e.fail(f"{src!r} does not come before {dst!r}, so the skip would make a cycle")
    s, d = e.shapes[src], e.shapes[dst]
    if len(s) != 3 or len(d) != 3:
        e.fail(f"both ends must be feature maps, got {s} and {d}")
    if s[1] % d[1] or s[2] % d[2] or s[1] // d[1] != s[2] // d[2]:
        e.fail(f"resolutions {s[1]}x{s[2]} -> {d[1]}x{d[2]} are not an integer downsampling")
    return s[1] // d[1]


def concat_plan(e: Edit, dst: str, branch_channels: int):
    """Growth plan for concatenating `branch_channels` onto dst's output (graph only).

    The caller must also check that the branch's source is not in the plan (its width would
    change under the concat); `moves` reuses one plan for every source."""
    c = e.shapes[dst][0]
    # plan as if dst's own output grew: its readers are exactly the concat's future readers
    probe = e.g.copy()
    probe.add_node("__skip_concat__", kind="concat")
    for x in list(probe.successors(dst)):
        slot = probe.edges[dst, x]["slot"]
        probe.remove_edge(dst, x)
        probe.add_edge("__skip_concat__", x, slot=slot)
    probe.add_edge(dst, "__skip_concat__", slot=0)
    probe.add_node("__skip_branch__", kind="input", shape=(branch_channels, *e.shapes[dst][1:]))
    probe.add_edge("__skip_branch__", "__skip_concat__", slot=1)
    shapes = {**e.shapes, "__skip_concat__": (c + branch_channels, *e.shapes[dst][1:])}
    grown, readers = plan_growth(probe, shapes, "__skip_concat__", list(range(c)), c + branch_channels, e.fail)
    if dst in grown:
        e.fail(f"{dst!r}'s readers are tied back to {dst!r} itself (through adds), so its width cannot change")
    return grown, readers


def add_skip(net: Network, src: str, dst: str, mode: str = "add", calibrate=None, seed: int = 0) -> Network:
    """A child with a skip connection from `src` into `dst`'s output (same function).

    A 1x1 conv on the branch, and filters that a concat makes grow, are drawn from a generator
    seeded with `seed` (never torch's global one). `calibrate` is accepted for a uniform
    signature; a skip inserts no BN."""
    e = Edit(net, f"add_skip {src!r} -> {dst!r} ({mode})", seed)
    factor = _check(e, src, dst, mode)
    branch_channels = e.shapes[src][0]
    if mode == "concat":
        grown, readers = concat_plan(e, dst, branch_channels)  # fails early, before any change
        if src in grown:
            e.fail(f"{dst!r}'s readers are tied (through adds) to {src!r}, whose width would change")
    readers_of_dst = list(e.g.successors(dst))
    branch = src
    if factor > 1:
        branch = e.add("maxpool", [branch], kernel_size=factor)
    if mode == "add":
        if branch_channels != e.shapes[dst][0]:
            branch = e.add("conv", [branch], out_channels=e.shapes[dst][0], kernel_size=1)
        merge = e.add("add", [dst, branch], weighted=True, lam=1.0)
    else:
        merge = e.add("concat", [dst, branch])
    for r in readers_of_dst:
        replace_input(e.g, r, dst, merge)
    if mode == "concat":
        apply_growth(e, {(merge if n == "__skip_concat__" else n): v for n, v in grown.items()}, readers)
    return e.finish()
