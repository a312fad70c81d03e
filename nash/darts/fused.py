"""The supernet's fast path: all edges leaving one node computed together, sharing what they can.

A DARTS cell runs every op on every edge, and many of those computations are the same: the four
conv ops of an edge each start with ReLU of the same input, and every edge leaving a node reads
that node, so the reference computes ReLU(h) up to 16 times per node and the parameter-free
pools (and the affine-free BN after them, which in training mode depends on its input only) once
per edge. Here a node's outgoing edges are computed in one go (`source_edges`):

  * ReLU(h) once per node, shared by every conv op of every edge leaving it;
  * each pool (and its BN) once per node; every edge's BN module still gets the running-statistics
    update its own call would have made, so the module state stays what the reference's is;
  * 'none' never runs (w * 0 adds nothing and passes no gradient);
  * depthwise -> pointwise conv pairs run as one autograd function (`DepthwisePointwise`) that
    keeps only the pair's input and recomputes the depthwise output when the pointwise weight
    gradient needs it: the depthwise output, one activation per pair, is never stored (the
    depthwise conv is the cheapest conv of the op; its recompute costs little);
  * the weighted sum and the node sums accumulate in place (addcmul_/add_ on tensors this module
    made), one pass over memory per op instead of a product and a sum.

The result is the reference's function: `plain.py` computes it the reference's way and the tests
compare the two (outputs and alpha gradients). Ops this module does not know run as they are.
Everything here is generic torch: CPU and CUDA alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import FactorizedReduce, Zero


def _strided_by_dilation(w, stride, padding, dilation) -> int:
    """d when a depthwise conv has stride == dilation == d > 1 and 'same' padding d * (k - 1) / 2
    (DARTS's dilated convs on a reduction cell's input edges), else 0. Such a conv reads only
    every d-th pixel of its padded input: it is the undilated, unstrided conv (padding
    (k - 1) / 2) of x[:, :, ::d, ::d], a quarter of the work, and its backward avoids oneDNN's
    strided dilated kernels (15-18x slower on CPU, experiments/bench_darts.py's notes)."""
    d = dilation[0]
    k = w.shape[-2:]
    if d > 1 and tuple(stride) == tuple(dilation) == (d, d) and k[0] % 2 and k[1] % 2 \
            and tuple(padding) == (d * (k[0] - 1) // 2, d * (k[1] - 1) // 2):
        return d
    return 0


def depthwise(x, w, stride, padding, dilation):
    d = _strided_by_dilation(w, stride, padding, dilation)
    if d:
        k = w.shape[-2:]
        return F.conv2d(x[:, :, ::d, ::d], w, None, 1, ((k[0] - 1) // 2, (k[1] - 1) // 2), 1, x.shape[1])
    return F.conv2d(x, w, None, stride, padding, dilation, x.shape[1])


def depthwise_backward(g, x, w, stride, padding, dilation, need_x: bool, need_w: bool):
    """(grad x, grad w) of `depthwise` (None where not needed)."""
    conv_backward = torch.ops.aten.convolution_backward
    d = _strided_by_dilation(w, stride, padding, dilation)
    if not d:
        g_x, g_w, _ = conv_backward(g, x, w, None, list(stride), list(padding), list(dilation), False, [0, 0],
                                    x.shape[1], [need_x, need_w, False])
        return g_x, g_w
    k = w.shape[-2:]
    g_sub, g_w, _ = conv_backward(g, x[:, :, ::d, ::d], w, None, [1, 1], [(k[0] - 1) // 2, (k[1] - 1) // 2],
                                  [1, 1], False, [0, 0], x.shape[1], [need_x, need_w, False])
    g_x = None
    if need_x:  # the pixels the conv never reads get no gradient
        g_x = torch.zeros_like(x)
        g_x[:, :, ::d, ::d] = g_sub
    return g_x, g_w


class DepthwisePointwise(torch.autograd.Function):
    """pointwise(depthwise(x)) that saves x (not the depthwise output) and recomputes the
    depthwise output in the backward only when the pointwise weight's gradient needs it."""

    @staticmethod
    def forward(ctx, x, w_dw, w_pw, stride, padding, dilation):
        ctx.conf = (stride, padding, dilation)
        ctx.save_for_backward(x, w_dw, w_pw)
        return F.conv2d(depthwise(x, w_dw, stride, padding, dilation), w_pw)

    @staticmethod
    def backward(ctx, g):
        x, w_dw, w_pw = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_x, need_dw, need_pw = ctx.needs_input_grad[:3]
        g_x = g_dw = g_pw = g_a = None
        if need_pw:  # the pointwise weight gradient needs the depthwise output: recompute it
            a = depthwise(x, w_dw, stride, padding, dilation)
            g_a, g_pw, _ = torch.ops.aten.convolution_backward(g, a, w_pw, None, [1, 1], [0, 0], [1, 1], False,
                                                               [0, 0], 1, [need_x or need_dw, True, False])
        elif need_x or need_dw:  # a 1x1 conv's input gradient is the 1x1 conv with the transposed weight
            g_a = F.conv2d(g, w_pw.transpose(0, 1))
        if need_x or need_dw:
            g_x, g_dw = depthwise_backward(g_a, x, w_dw, stride, padding, dilation, need_x, need_dw)
        return g_x, g_dw, g_pw, None, None, None


class WeightedBatchNorm(torch.autograd.Function):
    """w * BN(x) for an affine-free BN in training mode, keeping x (which BN keeps anyway) but not
    BN's output: the gradient of w, sum(g * BN(x)), recomputes BN(x) from x and the batch
    statistics. Without it, w * y keeps y for w's gradient: one more activation per op."""

    @staticmethod
    def forward(ctx, x, w, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.ops.aten.native_batch_norm(x, None, None, running_mean, running_var, True,
                                                           momentum, eps)
        ctx.eps = eps
        ctx.save_for_backward(x, w, mean, invstd)
        return y * w

    @staticmethod
    def backward(ctx, g):
        x, w, mean, invstd = ctx.saved_tensors
        g_x = g_w = None
        if ctx.needs_input_grad[0]:
            g_x = torch.ops.aten.native_batch_norm_backward(g * w, x, None, None, None, mean, invstd, True, ctx.eps,
                                                            [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            if torch.is_grad_enabled():  # create_graph: BN(x) as a function of x, statistics included
                var, mu = torch.var_mean(x, dim=(0, 2, 3), unbiased=False, keepdim=True)
                y = (x - mu) * torch.rsqrt(var + ctx.eps)
            else:  # the statistics the forward saved
                shape = (1, -1, 1, 1)
                y = (x - mean.view(shape)) * invstd.view(shape)
            g_w = (g * y).sum().reshape(w.shape)
        return g_x, g_w, None, None, None, None


def _is_depthwise(m) -> bool:
    return (isinstance(m, nn.Conv2d) and m.bias is None and m.groups == m.in_channels == m.out_channels
            and m.padding_mode == "zeros" and not isinstance(m.padding, str))


def _is_pointwise(m) -> bool:
    return (isinstance(m, nn.Conv2d) and m.bias is None and m.groups == 1 and m.kernel_size == (1, 1)
            and m.stride == (1, 1) and m.padding == (0, 0) and m.dilation == (1, 1))


def op_plan(op: nn.Module):
    """How `source_edges` runs an op: (kind, steps). Kinds: "zero" (never runs), "identity",
    "pool" (a pool then an affine-free BN: shared per node), "bare_pool" (shared per node),
    "relu_first" (a Sequential that starts with ReLU, or FactorizedReduce: run on the shared
    ReLU(h); steps index its layers after the ReLU, ("dwpw", i) fusing layers i and i + 1), and
    "opaque" (run as it is). Plain data, so a deep-copied or pickled supernet stays right."""
    if isinstance(op, Zero):
        return "zero", ()
    if isinstance(op, nn.Identity):
        return "identity", ()
    if isinstance(op, (nn.MaxPool2d, nn.AvgPool2d)):
        return "bare_pool", ()
    if isinstance(op, FactorizedReduce):
        return "relu_first", ("fr",)
    if isinstance(op, nn.Sequential) and len(op) == 2 and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d)) \
            and isinstance(op[1], nn.BatchNorm2d) and not op[1].affine:
        return "pool", ()
    if isinstance(op, nn.Sequential) and len(op) > 1 and isinstance(op[0], nn.ReLU):
        layers, steps, i = list(op), [], 1
        while i < len(layers):
            if i + 1 < len(layers) and _is_depthwise(layers[i]) and _is_pointwise(layers[i + 1]):
                steps.append(("dwpw", i))
                i += 2
            else:
                steps.append(("layer", i))
                i += 1
        return "relu_first", tuple(steps)
    return "opaque", ()


def run_relu_first(op: nn.Module, steps, r, w):
    """w * (a "relu_first" op (see `op_plan`) applied to r = ReLU(x)); w a 0-dim tensor. A final
    affine-free BN in training mode and a w that learns go through `WeightedBatchNorm`."""
    if steps == ("fr",):  # FactorizedReduce without its own ReLU
        x, bn = torch.cat([op.conv_1(r), op.conv_2(r[:, :, 1:, 1:])], dim=1), op.bn
    else:
        for how, i in steps[:-1]:
            r = run_relu_first_step(op, how, i, r)
        how, i = steps[-1]
        if how != "layer" or not isinstance(op[i], nn.BatchNorm2d):
            return w * run_relu_first_step(op, how, i, r)
        x, bn = r, op[i]
    if w.requires_grad and _shareable_bn(bn):
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        return WeightedBatchNorm.apply(x, w, bn.running_mean, bn.running_var, bn.momentum, bn.eps)
    return w * bn(x)


def run_relu_first_step(op, how, i, r):
    if how == "dwpw":
        dw, pw = op[i], op[i + 1]
        return DepthwisePointwise.apply(r, dw.weight, pw.weight, dw.stride, dw.padding, dw.dilation)
    return op[i](r)


def shared_batch_norm(x, bns: list) -> torch.Tensor:
    """bns[0](x), standing for every BN module in `bns` (all affine-free, in training mode, fed
    this same x): BN's output then depends on x alone, so one call serves all; each further
    module's running statistics get the update its own call would have made. (In eval mode each
    module normalises with its own running statistics: the caller runs each.)"""
    first = bns[0]
    if len(bns) == 1:
        return first(x)
    old = (first.running_mean.clone(), first.running_var.clone())
    y = first(x)
    with torch.no_grad():
        m = first.momentum
        # first's update: new = (1 - m) old + m * batch, so m * batch = new - (1 - m) old
        d_mean = first.running_mean - (1 - m) * old[0]
        d_var = first.running_var - (1 - m) * old[1]
        for bn in bns[1:]:
            bn.running_mean.mul_(1 - m).add_(d_mean)
            bn.running_var.mul_(1 - m).add_(d_var)
            bn.num_batches_tracked.add_(1)
    return y


def _shareable_bn(m) -> bool:
    return (isinstance(m, nn.BatchNorm2d) and not m.affine and m.training and m.track_running_stats
            and m.momentum is not None)


def source_edges(h, mixed_ops, weights, active) -> list:
    """The outputs of the edges `mixed_ops` (MixedOps of one cell, all leaving the node whose value
    is h) with op weights `weights` (one row each) and `active` (one list of bools each, or None:
    every op), in order. Each output is a fresh tensor the caller may accumulate into in place."""
    ops0 = mixed_ops[0]  # every edge leaving one node has the same ops and strides
    runs = [[r and (act is None or act[k]) for k, r in enumerate(mo._run)] for mo, act in zip(mixed_ops, active)]
    outs = [None] * len(mixed_ops)

    def add(e, k, y):
        w = weights[e][k]
        outs[e] = w * y if outs[e] is None else outs[e].addcmul_(y, w)

    def add_weighted(e, wy):
        outs[e] = wy if outs[e] is None else outs[e].add_(wy)

    relu = None
    for k, (kind, steps) in enumerate(ops0.plans):
        users = [e for e in range(len(mixed_ops)) if runs[e][k]]
        if not users:
            continue
        if kind == "identity":
            for e in users:
                add(e, k, h)
        elif kind == "pool":
            pooled = mixed_ops[users[0]].ops[k][0](h)
            bns = [mixed_ops[e].ops[k][1] for e in users]
            if all(_shareable_bn(bn) for bn in bns):
                y = shared_batch_norm(pooled, bns)
                for e in users:
                    add(e, k, y)
            else:  # eval mode: each BN normalises with its own running statistics
                for e, bn in zip(users, bns):
                    add(e, k, bn(pooled))
        elif kind == "bare_pool":
            pooled = mixed_ops[users[0]].ops[k](h)
            for e in users:
                add(e, k, pooled)
        elif kind == "relu_first":
            relu = F.relu(h) if relu is None else relu
            for e in users:
                add_weighted(e, run_relu_first(mixed_ops[e].ops[k], steps, relu, weights[e][k]))
        else:  # an op this module does not know: as it is
            for e in users:
                add(e, k, mixed_ops[e].ops[k](h))
    for e, mo in enumerate(mixed_ops):
        if outs[e] is None:  # nothing runs on this edge ('none' only, or every op masked)
            outs[e] = mo.zero(h)
    return outs
