"""Layer kinds: what a node of kind K computes, its output shape, and its torch module.

A kind is registered once and serves the whole engine: shape inference, module building,
the validator, and the morphisms' questions ("does this node keep channels?", "is its output
non-negative?"). New kinds (the DARTS ops, say) register here without touching the rest.

Shapes are tuples: (C, H, W) for feature maps, (F,) for vectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .conv import Conv2d
from .errors import GraphError

Shape = tuple


@dataclass(frozen=True)
class LayerKind:
    name: str
    infer: Callable[[dict, list], Shape]  # (attrs, input shapes) -> output shape
    build: Callable[[dict, list], nn.Module]  # (attrs, input shapes) -> module
    arity: tuple = (1, 1)  # (min, max) inputs; max None = any
    defaults: dict = field(default_factory=dict)
    # How the node treats channels, for widen and concat-skips:
    #   "preserve": output channels are the input channels, one to one (bn, relu, pools)
    #   "merge":    output channels are each input's channels, one to one (add)
    #   "concat":   output channels are the inputs' channels one after another
    #   "flatten":  each input channel becomes a block of H*W features, in channel order
    #   "mix":      a learned map; the input side can grow (zero weights) and so can the output
    #               side (new filters): conv, linear
    #   "fixed":    none of that can change (input, output, anything else)
    channels: str = "fixed"
    # Whether the output is >= 0 whenever every input is >= 0 (so a ReLU after it is identity).
    keeps_nonneg: bool = False
    # Whether the output is >= 0 whatever the input (relu, relu6): deepen's inserted ReLU after
    # it is the identity. GELU, SiLU and Hardswish dip below 0, so deepen is not exact after them.
    nonneg: bool = False


LAYERS: dict[str, LayerKind] = {}


def register_layer(kind: LayerKind) -> LayerKind:
    if kind.name in LAYERS:
        raise ValueError(f"layer kind {kind.name!r} is already registered")
    LAYERS[kind.name] = kind
    return kind


def layer(name: str) -> LayerKind:
    try:
        return LAYERS[name]
    except KeyError:
        raise GraphError(f"unknown layer kind {name!r} (known: {', '.join(sorted(LAYERS))})") from None


def attrs_with_defaults(kind: str, attrs: dict) -> dict:
    return {**layer(kind).defaults, **attrs}


# ---------------------------------------------------------------- modules with no torch twin


class WeightedAdd(nn.Module):
    """NASH's additive merge: lam * a + (1 - lam) * b, lam learnable and started at 1."""

    def __init__(self, lam: float = 1.0):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lam)))

    def forward(self, a, b):
        return self.lam * a + (1 - self.lam) * b


class Sum(nn.Module):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    def forward(self, *xs):
        return torch.cat(xs, dim=1)


class Zeros(nn.Module):
    """A map of zeros shaped like the input (a cell node whose every incoming edge is 'none')."""

    def forward(self, x):
        return torch.zeros_like(x)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C), the mean over each map.

    Sum, then divide: the values of x.mean((2, 3)), which CPU torch computes this way. Its
    gradient is the pooled gradient expanded over the map, and it is handed back in x's memory
    layout. mean's backward writes it in NCHW, and so does an add or a scale of the expanded
    view (an additive skip before the pool); a channels_last ReLU or BN backward that mixes the
    two layouts ran 7-10x slower (relu + pool at 128x256x8x8: 8.8 ms forward and backward with
    mean, 1.3 ms this way)."""
    if (x.requires_grad and torch.is_grad_enabled() and x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):
        x.register_hook(_channels_last)
    return x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return global_avg_pool(x)


# torch.fx.symbolic_trace keeps the pool as one call (it cannot branch on a Proxy's
# requires_grad), so a traced Network runs this function, hook included
torch.fx.wrap("global_avg_pool")


# ---------------------------------------------------------------- shape helpers


def _map(shape: Shape, node_kind: str) -> Shape:
    if len(shape) != 3:
        raise GraphError(f"{node_kind} needs a feature map (C, H, W) input, got shape {tuple(shape)}")
    return shape


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(v) -> tuple:
    """(height, width) of a size given as an int or a pair (imported convs may be 1x7)."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _spatial(kind: str, shape: Shape, kernel, stride, padding, dilation=1):
    _, h, w = shape
    oh, ow = (_window(s, *args) for s, args in zip((h, w), zip(*map(_pair, (kernel, stride, padding, dilation)))))
    if oh < 1 or ow < 1:
        raise GraphError(
            f"{kind} (kernel {kernel}, stride {stride}, padding {padding}) shrinks a {h}x{w} map below 1x1")
    return oh, ow


