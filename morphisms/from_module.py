"""from_module: a user's `torch.nn.Module` as a Network, weights and buffers included.

Traced with torch.fx's symbolic tracer, not torch.export: fx keeps the module structure (each
Conv2d, BatchNorm2d or Linear stays one `call_module` node under its qualified name, so nodes
are named after the user's modules and weights are copied module by module), records the
functional ops (`F.relu`, `+`, `torch.cat`, `x.view`) as they were written, and runs nothing
but Python. torch.export lowers to ATen ops (convolution, _native_batch_norm_legit, ...) with
parameters lifted to inputs and BN's buffer updates functionalised, which we would have to
reassemble into layers. fx reports data-dependent control flow as one TraceError, which
becomes one line here.

What is supported is the layer registry's vocabulary (`_SUPPORTED_MODULES`, and the functions
and methods `_Importer._function` knows); anything else is one MorphismError naming the op and
the module it sits in. The result is checked against the module on the example input before it
is returned, so an op that fx records differently from how eager runs it (an in-place add on a
tensor that is read again later) gives an error, never a silently different network.

fx evaluates `self.training` while tracing, so `F.dropout(x, p, self.training)` is recorded
with a constant flag; it is imported as a dropout node (dropping in training, the identity in
eval), which is what that idiom means.
"""
from __future__ import annotations

import keyword
import operator
import re
from dataclasses import dataclass

import networkx as nx
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .conv import Conv2d
from .errors import GraphError, MorphismError
from .graph import add_layer, new_graph
from .layers import layer
from .network import Network

# a node name becomes a ModuleDict key: it must not shadow one of ModuleDict's own attributes
_TAKEN = set(dir(nn.ModuleDict())) | {"output"}
# the guard's tolerance on the example input, relative to the output's scale: far above fp32
# rounding (the tests hold 1e-5), far below what a wrong graph gives
_CHECK_RTOL = 1e-4


class _Fail(Exception):
    """Raised inside the importer; from_module turns it into one MorphismError line."""


@dataclass(frozen=True)
class _T:
    """A tensor of the graph: the node that computes it and its shape without the batch."""
    node: str
    shape: tuple


@dataclass(frozen=True)
class _Pooled:
    """AdaptiveAvgPool2d(1) or mean(keepdim=True): a (C, 1, 1) map that enters the graph as one
    global_pool node once it is flattened (the registry's pool gives a vector)."""
    src: _T
    qualname: str
    where: str
    what: str


class _Batch:
    """x.size(0) or x.shape[0]: the batch size, only good for view(n, -1)."""


@dataclass(frozen=True)
class _Sizes:
    """x.size() or x.shape (without the batch)."""
    shape: tuple


class _Tracer(fx.Tracer):
    """fx's tracer; its module stack says where a trace failed."""

    def where(self) -> str:
        return _where_of(self.module_stack)


def _where_of(stack) -> str:
    return next(reversed(stack.values()))[0] if stack else "forward"


