"""to_source: a Network written out as a plain PyTorch source file that needs only torch.

The file defines one `nn.Module` whose `forward` runs the graph's nodes in the graph's
topological order, one line per node, each value named after its node. The layers that hold
state (conv, bn, linear, weighted add, drop path) live in `self.layers`, a ModuleDict keyed by
node name as in the Network itself, so the file's module has the Network's state dict, key for
key: a run's `best/weights.pt` (what `Network.save` writes: `net.state_dict()`, on the CPU)
loads with `model.load_state_dict(torch.load("weights.pt", weights_only=True))`. Ops without
state are written inline (`torch.relu(x)`, `a + b`, `torch.cat`), so forward reads like a
hand-written model. A layer kind with no template here is an error, never a file that leaves
it out; a test checks that every registered kind has one.
"""
from __future__ import annotations

import inspect
import keyword
from pathlib import Path

from torch import nn

from .errors import MorphismError
from .graph import inputs_of
from .layers import DropPath, WeightedAdd, conv_padding
from .network import Network

_MODULE_DICT_ATTRS = set(dir(nn.ModuleDict()))
_RESERVED = {"self", "torch", "nn", "F", "x"}


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _conv(a, ins, shapes):
    args = [str(shapes[0][0]), str(a["out_channels"]), f"kernel_size={a['kernel_size']!r}"]
    # a strided 1x1 conv without padding as the 1x1 conv of the subsampled input, as
    # morphisms.conv.Conv2d runs it (oneDNN's strided 1x1 weight gradient corrupts memory on
    # AVX2-only CPUs); same function, same state dict
    subsample = (_pair(a["kernel_size"]) == (1, 1) and _pair(a["stride"]) != (1, 1)
                 and _pair(conv_padding(a)) == (0, 0))
    for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
        value = conv_padding(a) if key == "padding" else a[key]
        if value != default and _pair(value) != _pair(default) and not (subsample and key in ("stride", "dilation")):
            args.append(f"{key}={value!r}")
    args.append(f"bias={bool(a['bias'])}")
    if subsample:
        sh, sw = _pair(a["stride"])
        return f"nn.Conv2d({', '.join(args)})", f"{{m}}({{0}}[:, :, ::{sh}, ::{sw}])"
    return f"nn.Conv2d({', '.join(args)})", "{m}({0})"


def _bn(a, ins, shapes):
    cls = "BatchNorm2d" if len(shapes[0]) == 3 else "BatchNorm1d"
    return f"nn.{cls}({shapes[0][0]}, eps={a['eps']!r}, momentum={a['momentum']!r}, affine={bool(a['affine'])})", \
        "{m}({0})"


def _pool(fn):
    def template(a, ins, shapes):
        stride = a["stride"] or a["kernel_size"]
        extra = f", count_include_pad={bool(a['count_include_pad'])}" if fn == "avg_pool2d" else ""
        return None, f"F.{fn}({{0}}, {a['kernel_size']!r}, {stride!r}, {a['padding']!r}{extra})"
    return template


def _add(a, ins, shapes):
    if a["weighted"]:
        return f"WeightedAdd({float(a['lam'])!r})", "{m}({0}, {1})"
    return None, " + ".join(f"{{{i}}}" for i in range(len(ins)))


def _crop(a, ins, shapes):
    _, h, w = shapes[0]

    def span(lo, hi, size):
        return f"{lo or ''}:{'' if hi == 0 else size - hi}"
    return None, f"{{0}}[:, :, {span(a['top'], a['bottom'], h)}, {span(a['left'], a['right'], w)}]"


def _gelu(a, ins, shapes):
    extra = "" if a["approximate"] == "none" else f", approximate={a['approximate']!r}"
    return None, f"F.gelu({{0}}{extra})"


# kind -> (attrs, input names, input shapes) -> (module constructor or None, call expression)
# the call expression formats inputs as {0}, {1}, ... and the node's module as {m}
TEMPLATES = {
    "conv": _conv,
    "bn": _bn,
    "linear": lambda a, ins, s: (f"nn.Linear({s[0][0]}, {a['out_features']}, bias={bool(a['bias'])})", "{m}({0})"),
    "relu": lambda a, ins, s: (None, "torch.relu({0})"),
    "relu6": lambda a, ins, s: (None, "F.relu6({0})"),
    "gelu": _gelu,
    "silu": lambda a, ins, s: (None, "F.silu({0})"),
    "hardswish": lambda a, ins, s: (None, "F.hardswish({0})"),
    "maxpool": _pool("max_pool2d"),
    "avgpool": _pool("avg_pool2d"),
    "global_pool": lambda a, ins, s: (None, "{0}.mean((2, 3))"),
    "flatten": lambda a, ins, s: (None, "{0}.flatten(1)"),
    "add": _add,
    "concat": lambda a, ins, s: (None, f"torch.cat([{', '.join(f'{{{i}}}' for i in range(len(ins)))}], 1)"),
    "zero": lambda a, ins, s: (None, "torch.zeros_like({0})"),
    "crop": _crop,
    "drop_path": lambda a, ins, s: (f"DropPath({float(a['drop_prob'])!r})", "{m}({0})"),
    "dropout": lambda a, ins, s: (None, f"F.dropout({{0}}, {float(a['p'])!r}, self.training)"),
}
# classes the file defines when it uses them, copied from the engine so they cannot drift apart
_HELPERS = {"WeightedAdd": WeightedAdd, "DropPath": DropPath}
_PASS_THROUGH = ("identity", "output", "aux_output")