def conv_padding(attrs: dict) -> int:
    p = attrs.get("padding")
    return attrs["dilation"] * (attrs["kernel_size"] // 2) if p is None else p


def _same_shapes(kind: str, shapes: list) -> Shape:
    first = tuple(shapes[0])
    for s in shapes[1:]:
        if tuple(s) != first:
            raise GraphError(f"{kind} inputs disagree in shape: {[tuple(x) for x in shapes]}")
    return first


# ---------------------------------------------------------------- the kinds


def _conv_infer(a, s):
    c, _, _ = _map(s[0], "conv")
    if c % a["groups"] or a["out_channels"] % a["groups"]:
        raise GraphError(f"conv groups={a['groups']} must divide in ({c}) and out ({a['out_channels']}) channels")
    return (a["out_channels"], *_spatial("conv", s[0], a["kernel_size"], a["stride"], conv_padding(a), a["dilation"]))


def _conv_build(a, s):
    return Conv2d(s[0][0], a["out_channels"], a["kernel_size"], a["stride"], conv_padding(a),
                  a["dilation"], a["groups"], bias=a["bias"])


def _pool_infer(kind):
    def infer(a, s):
        _map(s[0], kind)
        stride = a["stride"] or a["kernel_size"]
        return (s[0][0], *_spatial(kind, s[0], a["kernel_size"], stride, a["padding"]))
    return infer


def _bn_build(a, s):
    cls = nn.BatchNorm2d if len(s[0]) == 3 else nn.BatchNorm1d
    return cls(s[0][0], eps=a["eps"], momentum=a["momentum"], affine=a["affine"])


def _linear_infer(a, s):
    if len(s[0]) != 1:
        raise GraphError(f"linear needs a vector input (F,), got shape {tuple(s[0])}; put a global_pool before it")
    return (a["out_features"],)


def _concat_infer(a, s):
    for x in s:
        _map(x, "concat")
    if len({tuple(x[1:]) for x in s}) != 1:
        raise GraphError(f"concat inputs disagree in resolution: {[tuple(x) for x in s]}")
    return (sum(x[0] for x in s), *s[0][1:])


def _add_infer(a, s):
    if a["weighted"] and len(s) != 2:
        raise GraphError(f"a weighted add merges exactly 2 inputs, got {len(s)}")
    return _same_shapes("add", s)


register_layer(LayerKind("input", infer=lambda a, s: tuple(a["shape"]), build=lambda a, s: nn.Identity(),
                         arity=(0, 0)))
register_layer(LayerKind("output", infer=lambda a, s: tuple(s[0]), build=lambda a, s: nn.Identity()))
register_layer(LayerKind("aux_output", infer=lambda a, s: tuple(s[0]), build=lambda a, s: nn.Identity()))
register_layer(LayerKind(
    "conv", _conv_infer, _conv_build, channels="mix",
    defaults=dict(kernel_size=3, stride=1, padding=None, dilation=1, groups=1, bias=False)))
register_layer(LayerKind(
    "bn", lambda a, s: tuple(s[0]), _bn_build, channels="preserve",
    defaults=dict(eps=1e-5, momentum=0.1, affine=True)))
register_layer(LayerKind("relu", lambda a, s: tuple(s[0]), lambda a, s: nn.ReLU(), channels="preserve",
                         keeps_nonneg=True, nonneg=True))
register_layer(LayerKind(
    "maxpool", _pool_infer("maxpool"),
    lambda a, s: nn.MaxPool2d(a["kernel_size"], a["stride"] or a["kernel_size"], a["padding"]),
    channels="preserve", keeps_nonneg=True, defaults=dict(kernel_size=2, stride=None, padding=0)))
register_layer(LayerKind(
    "avgpool", _pool_infer("avgpool"),
    lambda a, s: nn.AvgPool2d(a["kernel_size"], a["stride"] or a["kernel_size"], a["padding"],
                              count_include_pad=a["count_include_pad"]),
    channels="preserve", keeps_nonneg=True,
    defaults=dict(kernel_size=2, stride=None, padding=0, count_include_pad=False)))
# A NAS-Bench-201 node whose every input is 'none' is all zeros, yet a conv that reads it still
# outputs BN's learned shift: lowering such cells exactly needs a node that outputs zeros.
register_layer(LayerKind("zero", lambda a, s: tuple(s[0]), lambda a, s: Zeros(), channels="preserve",
                         keeps_nonneg=True))
register_layer(LayerKind("global_pool", lambda a, s: (_map(s[0], "global_pool")[0],),
                         lambda a, s: GlobalAvgPool(), channels="preserve", keeps_nonneg=True))
register_layer(LayerKind(
    "add", _add_infer, lambda a, s: WeightedAdd(a["lam"]) if a["weighted"] else Sum(),
    arity=(2, None), channels="merge", defaults=dict(weighted=True, lam=1.0)))
register_layer(LayerKind("concat", _concat_infer, lambda a, s: Concat(), arity=(2, None), channels="concat",
                         keeps_nonneg=True))
register_layer(LayerKind("linear", _linear_infer, lambda a, s: nn.Linear(s[0][0], a["out_features"], bias=a["bias"]),
                         channels="mix", defaults=dict(bias=True)))


# ---------------------------------------------------------------- kinds for lowered DARTS cells


class Crop(nn.Module):
    """Drop `top`/`left`/`bottom`/`right` rows and columns (FactorizedReduce's x[:, :, 1:, 1:])."""

    def __init__(self, top: int = 0, left: int = 0, bottom: int = 0, right: int = 0):
        super().__init__()
        self.box = (top, left, bottom, right)

    def forward(self, x):
        top, left, bottom, right = self.box
        return x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right]


