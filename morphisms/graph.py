"""The graph IR: a networkx DiGraph whose nodes are layers.

Node attributes: `kind` (a registered layer kind) plus that kind's hyper-parameters.
Edge attribute: `slot`, the position of the source among the destination's inputs (order
matters for concat and for NASH's weighted add). Exactly one `input` node (its `shape` attribute
is the network's input shape) and one `output` node; `aux_output` nodes (auxiliary heads) may
be added, and any node may feed them.
"""
from __future__ import annotations

import itertools
import re

import networkx as nx

from .errors import GraphError
from .layers import LAYERS, attrs_with_defaults, layer

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def new_graph(input_shape) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("input", kind="input", shape=tuple(int(x) for x in input_shape))
    return g


def fresh_name(g: nx.DiGraph, kind: str) -> str:
    """The first `<kind><i>` not yet in the graph; deterministic, so seeded runs name alike."""
    for i in itertools.count(len(g)):
        name = f"{kind}{i}"
        if name not in g:
            return name


def add_layer(g: nx.DiGraph, kind: str, inputs, name: str | None = None, **attrs) -> str:
    """Add a node of `kind` fed by `inputs` (in slot order) and return its name."""
    layer(kind)  # unknown kinds fail here, with the list of known ones
    name = name or fresh_name(g, kind)
    if name in g:
        raise GraphError(f"node {name!r} already exists")
    g.add_node(name, kind=kind, **attrs_with_defaults(kind, attrs))
    for slot, src in enumerate(inputs):
        if src not in g:
            raise GraphError(f"node {name!r}: input {src!r} does not exist")
        g.add_edge(src, name, slot=slot)
    return name


def inputs_of(g: nx.DiGraph, node: str) -> list[str]:
    return [u for u, _, _ in sorted(g.in_edges(node, data="slot"), key=lambda e: e[2])]


def consumers_of(g: nx.DiGraph, node: str) -> list[str]:
    return sorted(g.successors(node))


def replace_input(g: nx.DiGraph, node: str, old: str, new: str) -> None:
    """Make `node` read `new` where it read `old`, keeping the slot."""
    slot = g.edges[old, node]["slot"]
    g.remove_edge(old, node)
    g.add_edge(new, node, slot=slot)


def redirect_consumers(g: nx.DiGraph, node: str, new: str, exclude=()) -> None:
    """Every consumer of `node` (but `exclude`) reads `new` instead."""
    for c in consumers_of(g, node):
        if c != new and c not in exclude:
            replace_input(g, c, node, new)


def node_attrs(g: nx.DiGraph, node: str) -> dict:
    """A node's hyper-parameters (its attributes less `kind`)."""
    return {k: v for k, v in g.nodes[node].items() if k != "kind"}


def infer_shapes(g: nx.DiGraph) -> dict[str, tuple]:
    """Output shape of every node; raises GraphError naming the first node that does not fit."""
    shapes = {}
    for n in topological_order(g):
        kind = g.nodes[n]["kind"]
        ins = [shapes[u] for u in inputs_of(g, n)]
        try:
            shapes[n] = tuple(int(x) for x in layer(kind).infer(g.nodes[n], ins))
        except GraphError as e:
            raise GraphError(f"node {n!r} ({kind}): {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"node {n!r} ({kind}): bad attributes ({e})") from None
    return shapes


def topological_order(g: nx.DiGraph) -> list[str]:
    try:
        # lexicographic tie-break: the same graph always runs (and serialises) in the same order
        return list(nx.lexicographical_topological_sort(g))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(g)
        raise GraphError(f"graph has a cycle: {' -> '.join(u for u, _ in cycle)} -> {cycle[0][0]}") from None


def validate(g: nx.DiGraph) -> dict[str, tuple]:
    """Check that `g` is a runnable network; return its shapes. One GraphError per problem found."""
    if not isinstance(g, nx.DiGraph):
        raise GraphError(f"expected a networkx DiGraph, got {type(g).__name__}")
    for n, data in g.nodes(data=True):
        if not isinstance(n, str) or not _NAME.match(n):
            raise GraphError(f"node name {n!r} is not an identifier (letters, digits, underscore)")
        if "kind" not in data:
            raise GraphError(f"node {n!r} has no 'kind'")
        layer(data["kind"])
    for kind in ("input", "output"):
        found = [n for n, k in g.nodes(data="kind") if k == kind]
        if len(found) != 1:
            raise GraphError(f"a network has exactly one {kind!r} node, found {len(found)}: {found}")
    topological_order(g)  # cycles
    for n, data in g.nodes(data=True):
        ins = inputs_of(g, n)
        slots = sorted(s for _, _, s in g.in_edges(n, data="slot"))
        if slots != list(range(len(ins))):
            raise GraphError(f"node {n!r}: input slots {slots} are not 0..{len(ins) - 1}")
        lo, hi = LAYERS[data["kind"]].arity
        if len(ins) < lo or (hi is not None and len(ins) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{'any' if hi is None else hi}"
            raise GraphError(f"node {n!r} ({data['kind']}) takes {want} inputs, has {len(ins)}")
    outs = [n for n, k in g.nodes(data="kind") if k in ("output", "aux_output")]
    for out in outs:
        if g.out_degree(out):
            raise GraphError(f"output node {out!r} feeds other nodes")
    reach_out = set(outs).union(*(nx.ancestors(g, o) for o in outs))
    dangling = sorted(set(g) - reach_out)
    if dangling:
        raise GraphError(f"dangling node(s) that reach no output: {dangling}")
    return infer_shapes(g)
