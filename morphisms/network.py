"""`Network`: an nn.Module that runs its graph, and its files on disk.

Like torch.fx's GraphModule: the graph (`net.graph`, networkx) is the architecture, one module
per node (`net.layers[name]`) holds the weights, and `forward` walks a plan made once from the
topological order, so a call costs one module call per node and nothing more.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import networkx as nx
import torch
from torch import nn

from .errors import GraphError
from .graph import inputs_of, node_attrs, topological_order, validate
from .layers import layer

FORMAT = "nash-network"
VERSION = 1
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "weights.pt"


class Network(nn.Module):
    def __init__(self, graph: nx.DiGraph, modules: dict[str, nn.Module] | None = None):
        super().__init__()
        self.shapes = validate(graph)
        self.graph = graph
        order = topological_order(graph)
        modules = modules or {}
        built = {}
        for n in order:
            if n in modules:
                built[n] = modules[n]
            else:
                kind = graph.nodes[n]["kind"]
                built[n] = layer(kind).build(graph.nodes[n], [self.shapes[u] for u in inputs_of(graph, n)])
        self.layers = nn.ModuleDict(built)
        index = {n: i for i, n in enumerate(order)}
        self._plan = [(index[n], n, [index[u] for u in inputs_of(graph, n)]) for n in order[1:]]
        output = next(n for n in order if graph.nodes[n]["kind"] == "output")
        # forward() runs only what the main output needs: auxiliary heads cost nothing there
        needed = nx.ancestors(graph, output) | {output}
        self._output = index[output]
        self._aux = [index[n] for n in order if graph.nodes[n]["kind"] == "aux_output"]
        self._order = order
        self._main_plan = self._with_frees([step for step in self._plan if step[1] in needed])
        self._full_plan = self._with_frees(self._plan)

    def _with_frees(self, plan):
        """Each step with the values it is the last reader of, so they are freed right away
        (as torch.fx's generated code does): memory is reused while it is still in cache."""
        keep = {self._output, *self._aux}
        last = {}
        for k, (_, _, ins) in enumerate(plan):
            for j in ins:
                last[j] = k
        frees = [[] for _ in plan]
        for j, k in last.items():
            if j not in keep:
                frees[k].append(j)
        return [(i, name, ins, frees[k]) for k, (i, name, ins) in enumerate(plan)]

    # ------------------------------------------------------------------ running

    def _run(self, x, plan, free: bool = True):
        values = [None] * len(self._order)
        values[0] = x
        layers = self.layers
        for i, name, ins, frees in plan:
            values[i] = layers[name](*[values[j] for j in ins])
            if free:
                for j in frees:
                    values[j] = None
        return values

    def forward(self, x):
        return self._run(x, self._main_plan)[self._output]

    def forward_with_aux(self, x):
        """(main output, [auxiliary outputs]) — the auxiliary heads of a lowered DARTS network."""
        values = self._run(x, self._full_plan)
        return values[self._output], [values[i] for i in self._aux]

    def activations(self, x, names) -> dict:
        """Outputs of the named nodes on `x` (in whatever mode the network is in)."""
        values = self._run(x, self._full_plan, free=False)
        wanted = set(names)
        return {n: values[i] for i, n in enumerate(self._order) if n in wanted}

    # ------------------------------------------------------------------ facts

    @property
    def input_shape(self) -> tuple:
        return self.shapes["input"]

    @property
    def num_classes(self) -> int:
        return self.shapes[self._order[self._output]][0]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass on one input (convs and linears only)."""
        total = 0
        for n, m in self.layers.items():
            if isinstance(m, nn.Conv2d):
                c, h, w = self.shapes[n]
                total += c * h * w * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.Linear):
                total += m.in_features * m.out_features
        return total

    def latency_ms(self, device="cpu", batch_size: int = 1, threads: int | None = None, cache=None) -> float:
        """Milliseconds per forward pass of `batch_size` inputs on `device`, measured (cost.py:
        median after warm-up, eval mode, no_grad); with a `cost.LatencyCache`, once per architecture."""
        from .cost import measure_latency
        if cache is None:
            return measure_latency(self, device, batch_size, threads)
        return cache.latency(self, device, batch_size, threads)

    def node_params(self, name: str) -> int:
        return sum(p.numel() for p in self.layers[name].parameters())

    def summary(self) -> str:
        """A table: node, kind, inputs, output shape, parameters."""
        rows = [("node", "kind", "inputs", "shape", "params")]
        for n in self._order:
            rows.append((n, self.graph.nodes[n]["kind"], ",".join(inputs_of(self.graph, n)),
                         "x".join(map(str, self.shapes[n])), f"{self.node_params(n):,}"))
        rows.append(("total", "", "", "", f"{self.num_params():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    # ------------------------------------------------------------------ files

    def to_json(self) -> dict:
        return graph_to_json(self.graph)

    def save(self, path) -> Path:
        """Write `path/graph.json` and `path/weights.pt` atomically (a temp dir, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (tmp / GRAPH_FILE).write_text(json.dumps(self.to_json(), indent=1))
            state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
            torch.save(state, tmp / WEIGHTS_FILE)
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path, map_location="cpu") -> "Network":
        """Read a saved network; bad files raise GraphError naming the file and the problem.

        Weights load with `weights_only=True`: a weights file cannot run code on load. The network
        lives where `map_location` puts the weights ("cuda": a network on the GPU)."""
        path = Path(path)
        gfile, wfile = path / GRAPH_FILE, path / WEIGHTS_FILE
        for f in (gfile, wfile):
            if not f.is_file():
                raise GraphError(f"{f}: file not found (a saved network is a folder with {GRAPH_FILE} and {WEIGHTS_FILE})")
        try:
            data = json.loads(gfile.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GraphError(f"{gfile}: not valid JSON ({e})") from None
        try:
            net = cls(graph_from_json(data))
        except GraphError as e:
            raise GraphError(f"{gfile}: {e}") from None
        try:
            state = torch.load(wfile, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises many kinds for a damaged zip/pickle
            raise GraphError(f"{wfile}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        # the modules are built on the CPU: move them where torch.load put the weights (map_location's
        # device), so that the network lives there, not just its copied-in values
        tensors = state.values() if isinstance(state, dict) else ()
        devices = {t.device for t in tensors if isinstance(t, torch.Tensor)}
        if len(devices) == 1:
            net.to(devices.pop())
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise GraphError(f"{wfile}: weights do not fit {gfile} ({str(e).splitlines()[0]})") from None
        return net


def graph_to_json(g: nx.DiGraph) -> dict:
    order = topological_order(g)
    return {
        "format": FORMAT,
        "version": VERSION,
        "nodes": [{"name": n, "kind": g.nodes[n]["kind"], **node_attrs(g, n)} for n in order],
        "edges": [[u, v, s] for v in order for u, _, s in sorted(g.in_edges(v, data="slot"), key=lambda e: e[2])],
    }


def graph_from_json(data) -> nx.DiGraph:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GraphError(f"not a nash network graph (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise GraphError(f"graph format version {data.get('version')!r} is not supported (this nash reads {VERSION})")
    g = nx.DiGraph()
    try:
        for nd in data["nodes"]:
            nd = dict(nd)
            name = nd.pop("name")
            if name in g:
                raise GraphError(f"node {name!r} appears twice")
            g.add_node(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in nd.items()})
        for u, v, s in data["edges"]:
            for x in (u, v):
                if x not in g:
                    raise GraphError(f"edge {u!r} -> {v!r} names an unknown node {x!r}")
            g.add_edge(u, v, slot=int(s))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, GraphError):
            raise
        raise GraphError(f"malformed graph JSON ({type(e).__name__}: {e})") from None
    validate(g)
    return g


def _replace_dir(new: Path, dst: Path) -> None:
    """Put folder `new` at `dst`, replacing what was there without a moment with neither."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(new, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dst)