class DropPath(nn.Module):
    """Zero a whole sample's branch with probability `drop_prob` in training, scaling the kept
    ones by 1 / (1 - drop_prob); identity in eval. `drop_prob` is a plain attribute so that a
    trainer can ramp it (sgdr_train sets it on every module that has one)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if not self.training or self.drop_prob <= 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x / keep * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def _crop_infer(a, s):
    c, h, w = _map(s[0], "crop")
    for side in ("top", "left", "bottom", "right"):
        if a[side] < 0:
            raise GraphError(f"crop {side}={a[side]} must be >= 0")
    oh, ow = h - a["top"] - a["bottom"], w - a["left"] - a["right"]
    if oh < 1 or ow < 1:
        raise GraphError(f"crop {a['top']},{a['left']},{a['bottom']},{a['right']} leaves nothing of a {h}x{w} map")
    return (c, oh, ow)


register_layer(LayerKind("identity", lambda a, s: tuple(s[0]), lambda a, s: nn.Identity(), channels="preserve",
                         keeps_nonneg=True))
register_layer(LayerKind(
    "crop", _crop_infer, lambda a, s: Crop(a["top"], a["left"], a["bottom"], a["right"]), channels="preserve",
    keeps_nonneg=True, defaults=dict(top=0, left=0, bottom=0, right=0)))
register_layer(LayerKind(
    "drop_path", lambda a, s: tuple(s[0]), lambda a, s: DropPath(a["drop_prob"]), channels="preserve",
    keeps_nonneg=True, defaults=dict(drop_prob=0.0)))


# ---------------------------------------------------------------- kinds for imported modules
# (morphisms.from_module). Elementwise, so they pass channels through; only relu6 is >= 0
# everywhere, and so the only one of them that deepen may follow.

register_layer(LayerKind("relu6", lambda a, s: tuple(s[0]), lambda a, s: nn.ReLU6(), channels="preserve",
                         keeps_nonneg=True, nonneg=True))
register_layer(LayerKind("gelu", lambda a, s: tuple(s[0]), lambda a, s: nn.GELU(approximate=a["approximate"]),
                         channels="preserve", defaults=dict(approximate="none")))
register_layer(LayerKind("silu", lambda a, s: tuple(s[0]), lambda a, s: nn.SiLU(), channels="preserve"))
register_layer(LayerKind("hardswish", lambda a, s: tuple(s[0]), lambda a, s: nn.Hardswish(), channels="preserve"))
# a node even though it is the identity in eval: training the imported network drops as the user's did
register_layer(LayerKind("dropout", lambda a, s: tuple(s[0]), lambda a, s: nn.Dropout(a["p"]), channels="preserve",
                         keeps_nonneg=True, defaults=dict(p=0.5)))
# (C, H, W) -> (C*H*W,), as torchvision's VGG feeds its classifier: widening the conv before it
# grows the linear after it by H*W zero columns per new channel (channels.py)
register_layer(LayerKind("flatten", lambda a, s: (_map(s[0], "flatten")[0] * s[0][1] * s[0][2],),
                         lambda a, s: nn.Flatten(), channels="flatten", keeps_nonneg=True))