def from_module(module: nn.Module, example_input: torch.Tensor) -> Network:
    """A Network computing what `module` computes on inputs shaped like `example_input`
    (N, C, H, W), holding copies of its weights and buffers, in the module's train/eval mode.

    Node names follow the module's own (`layer2.0.conv1` becomes node `layer2_0_conv1`: a
    node name is a Python identifier); functional ops are named after the module whose forward
    calls them (`layer2_0_add`). Raises MorphismError with one line naming the first op that
    cannot be imported and where it sits."""
    if not isinstance(module, nn.Module):
        raise MorphismError(f"from_module needs a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        got = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise MorphismError(f"from_module needs an example input of shape (N, C, H, W), got {got}")
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except fx.proxy.TraceError as e:
        raise MorphismError(f"{tracer.where()}: data-dependent control flow (an if, a loop or a bool() on a "
                            f"tensor's value) cannot be traced by torch.fx and is not supported ({_line(e)})") from None
    except Exception as e:  # user code under tracing can raise anything
        raise MorphismError(f"{tracer.where()}: torch.fx cannot trace this code ({type(e).__name__}: {_line(e)})") \
            from None
    try:
        net = _Importer(module, example_input).run(graph)
    except _Fail as e:
        raise MorphismError(str(e)) from None
    _check(module, net, example_input)
    return net


def _line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check(module: nn.Module, net: Network, x: torch.Tensor) -> None:
    """Both in eval mode on `x`: equal up to rounding, or one line saying they are not."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval(), net.eval()
        with torch.no_grad():
            want, got = module(x), net(x)
    except Exception as e:
        raise MorphismError(f"the imported network does not run on the example input "
                            f"({type(e).__name__}: {_line(e)})") from None
    finally:
        for m, mode in modes:
            m.training = mode
        net.train(module.training)
    if want.shape != got.shape:
        raise MorphismError(f"the imported network's output is shaped {tuple(got.shape)}, the module's "
                            f"{tuple(want.shape)}")
    scale = float(want.abs().max().clamp_min(1e-12)) if want.numel() else 1.0
    diff = float((got - want).abs().nan_to_num(0.0).max()) if want.numel() else 0.0
    if diff > _CHECK_RTOL * scale or not torch.equal(got.isnan(), want.isnan()):
        raise MorphismError(f"the imported network differs from the module on the example input (by {diff / scale:.2g} "
                            f"of the output's scale): an in-place op on a tensor that is read again later? torch.fx "
                            f"records it as out of place")


class _Importer:
    def __init__(self, module: nn.Module, x: torch.Tensor):
        self.root = module
        self.g = new_graph(tuple(x.shape[1:]))
        self.sources = {}  # node -> the user's module whose state it takes
        self.owner = {}  # id(module with state) -> where it was first called
        self.values = {}  # fx node -> value
        self.current = {}  # fx node -> value after an in-place op on it (or on an alias of it)
        self.aliases = {}  # fx node -> the list of fx nodes that share its storage

    # ------------------------------------------------------------------ the walk

    def run(self, graph: fx.Graph) -> Network:
        inputs = 0
        for n in graph.nodes:
            if n.op == "placeholder":
                inputs += 1
                if inputs == 1:
                    self.values[n] = _T("input", self.g.nodes["input"]["shape"])
                elif n.users:
                    raise _Fail(f"forward: a second input {n.target!r} is not supported (one image batch in)")
            elif n.op == "get_attr":
                raise _Fail(f"{self._where(n)}: reading the parameter or buffer {n.target!r} in forward "
                            f"is not supported (only through the modules that own it)")
            elif n.op == "call_module":
                self._store(n, self._module(n, self.root.get_submodule(n.target)))
            elif n.op in ("call_function", "call_method"):
                self._store(n, self._function(n))
            elif n.op == "output":
                out = self._val(n.args[0])
                if isinstance(out, _Pooled):
                    raise _Fail(f"{out.where}: {out.what} as the network's output (a 4-d 1x1 map) is not supported; "
                                f"flatten it")
                if not isinstance(out, _T):
                    raise _Fail(f"forward returns a {type(n.args[0]).__name__}; one tensor output is supported")
                add_layer(self.g, "output", [out.node], name="output")
        return self._network()

    def _network(self) -> Network:
        keep = nx.ancestors(self.g, "output") | {"output"}  # code whose result is never used
        self.g.remove_nodes_from([n for n in list(self.g) if n not in keep])
        try:
            net = Network(self.g)
        except GraphError as e:
            raise _Fail(f"the imported graph is not a valid network ({e})") from None
        ref = next(iter(self.root.parameters()), None)
        if ref is None:
            ref = next(iter(self.root.buffers()), None)
        if ref is not None:
            net.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        with torch.no_grad():
            for name, src in self.sources.items():
                if name in net.layers:
                    net.layers[name].load_state_dict(src.state_dict())
        net.train(self.root.training)
        return net

    def _store(self, n: fx.Node, value) -> None:
        self.values[n] = value
        self.aliases.setdefault(n, [n])

    def _mutated(self, n: fx.Node, target: fx.Node, value) -> None:
        """`n` wrote `value` into `target`'s storage: later reads of every alias see it."""
        group = self.aliases.setdefault(target, [target])
        group.append(n)
        self.aliases[n] = group
        for m in group:
            self.current[m] = value

    def _val(self, a):
        if isinstance(a, fx.Node):
            return self.current.get(a, self.values[a])
        if isinstance(a, (list, tuple)):
            return type(a)(self._val(x) for x in a)
        return a

    # ------------------------------------------------------------------ naming and adding

    def _where(self, n: fx.Node) -> str:
        return _where_of(n.meta.get("nn_module_stack") or {})

    def _fresh(self, qualname: str) -> str:
        base = re.sub(r"\W", "_", qualname) or "node"
        if base[0].isdigit():
            base = "_" + base
        if base in _TAKEN or keyword.iskeyword(base):
            base += "_"
        name, i = base, 1
        while name in self.g or name in _TAKEN:
            name, i = f"{base}_{i}", i + 1
        return name

    def _add(self, kind: str, inputs, qualname: str, where: str, source: nn.Module | None = None, **attrs) -> _T:
        srcs = []
        for t in inputs:
            src = t.node
            if src in srcs:  # x + x: the graph has one edge per pair of nodes, so the second goes via an identity
                src = add_layer(self.g, "identity", [src], name=self._fresh(f"{qualname}.same"))
            srcs.append(src)
        name = self._fresh(qualname)
        add_layer(self.g, kind, srcs, name=name, **attrs)
        try:
            shape = tuple(int(s) for s in layer(kind).infer(self.g.nodes[name], [t.shape for t in inputs]))
        except GraphError as e:
            raise _Fail(f"{where}: {e}") from None
        if source is not None:
            self.sources[name] = source
        return _T(name, shape)

    def _op_name(self, n: fx.Node) -> str:
        if n.op == "call_method":
            return n.target
        return getattr(n.target, "__name__", str(n.target))

    def _func_where(self, n: fx.Node) -> tuple[str, str]:
        """(qualname for the node's name, where for messages) of a functional op."""
        where = self._where(n)
        scope = "" if where == "forward" else where
        return (f"{scope}.{self._op_name(n)}" if scope else self._op_name(n)), where

    @staticmethod
    def _tensor(v, where: str, what: str, dims=None) -> _T:
        if isinstance(v, _Pooled):
            v_dims = 4
        elif isinstance(v, _T):
            v_dims = len(v.shape) + 1
        else:
            raise _Fail(f"{where}: {what} of a {type(v).__name__} is not supported")
        if dims is not None and v_dims != dims:
            raise _Fail(f"{where}: {what} on a {v_dims}-d tensor is not supported")
        if isinstance(v, _Pooled):
            raise _Fail(f"{v.where}: {v.what}'s 1x1 map used as a map by {what} ({where}) is not supported; "
                        f"only flattened")
        return v

    # ------------------------------------------------------------------ modules

    def _module(self, n: fx.Node, m: nn.Module):
        where, t = n.target, type(m)
        if t is Conv2d:  # the engine's own conv (a Network's, or one written with it): nn.Conv2d's function
            t = nn.Conv2d
        if t is nn.Identity:
            return self._val(n.args[0])
        x = self._val(n.args[0]) if n.args else None
        stateful = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        if stateful:
            if id(m) in self.owner:
                raise _Fail(f"{where}: {t.__name__} called twice (shared weights) is not supported")
            self.owner[id(m)] = where
        if t in (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d):
            raise _Fail(f"{where}: {t.__name__} is not supported (of the normalisations, the engine has BatchNorm only)")
        if t is nn.MultiheadAttention:
            raise _Fail(f"{where}: MultiheadAttention is not supported (attention is not a layer the engine has)")
        if t not in _SUPPORTED_MODULES:
            raise _Fail(f"{where}: {t.__name__} is not supported")
        if len(n.args) != 1 or n.kwargs:
            raise _Fail(f"{where}: {t.__name__} called with {len(n.args)} arguments is not supported")
        if t is nn.Conv2d:
            x = self._tensor(x, where, "Conv2d", dims=4)
            self._need_channels(where, "Conv2d", m.in_channels, x)
            return self._add("conv", [x], where, where, m, **_conv_attrs(m, where))
        if t in (nn.BatchNorm2d, nn.BatchNorm1d):
            x = self._tensor(x, where, t.__name__, dims=4 if t is nn.BatchNorm2d else 2)
            self._need_channels(where, t.__name__, m.num_features, x)
            if not m.track_running_stats:
                raise _Fail(f"{where}: {t.__name__} without running statistics (track_running_stats=False) "
                            f"is not supported")
            return self._add("bn", [x], where, where, m, eps=float(m.eps), momentum=m.momentum, affine=m.affine)
        if t is nn.Linear:
            x = self._tensor(x, where, "Linear", dims=2)
            self._need_channels(where, "Linear", m.in_features, x)
            return self._add("linear", [x], where, where, m, out_features=m.out_features, bias=m.bias is not None)
        if t is nn.Hardtanh and (m.min_val, m.max_val) != (0.0, 6.0):
            raise _Fail(f"{where}: Hardtanh({m.min_val}, {m.max_val}) is not supported (only ReLU6's 0..6)")
        kind = _ACTIVATIONS.get(t)
        if kind:
            x = self._tensor(x, where, t.__name__)
            attrs = dict(approximate=m.approximate) if t is nn.GELU else {}
            out = self._add(kind, [x], where, where, **attrs)
            if getattr(m, "inplace", False):
                self._mutated(n, n.args[0], out)
            return out
        if t is nn.Dropout:
            out = self._add("dropout", [self._tensor(x, where, "Dropout")], where, where, p=float(m.p))
            if m.inplace:
                self._mutated(n, n.args[0], out)
            return out
        if t in (nn.MaxPool2d, nn.AvgPool2d):
            return self._pool(t.__name__, self._tensor(x, where, t.__name__, dims=4), where, where,
                              m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1), m.ceil_mode,
                              getattr(m, "return_indices", False), getattr(m, "count_include_pad", True),
                              getattr(m, "divisor_override", None))
        if t is nn.AdaptiveAvgPool2d:
            return self._adaptive(self._tensor(x, where, "AdaptiveAvgPool2d", dims=4), m.output_size, where, where)
        if t is nn.Flatten:
            if m.start_dim != 1 or m.end_dim not in (-1, 3):
                raise _Fail(f"{where}: Flatten({m.start_dim}, {m.end_dim}) is not supported (only from dim 1 on)")
            return self._flatten(x, where, where, "Flatten")
        raise AssertionError(f"{t.__name__} is in _SUPPORTED_MODULES but has no case here")

    @staticmethod
    def _need_channels(where, what, want, x: _T):
        if x.shape[0] != want:
            raise _Fail(f"{where}: {what} expects {want} input channels, gets {x.shape[0]}")

    def _pool(self, what, x: _T, qualname, where, kernel, stride, padding, dilation=1, ceil_mode=False,
              return_indices=False, count_include_pad=True, divisor_override=None) -> _T:
        bad = [f"{k}={v!r}" for k, v, ok in (("dilation", dilation, _pair(dilation) == (1, 1)),
                                             ("ceil_mode", ceil_mode, not ceil_mode),
                                             ("return_indices", return_indices, not return_indices),
                                             ("divisor_override", divisor_override, divisor_override is None))
               if not ok]
        if bad:
            raise _Fail(f"{where}: {what} with {', '.join(bad)} is not supported")
        kernel = _compact(kernel)
        stride = _compact(stride) if stride not in (None, (), []) else kernel
        attrs = dict(kernel_size=kernel, stride=stride, padding=_compact(padding))
        if what.lower().startswith("avg"):
            return self._add("avgpool", [x], qualname, where, count_include_pad=bool(count_include_pad), **attrs)
        return self._add("maxpool", [x], qualname, where, **attrs)

    def _adaptive(self, x: _T, size, qualname, where):
        size = _pair(size)
        if size == (1, 1):
            return _Pooled(x, qualname, where, "AdaptiveAvgPool2d(1)")
        if size == tuple(x.shape[1:]):
            return x  # pooling each cell of a map onto itself
        raise _Fail(f"{where}: AdaptiveAvgPool2d({size}) of a {x.shape[1]}x{x.shape[2]} map is not supported "
                    f"(only to 1x1)")

    def _flatten(self, v, qualname, where, what):
        if isinstance(v, _Pooled):
            return self._add("global_pool", [v.src], v.qualname, v.where)
        v = self._tensor(v, where, what)
        if len(v.shape) == 1:
            return v
        if v.shape[1:] == (1, 1):
            return self._add("global_pool", [v], qualname, where)  # the mean of one value is the value
        return self._add("flatten", [v], qualname, where)

    # ------------------------------------------------------------------ functions and methods

    def _function(self, n: fx.Node):
        qualname, where = self._func_where(n)
        name = self._op_name(n)
        target = n.target
        args = [self._val(a) for a in n.args]
        kwargs = {k: self._val(v) for k, v in n.kwargs.items()}
        method = n.op == "call_method"
        shown = f"Tensor.{name}" if method else _qualified(target)

        def arg(i, key, default=None):
            return args[i] if len(args) > i else kwargs.get(key, default)

        # sizes: only what view(n, -1) needs
        if (method and name == "size") or (target is getattr and len(args) == 2 and args[1] == "shape"):
            if not isinstance(args[0], (_T, _Pooled)):
                raise _Fail(f"{where}: {shown} of a {type(args[0]).__name__} is not supported")
            shape = args[0].shape if isinstance(args[0], _T) else (args[0].src.shape[0], 1, 1)
            dim = arg(1, "dim") if method else None
            return _Sizes(shape) if dim is None else self._size_at(shape, dim, where)
        if target is operator.getitem and isinstance(args[0], _Sizes):
            if isinstance(args[1], slice):  # x.shape[1:]: the sizes as constants, the batch as a marker
                return ((_Batch(),) + args[0].shape)[args[1]]
            return self._size_at(args[0].shape, args[1], where)
        if target in _ARITH and all(isinstance(a, int) for a in args) and not kwargs:
            return _ARITH[target](*args)
        # activations
        kind = None
        if target in _FUNC_ACTIVATIONS or (method and name in _METHOD_ACTIVATIONS):
            kind = _FUNC_ACTIVATIONS.get(target) or _METHOD_ACTIVATIONS[name]
        elif target is F.hardtanh or (method and name in ("hardtanh", "hardtanh_")):
            lo, hi = arg(1, "min_val", -1.0), arg(2, "max_val", 1.0)
            if (lo, hi) != (0.0, 6.0):
                raise _Fail(f"{where}: hardtanh({lo}, {hi}) is not supported (only relu6's 0..6)")
            kind = "relu6"
        if kind:
            x = self._tensor(args[0], where, shown)
            attrs = dict(approximate=arg(1, "approximate", "none")) if kind == "gelu" else {}
            out = self._add(kind, [x], qualname, where, **attrs)
            if name.endswith("_") or kwargs.get("inplace") or (len(args) > 1 and args[-1] is True and kind != "gelu"):
                self._mutated(n, n.args[0], out)
            return out
        if target is F.dropout or (method and name == "dropout"):
            out = self._add("dropout", [self._tensor(args[0], where, shown)], qualname, where,
                            p=float(arg(1, "p", 0.5)))
            if arg(3, "inplace", False):
                self._mutated(n, n.args[0], out)
            return out
        # merges
        if target in (operator.add, operator.iadd, torch.add) or (method and name in ("add", "add_")):
            a, b = arg(0, "input"), arg(1, "other")
            if not (isinstance(a, (_T, _Pooled)) and isinstance(b, (_T, _Pooled))):
                other = b if isinstance(a, (_T, _Pooled)) else a
                raise _Fail(f"{where}: {shown} of a tensor and a constant ({other!r}) is not supported "
                            f"(only of two tensors: a residual)")
            if kwargs.get("alpha", 1) != 1:
                raise _Fail(f"{where}: {shown} with alpha={kwargs['alpha']} is not supported")
            a, b = self._tensor(a, where, shown), self._tensor(b, where, shown)
            out = self._add("add", [a, b], qualname, where, weighted=False)
            if target is operator.iadd or name == "add_":
                self._mutated(n, n.args[0], out)
            return out
        if target in (torch.cat, torch.concat):
            xs, dim = arg(0, "tensors"), arg(1, "dim", 0)
            xs = [self._tensor(x, where, shown) for x in xs]
            if any(len(x.shape) != 3 for x in xs):
                raise _Fail(f"{where}: {shown} of vectors is not supported (only of feature maps, on channels)")
            if dim not in (1, -3):
                raise _Fail(f"{where}: {shown} on dim {dim} is not supported (only on channels, dim 1)")
            return xs[0] if len(xs) == 1 else self._add("concat", xs, qualname, where)
        # pools
        if target is F.max_pool2d:
            return self._pool("max_pool2d", self._tensor(args[0], where, shown, dims=4), qualname, where,
                              arg(1, "kernel_size"), arg(2, "stride"), arg(3, "padding", 0), arg(4, "dilation", 1),
                              arg(5, "ceil_mode", False), arg(6, "return_indices", False))
        if target is F.avg_pool2d:
            return self._pool("avg_pool2d", self._tensor(args[0], where, shown, dims=4), qualname, where,
                              arg(1, "kernel_size"), arg(2, "stride"), arg(3, "padding", 0), 1,
                              arg(4, "ceil_mode", False), False, arg(5, "count_include_pad", True),
                              arg(6, "divisor_override"))
        if target is F.adaptive_avg_pool2d:
            return self._adaptive(self._tensor(args[0], where, shown, dims=4), arg(1, "output_size"), qualname, where)
        if target is torch.mean or (method and name == "mean"):
            x = self._tensor(args[0], where, shown, dims=4)
            dims, keep = arg(1, "dim"), arg(2, "keepdim", False)
            if dims is None or kwargs.get("dtype") is not None or \
                    sorted(d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])) != [2, 3]:
                raise _Fail(f"{where}: {shown} over dims {dims} is not supported (only over H and W, (2, 3))")
            return _Pooled(x, qualname, where, shown) if keep else self._add("global_pool", [x], qualname, where)
        # reshapes
        if target is torch.flatten or (method and name == "flatten"):
            start, end = arg(1, "start_dim", 0), arg(2, "end_dim", -1)
            if start != 1 or end not in (-1, 3):
                raise _Fail(f"{where}: {shown}(start_dim={start}, end_dim={end}) is not supported "
                            f"(only from dim 1 on: the batch stays)")
            return self._flatten(args[0], qualname, where, shown)
        if (method and name in ("view", "reshape")) or target is torch.reshape:
            shape = args[1:] if method else [arg(1, "shape")]
            if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
                shape = list(shape[0])
            x = args[0]
            flat = _feature_count(x)
            if len(shape) == 2 and (isinstance(shape[0], _Batch) or shape[0] == -1) and \
                    (shape[1] == -1 or shape[1] == flat) and not (shape[0] == -1 and shape[1] == -1):
                return self._flatten(x, qualname, where, shown)
            shown_shape = tuple("n" if isinstance(s, _Batch) else s for s in shape)
            raise _Fail(f"{where}: {shown} to {shown_shape} is not supported (only to (n, -1), a flatten)")
        if method and name in ("contiguous", "detach"):
            group = self.aliases.setdefault(n.args[0], [n.args[0]])  # the same storage: in-place ops reach both
            group.append(n)
            self.aliases[n] = group
            return args[0]
        if method and name == "clone" or target is torch.clone:
            return args[0]
        if target is getattr:
            raise _Fail(f"{where}: reading the tensor attribute {args[1]!r} is not supported")
        if target is operator.getitem:
            raise _Fail(f"{where}: indexing a tensor ({shown}) is not supported")
        why = ""
        if target in _ATTENTION or name in ("softmax", "matmul", "bmm", "baddbmm", "transpose", "permute"):
            why = " (attention and token mixing are not layers the engine has)"
        elif target in (F.layer_norm, F.group_norm, F.instance_norm):
            why = " (of the normalisations, the engine has BatchNorm only)"
        raise _Fail(f"{where}: {shown} is not supported{why}")

    @staticmethod
    def _size_at(shape: tuple, dim, where):
        if not isinstance(dim, int) or not -len(shape) - 1 <= dim <= len(shape):
            raise _Fail(f"{where}: a size index {dim!r} is not supported")
        dim %= len(shape) + 1
        return _Batch() if dim == 0 else shape[dim - 1]


