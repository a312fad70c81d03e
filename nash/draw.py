"""Drawing a Network: a layered picture (PNG/SVG via matplotlib) and Graphviz DOT text.

The picture puts each node at its longest-path depth from the input, so a chain reads top
to bottom and skip connections show as edges that jump levels.

Every figure is a `matplotlib.figure.Figure` on its own Agg canvas, never pyplot: pyplot keeps
a process-wide backend and figure list, which a library call must not touch. All plots are
written by `save_figure` (atomically).
"""
from __future__ import annotations

import io
from pathlib import Path

import networkx as nx

from morphisms import Network
from morphisms.graph import inputs_of

from .rundir import atomic_write_bytes

COLOURS = {"input": "#dddddd", "output": "#dddddd", "aux_output": "#dddddd", "conv": "#8ecae6", "bn": "#ffd166",
           "relu": "#cdb4db", "maxpool": "#95d5b2", "avgpool": "#95d5b2", "global_pool": "#95d5b2",
           "add": "#f4a261", "concat": "#e76f51", "linear": "#219ebc"}


def figure(figsize) -> "matplotlib.figure.Figure":
    """A figure that draws on its own Agg canvas (file output only, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (format from the suffix) so that a reader never sees half a file."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _arrow(ax, start, end, rad: float, shrink: float, boxes=(None, None)):
    """An arrow from node centre `start` to `end` that stops at the nodes' outlines (the
    `boxes` patches where given, else `shrink` points short), so no head hides under a node."""
    ax.annotate("", xy=end, xytext=start, zorder=3,
                arrowprops=dict(arrowstyle="-|>", color="#555555", mutation_scale=10, shrinkA=shrink,
                                shrinkB=shrink, patchA=boxes[0], patchB=boxes[1],
                                connectionstyle=f"arc3,rad={rad}"))


def _fit(ax, pos: dict, margin: float):
    # arrows and text do not move the axes' limits: set them from the node positions
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin, max(ys) + margin)


def label(net: Network, n: str) -> str:
    a = net.graph.nodes[n]
    kind = a["kind"]
    if kind == "conv":
        extra = f" {a['kernel_size']}x{a['kernel_size']}" + (f"/{a['stride']}" if a["stride"] != 1 else "") + \
            (f" g{a['groups']}" if a["groups"] != 1 else "") + (f" d{a['dilation']}" if a["dilation"] != 1 else "")
    elif kind in ("maxpool", "avgpool"):
        extra = f" {a['kernel_size']}"
    else:
        extra = ""
    return f"{kind}{extra}\n{'x'.join(map(str, net.shapes[n]))}"


def to_dot(net: Network) -> str:
    lines = ["digraph network {", "  rankdir=TB; node [shape=box, style=filled, fontname=Helvetica];"]
    for n in net._order:
        colour = COLOURS.get(net.graph.nodes[n]["kind"], "#ffffff")
        lines.append(f'  {n} [label="{label(net, n)}", fillcolor="{colour}"];'.replace("\n", "\\n"))
    for n in net._order:
        for u in inputs_of(net.graph, n):
            lines.append(f"  {u} -> {n};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_network(net: Network, path, title: str | None = None) -> Path:
    g = net.graph
    depth = {}
    for n in net._order:
        depth[n] = max((depth[u] + 1 for u in g.predecessors(n)), default=0)
    levels = {}
    for n in net._order:
        levels.setdefault(depth[n], []).append(n)
    pos = {}
    for d, nodes in levels.items():
        for i, n in enumerate(nodes):
            pos[n] = (i - (len(nodes) - 1) / 2, -d)
    width = max(len(v) for v in levels.values())
    fig = figure((max(4, 2.2 * width), max(4, 0.75 * len(levels))))
    ax = fig.subplots()
    boxes = {}
    for n, (x, y) in pos.items():
        text = ax.text(x, y, label(net, n), ha="center", va="center", fontsize=7, zorder=2,
                       bbox=dict(boxstyle="round,pad=0.3", fc=COLOURS.get(g.nodes[n]["kind"], "#ffffff"),
                                 ec="#333333"))
        boxes[n] = text.get_bbox_patch()
    for u, v in g.edges:
        _arrow(ax, pos[u], pos[v], rad=0.15, shrink=1, boxes=(boxes[u], boxes[v]))
    _fit(ax, pos, 0.6)
    ax.set_title(title or f"{len(g)} nodes, {net.num_params():,} parameters")
    ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def draw_genotype(genotype, path) -> Path:
    """The normal and reduction cells of a DARTS genotype, as the DARTS paper draws them:
    inputs c_{k-2}, c_{k-1}, intermediate nodes 0..n-1, output c_{k}; edges named by op.
    A NAS-Bench-201 cell (one cell type, nodes 0..3, node j sums edges from every i < j) is
    drawn as that one cell, its 'none' edges left out."""
    if hasattr(genotype, "nodes"):
        return _draw_nb201(genotype, path)
    fig = figure((13, 5))
    axes = fig.subplots(1, 2)
    for ax, (name, ops, concat) in zip(axes, (("normal", genotype.normal, genotype.normal_concat),
                                             ("reduction", genotype.reduce, genotype.reduce_concat))):
        g = nx.MultiDiGraph()
        labels = {0: "c_{k-2}", 1: "c_{k-1}"}
        steps = len(ops) // 2
        for i in range(steps):
            labels[i + 2] = str(i)
        labels["out"] = "c_{k}"
        for i in range(steps):
            for op, j in ops[2 * i:2 * i + 2]:
                g.add_edge(j, i + 2, op=op)
        for j in concat:
            g.add_edge(j, "out", op="")
        pos = {0: (0, 1), 1: (0, -1), "out": (steps + 1, 0)}
        for i in range(steps):
            pos[i + 2] = (i + 1, 1.2 if i % 2 == 0 else -1.2)
        for n in g.nodes:
            colour = "#8ecae6" if isinstance(n, int) and n < 2 else "#ffd166" if n == "out" else "#cdb4db"
            ax.scatter(*pos[n], s=900, c=colour, zorder=2)
            ax.text(*pos[n], labels[n], fontsize=8, ha="center", va="center", zorder=3)
        for k, (u, v, d) in enumerate(g.edges(data=True)):
            rad = 0.25 if (u, v) != (v, u) and g.number_of_edges(u, v) > 1 and k % 2 else 0.1
            _arrow(ax, pos[u], pos[v], rad=rad, shrink=15)
            if d["op"]:
                (x1, y1), (x2, y2) = pos[u], pos[v]
                ax.text((x1 + x2) / 2, (y1 + y2) / 2, d["op"], fontsize=7, ha="center", va="center", zorder=4,
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#999999"))
        _fit(ax, pos, 0.5)
        ax.set_title(f"{name} cell")
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_nb201(genotype, path) -> Path:
    fig = figure((7, 4))
    ax = fig.subplots()
    pos = {0: (0, 0), 1: (1, 1), 2: (2, -1), 3: (3, 0)}
    for n, xy in pos.items():
        ax.scatter(*xy, s=900, c="#8ecae6" if n == 0 else "#ffd166" if n == 3 else "#cdb4db", zorder=2)
        ax.text(*xy, str(n), fontsize=9, ha="center", va="center", zorder=3)
    for j, node in enumerate(genotype.nodes, start=1):
        for op, i in node:
            if op == "none":
                continue
            _arrow(ax, pos[i], pos[j], rad=0.1, shrink=15)
            (x1, y1), (x2, y2) = pos[i], pos[j]
            t = 0.3 if i == 0 else 0.6  # 0->3 and 1->2 cross at their middles: labels apart
            ax.text(x1 + t * (x2 - x1), y1 + t * (y2 - y1), op, fontsize=7, ha="center", va="center", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#999999"))
    _fit(ax, pos, 0.5)
    ax.set_title("NAS-Bench-201 cell")
    ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)

