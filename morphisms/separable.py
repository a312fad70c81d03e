"""separable: a k x k conv replaced by a depthwise k x k conv and a 1 x 1 pointwise conv
(MobileNet's factorisation; one of LEMONADE's approximate morphisms), fitted in closed form.

The pair computes out[o] = sum_c P[o, c] * (D[c] * x[c]): a conv whose kernel W'[o, c] is the
rank-1 product P[o, c] D[c]. For each input channel c the problem is apart from the others:
approximate the (out x k*k) matrix W[:, c] by a rank-1 matrix. Its truncated SVD,
sigma_1 u_1 v_1^T, is the best one in the Frobenius norm (Eckart-Young), so the fit minimises
||W - W'||_F over every depthwise-then-pointwise pair exactly, and that is the output error of
white inputs (independent, unit variance; map borders aside). It is not optimal for the
network's real inputs (it ignores how their channels and pixels correlate, which a fit to
activations would weigh), nor for what BN, activations and later layers make of the error.
Exact where every W[:, c] has rank 1.

The registry's conv already expresses both halves (a depthwise conv is a conv whose groups
equal its in and out channels, as `from_module` imports MobileNet's), so no new kind is needed.
"""
from __future__ import annotations

import math

import torch

from .approximate import Shrink
from .edit import Edit
from .graph import fresh_name, inputs_of, node_attrs, redirect_consumers
from .layers import _pair
from .network import Network


def separable_plan(e: Edit, node: str):
    """(in channels, out channels, kernel (kh, kw)); fails where the replacement does not apply
    or would not shrink the conv."""
    e.need_node(node, "conv")
    if e.kind(node) != "conv":
        e.fail(f"it is a {e.kind(node)}, not a conv")
    a = e.g.nodes[node]
    if a["groups"] != 1:
        e.fail(f"it is a grouped conv (groups={a['groups']}); only a full conv is factorised")
    kh, kw = _pair(a["kernel_size"])
    if kh * kw == 1:
        e.fail("it is a 1x1 conv, which has no spatial kernel to separate")
    cin, cout = e.shapes[inputs_of(e.g, node)[0]][0], a["out_channels"]
    # weights per output pixel (the MACs scale the same way): cin*k*k + cout*cin vs cout*cin*k*k
    if cin * kh * kw + cout * cin >= cout * cin * kh * kw:
        e.fail(f"with {cout} filter(s) of {kh}x{kw}, a depthwise and a pointwise conv would not be smaller")
    return cin, cout, (kh, kw)


def rank1_fit(w: torch.Tensor):
    """(depthwise (C, 1, kh, kw), pointwise (O, C, 1, 1), relative residual ||W - W'||_F / ||W||_F)
    for a conv weight W (O, C, kh, kw), in float64."""
    o, c, kh, kw = w.shape
    per_input = w.to(torch.float64).transpose(0, 1).reshape(c, o, kh * kw)
    u, s, vh = torch.linalg.svd(per_input, full_matrices=False)
    # sigma_1 split evenly between the halves, so neither starts far larger than the other
    root = s[:, 0].sqrt()
    depth = root[:, None] * vh[:, 0, :]
    point = root[:, None] * u[:, :, 0]
    # the SVD's sign is the LAPACK build's choice: fix it, so every machine fits alike
    flip = torch.where(depth.sum(1) < 0, -1.0, 1.0).to(torch.float64)
    depth, point = depth * flip[:, None], point * flip[:, None]
    residual = s[:, 1:].square().sum().sqrt()
    total = s.square().sum().sqrt()
    rel = (residual / total).item() if total > 0 else 0.0
    return depth.reshape(c, 1, kh, kw), point.transpose(0, 1).reshape(o, c, 1, 1), rel


def separable(net: Network, node: str, seed: int = 0):
    """(child, record): `net` with conv `node` replaced by a depthwise conv (its kernel, stride,
    padding and dilation) and a 1x1 conv (its filters and bias), fitted to it by rank-1 SVDs.
    `seed` is accepted for a uniform signature: the fit is closed-form, nothing is drawn."""
    e = Edit(net, f"separable {node!r}", seed)
    cin, cout, _ = separable_plan(e, node)
    old = e.modules[node]
    depth, point, residual = rank1_fit(old.weight.detach())
    a = node_attrs(e.g, node)
    src = inputs_of(e.g, node)[0]
    dw = e.add("conv", [src], name=_name(e, f"{node}_depthwise"), **{**a, "out_channels": cin, "groups": cin,
                                                                     "bias": False})
    pw = e.add("conv", [dw], name=_name(e, f"{node}_pointwise"), out_channels=cout, kernel_size=1, stride=1,
               padding=0, dilation=1, groups=1, bias=a["bias"])
    with torch.no_grad():
        e.modules[dw].weight.copy_(depth)
        e.modules[pw].weight.copy_(point)
        if a["bias"]:
            e.modules[pw].bias.copy_(old.bias)
    redirect_consumers(e.g, node, pw, exclude={dw})
    e.g.remove_node(node)
    del e.modules[node]
    e.refresh_shapes()
    if e.shapes[pw] != net.shapes[node]:  # a guard: the pair must be shaped as the conv was
        e.fail(f"the pair's output {e.shapes[pw]} differs from the conv's {net.shapes[node]}")
    did = {"depthwise": dw, "pointwise": pw, "kernel_residual": residual if math.isfinite(residual) else None}
    return e.finish(), Shrink.of("separable", node=node, did=did)


def _name(e: Edit, base: str) -> str:
    return base if base not in e.g else fresh_name(e.g, "conv")