def _feature_count(v) -> int | None:
    if isinstance(v, _Pooled):
        return v.src.shape[0]
    if isinstance(v, _T):
        out = 1
        for s in v.shape:
            out *= s
        return out
    return None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _compact(v):
    """An int where both sides agree (how the rest of the engine and its drawings expect it)."""
    h, w = _pair(v)
    return int(h) if h == w else (int(h), int(w))


def _conv_attrs(m: nn.Conv2d, where: str) -> dict:
    if m.padding_mode != "zeros":
        raise _Fail(f"{where}: Conv2d with padding_mode={m.padding_mode!r} is not supported")
    padding = m.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(t % 2 for t in total):
            raise _Fail(f"{where}: Conv2d with padding='same' and an even kernel (uneven padding) is not supported")
        padding = tuple(t // 2 for t in total)
    return dict(out_channels=m.out_channels, kernel_size=_compact(m.kernel_size), stride=_compact(m.stride),
                padding=_compact(padding), dilation=_compact(m.dilation), groups=m.groups, bias=m.bias is not None)


def _qualified(f) -> str:
    mod = getattr(f, "__module__", None) or ""
    mod = {"torch._C._nn": "torch.nn.functional", "_operator": "operator", "torch._C._VariableFunctions": "torch"}.get(
        mod, mod)
    name = getattr(f, "__name__", str(f))
    if mod in ("", "builtins") and getattr(torch, name, None) is f:
        mod = "torch"
    return f"{mod}.{name}" if mod and mod != "builtins" else name


_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardtanh: "relu6", nn.GELU: "gelu", nn.SiLU: "silu",
                nn.Hardswish: "hardswish"}
_SUPPORTED_MODULES = {*_ACTIVATIONS, nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear, nn.Dropout, nn.MaxPool2d,
                      nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten}
_FUNC_ACTIVATIONS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu", F.relu6: "relu6",
                     F.gelu: "gelu", F.silu: "silu", F.hardswish: "hardswish"}
_METHOD_ACTIVATIONS = {"relu": "relu", "relu_": "relu"}
_ARITH = {operator.add: operator.add, operator.mul: operator.mul, operator.floordiv: operator.floordiv,
          operator.sub: operator.sub}
_ATTENTION = {F.scaled_dot_product_attention, F.multi_head_attention_forward, torch.matmul, torch.bmm, torch.softmax,
              F.softmax, torch.einsum}
