"""A child under construction: the parent's graph and modules, copied, to be changed and sealed.

Every morphism starts from `Edit(parent, what, seed)` and ends with `edit.finish()`, so no
morphism can touch its parent: the graph and every module are copies. Every random weight a
child gets comes from the edit's own generator, seeded by the morphism's `seed`, so a child is a
pure function of parent and seed and torch's global generator is never drawn from.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .errors import MorphismError
from .graph import add_layer, infer_shapes, inputs_of
from .layers import LAYERS, DropPath, layer
from .network import Network


class Edit:
    def __init__(self, parent: Network, what: str, seed: int = 0):
        self.parent = parent
        self.generator = torch.Generator().manual_seed(int(seed))
        self.what = what  # e.g. "deepen after 'relu3'", the prefix of every error
        self.g = parent.graph.copy()
        self.modules = {n: copy.deepcopy(m) for n, m in parent.layers.items()}
        self.shapes = dict(parent.shapes)
        ref = next(iter(parent.parameters()), None)
        self.device = ref.device if ref is not None else torch.device("cpu")
        self.dtype = ref.dtype if ref is not None else torch.get_default_dtype()

    @classmethod
    def view(cls, net: Network, what: str = "") -> "Edit":
        """The parent's graph and shapes without copies, for plans that only read them (moves)."""
        e = cls.__new__(cls)
        e.parent, e.what, e.g, e.shapes, e.modules = net, what, net.graph, net.shapes, net.layers
        return e

    def fail(self, why: str):
        raise MorphismError(f"{self.what}: {why}")

    def need_node(self, name: str, role: str = "node") -> str:
        if name not in self.g:
            self.fail(f"no {role} named {name!r} in the network")
        return name

    def kind(self, name: str) -> str:
        return self.g.nodes[name]["kind"]

    def add(self, kind: str, inputs, module: nn.Module | None = None, **attrs) -> str:
        """Add a node; build its module (or take `module`) on the parent's device and dtype."""
        name = add_layer(self.g, kind, inputs, **attrs)
        in_shapes = [self.shapes[u] for u in inputs]
        self.shapes[name] = tuple(layer(kind).infer(self.g.nodes[name], in_shapes))
        if module is None:
            module = self.build(name, in_shapes)
        self.modules[name] = module.to(self.device, self.dtype)
        return name

    def build(self, node: str, in_shapes) -> nn.Module:
        """`node`'s module, its random weights drawn from this edit's generator only."""
        # torch's constructors draw their default init from the global generator: fork it, so
        # its state is as before, then redraw what was drawn from ours
        with torch.random.fork_rng(devices=[]):
            module = layer(self.kind(node)).build(self.g.nodes[node], in_shapes)
        seeded_init(module, self.generator)
        return module

    def refresh_shapes(self):
        self.shapes = infer_shapes(self.g)

    def finish(self) -> Network:
        child = Network(self.g, self.modules)
        child.train(self.parent.training)
        return child


def seeded_init(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every conv and linear weight and bias as torch's default init does (uniform in
    +-1/sqrt(fan_in), i.e. kaiming_uniform with a=sqrt(5)), but from `generator`. The other
    registered kinds hold no random init (BN starts at ones and zeros, an add's lam is given)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                bound = 1.0 / math.sqrt(max(m.weight[0].numel(), 1))
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)


def is_nonneg(net_or_edit, node: str, _memo=None) -> bool:
    """Whether `node`'s output is >= 0 for every input (so a ReLU after it is the identity)."""
    g = net_or_edit.g if isinstance(net_or_edit, Edit) else net_or_edit.graph
    mods = net_or_edit.modules if isinstance(net_or_edit, Edit) else net_or_edit.layers
    memo = {} if _memo is None else _memo
    if node in memo:
        return memo[node]
    kind = g.nodes[node]["kind"]
    ins = inputs_of(g, node)
    if LAYERS[kind].nonneg:
        ok = True
    elif kind == "add":
        if g.nodes[node]["weighted"]:
            lam = float(mods[node].lam.detach())
            # lam*a + (1-lam)*b keeps the sign of a and b only as a convex combination
            used = [ins[0]] if lam == 1.0 else [ins[1]] if lam == 0.0 else ins
            ok = 0.0 <= lam <= 1.0 and all(is_nonneg(net_or_edit, u, memo) for u in used)
        else:
            ok = all(is_nonneg(net_or_edit, u, memo) for u in ins)
    elif LAYERS[kind].keeps_nonneg:
        ok = all(is_nonneg(net_or_edit, u, memo) for u in ins)
    else:
        ok = False
    memo[node] = ok
    return ok


def identity_bn(num_features: int, eps: float, stats=None, vector: bool = False, dtype=None) -> nn.Module:
    """A BatchNorm that is the identity: NASH sets gamma = sqrt(var + eps), beta = mean.

    With `stats` = (mean, var) of a calibration batch (biased var, as BN uses in train mode)
    it is the identity on that batch in train mode and everywhere in eval mode; without, the
    running stats are (0, 1) and it is the identity in eval mode."""
    # built in the network's dtype: rounding sqrt(var + eps) to float32 first would show in float64
    bn = (nn.BatchNorm1d if vector else nn.BatchNorm2d)(num_features, eps=eps, dtype=dtype)
    with torch.no_grad():
        if stats is not None:
            mean, var = (s.detach().to(torch.float64) for s in stats)
        else:
            mean = torch.zeros(num_features, dtype=torch.float64)
            var = torch.ones(num_features, dtype=torch.float64)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + eps))
        bn.bias.copy_(mean)
    return bn


def batch_stats(parent: Network, x: torch.Tensor, node: str):
    """Per-channel (mean, biased var) of `node`'s output on batch `x`, parent in train mode
    (as the child will see it in train mode), leaving the parent's running stats untouched."""
    probe = copy.deepcopy(parent).train()
    for m in probe.modules():
        if isinstance(m, DropPath):
            # drop path is noise on top of the function, and it draws from the global generator:
            # calibrate on the noiseless function, so the stats are a pure function of the batch
            m.drop_prob = 0.0
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()  # the same for an imported network's dropout
    with torch.no_grad():
        a = probe.activations(x, [node])[node].to(torch.float64)
    dims = (0, 2, 3) if a.dim() == 4 else (0,)
    return a.mean(dims), a.var(dims, unbiased=False)