def to_source(net: Network, class_name: str = "Net") -> str:
    """The source of a module computing what `net` computes, with `net`'s state dict keys."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise MorphismError(f"to_source: class name {class_name!r} is not a Python identifier")
    g, shapes, order = net.graph, net.shapes, net._order
    missing = sorted({g.nodes[n]["kind"] for n in order} - set(TEMPLATES) - {"input", *_PASS_THROUGH})
    if missing:
        raise MorphismError(f"to_source: no source template for layer kind(s) {', '.join(missing)}")
    var, used = {}, set(_RESERVED)
    for n in order:
        v = "x" if n == "input" else (n + "_" if n in used or keyword.iskeyword(n) else n)
        while v in used and n != "input":
            v += "_"
        used.add(v)
        var[n] = v
    ctors, calls = {}, {}
    for n in order[1:]:
        kind = g.nodes[n]["kind"]
        ins = inputs_of(g, n)
        if kind in _PASS_THROUGH:
            if kind == "identity":
                var[n] = var[ins[0]]  # the same tensor under another name: no line needed
            calls[n] = None
            continue
        attrs = g.nodes[n]
        ctor, call = TEMPLATES[kind](attrs, ins, [shapes[u] for u in ins])
        if ctor is not None:
            ctors[n] = ctor
        calls[n] = call.format(*(var[u] for u in ins), m=_module_ref(n))
    helpers = [h for h, cls in _HELPERS.items() if any(c.startswith(h + "(") for c in ctors.values())]
    output = next(n for n in order if g.nodes[n]["kind"] == "output")
    aux = [n for n in order if g.nodes[n]["kind"] == "aux_output"]
    needed = _ancestors(g, output, order)
    lines = [
        f'"""{class_name}: written by nash from a network graph; needs only torch.',
        "",
        f"Input: a batch shaped (N, {', '.join(map(str, net.input_shape))}). Load the weights nash saved:",
        "",
        f"    model = {class_name}()",
        '    model.load_state_dict(torch.load("weights.pt", weights_only=True))',
        '"""',
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
    ]
    for h in helpers:
        lines += ["", inspect.getsource(_HELPERS[h]).rstrip(), ""]
    lines += ["", f"class {class_name}(nn.Module):", "    def __init__(self):", "        super().__init__()",
              "        self.layers = nn.ModuleDict({"]
    lines += [f'            "{n}": {c},' for n, c in ctors.items()]  # node names are identifiers
    lines += ["        })", ""]
    lines += _body("forward(self, x)", [n for n in order if n in needed], g, var, calls, f"return {var[_input(g, output)]}")
    if aux:
        returns = f"return {var[_input(g, output)]}, [{', '.join(var[_input(g, a)] for a in aux)}]"
        lines += ["", '    def forward_with_aux(self, x):', '        """(main output, [auxiliary outputs])."""']
        lines += _body(None, order, g, var, calls, returns)
    return "\n".join(lines) + "\n"


def write_source(net: Network, path, class_name: str = "Net") -> Path:
    """Write `to_source(net)` at `path` (a `.py` file) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_source(net, class_name))
    return path


def _module_ref(n: str) -> str:
    return f'self.layers["{n}"]' if n in _MODULE_DICT_ATTRS or keyword.iskeyword(n) else f"self.layers.{n}"


def _input(g, n: str) -> str:
    return inputs_of(g, n)[0]


def _ancestors(g, node, order) -> set:
    seen, stack = {node}, [node]
    while stack:
        for u in g.predecessors(stack.pop()):
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen


def _body(signature, nodes, g, var, calls, returns) -> list:
    lines = [f"    def {signature}:"] if signature else []
    for n in nodes:
        call = calls.get(n)
        if n == "input" or call is None:
            continue
        lines.append(f"        {var[n]} = {call}")
    lines.append(f"        {returns}")
    return lines
