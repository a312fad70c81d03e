"""The DARTS search step computed the way the DARTS authors' code computes it: the baseline that
experiments/bench_darts.py times the fast path against, and the oracle the tests compare it with.

What makes it cost what the reference costs, on purpose:
  * every edge runs every op, 'none' included (as x * 0), and sums w_k * op_k(x), each op on its
    own (its own ReLU, its own pool and BN), in NCHW;
  * the op weights are softmax(alpha) with the alphas requiring grad in every pass, so every
    forward keeps what the alpha gradient needs, the weight step's included;
  * first order: the alpha step backpropagates into all weights and alphas (loss.backward());
  * second order: w' is computed from the gradient of every parameter and written into a new
    copy of the model (the unrolled model); L_val(w') backpropagates into all of its parameters;
    the finite-difference Hessian-vector product takes two more passes, alpha gradients only
    (the reference's own torch.autograd.grad on the alphas);
  * the weight step backpropagates into weights and alphas, clips, steps.

It works on the same `Supernet` modules and parameters as the fast path, so the two can be
compared on one network. DARTS space only (the reference's), plain DARTS (no variants).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .architect import restore


def plain_forward(supernet, x, weights=None):
    """The supernet's function, computed edge by edge and op by op as the reference does, in the
    layout of x and the supernet (`reference_layout` for the reference's costs).
    weights: one op-weight tensor per cell type (default: softmax of the alphas, differentiable)."""
    wn, wr = supernet.op_weights() if weights is None else weights
    s0 = s1 = supernet.stem(x)
    for cell in supernet.cells:
        w = wr if cell.reduction else wn
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        offset = 0
        for _ in range(cell.steps):
            node = sum(_mixed(cell.edges[offset + j], h, w[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(node)
        s0, s1 = s1, torch.cat(states[-cell.multiplier:], dim=1)
    return supernet.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def _mixed(mixed_op, x, w):
    return sum(wk * (_zero(x, mixed_op.zero.stride) if kind == "zero" else op(x))
               for wk, op, (kind, _) in zip(w, mixed_op.ops, mixed_op.plans))


def _zero(x, stride: int):
    """The reference's 'none': x * 0, strided like the other ops."""
    return x.mul(0.0) if stride == 1 else x[:, :, ::stride, ::stride].mul(0.0)


def reference_layout(supernet):
    """The supernet in NCHW, the reference's layout (nash's supernets are channels_last); in place."""
    return supernet.to(memory_format=torch.contiguous_format)


def plain_loss(supernet, batch):
    x, y = batch
    return F.cross_entropy(plain_forward(supernet, x), y)


def _unrolled_copy(supernet, theta):
    """A new model holding `theta` as its weights (the reference's _construct_model_from_theta)."""
    model = copy.deepcopy(supernet)
    with torch.no_grad():
        for p, t in zip(model.weights(), theta):
            p.copy_(t)
    return model


def plain_arch_grads(supernet, train_batch, val_batch, w_optimizer, eta: float, order: int, r: float = 0.01):
    """The alpha gradient of one architect step, computed the reference's way; the weights end as
    they started (first order leaves their .grad filled, as the reference does)."""
    alphas, weights = supernet.arch_parameters(), supernet.weights()
    for a in alphas:
        a.grad = None
    if order == 1:
        plain_loss(supernet, val_batch).backward()  # into every parameter
        return [a.grad.clone() for a in alphas]
    # second order: the unrolled model at w' = w - eta * (momentum * buffer + grad + wd * w)
    group_of = {id(p): g for g in w_optimizer.param_groups for p in g["params"]}
    grads = torch.autograd.grad(plain_loss(supernet, train_batch), weights)
    theta = []
    for p, g in zip(weights, grads):
        group = group_of[id(p)]
        buf = w_optimizer.state.get(p, {}).get("momentum_buffer")
        moment = group["momentum"] * buf if buf is not None else torch.zeros_like(p)
        theta.append(p.detach() - eta * (moment + g + group["weight_decay"] * p.detach()))
    unrolled = _unrolled_copy(supernet, theta)
    plain_loss(unrolled, val_batch).backward()  # into every parameter of the copy
    dalpha = [a.grad for a in unrolled.arch_parameters()]
    vector = [p.grad for p in unrolled.weights()]
    R = r / torch.cat([v.flatten() for v in vector]).norm()
    saved = [p.detach().clone() for p in weights]
    buffers = [b.detach().clone() for b in supernet.buffers()]
    try:
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=float(R))
        g_plus = torch.autograd.grad(plain_loss(supernet, train_batch), alphas)
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.sub_(v, alpha=2 * float(R))
        g_minus = torch.autograd.grad(plain_loss(supernet, train_batch), alphas)
    finally:
        restore(supernet, weights, saved, buffers)
    return [d - eta * (gp - gm) / (2 * R) for d, gp, gm in zip(dalpha, g_plus, g_minus)]


def plain_search_step(supernet, a_optimizer, w_optimizer, train_batch, val_batch, eta: float, grad_clip: float,
                      order: int):
    """One search step the reference's way: the architect step, then the weight step with
    gradients into weights and alphas. Returns the weight-step loss."""
    grads = plain_arch_grads(supernet, train_batch, val_batch, w_optimizer, eta, order)
    for a, g in zip(supernet.arch_parameters(), grads):
        a.grad = g
    a_optimizer.step()
    a_optimizer.zero_grad(set_to_none=True)
    w_optimizer.zero_grad(set_to_none=True)
    loss = plain_loss(supernet, train_batch)
    loss.backward()  # into weights and alphas, as the reference's weight step
    nn.utils.clip_grad_norm_(supernet.weights(), grad_clip)
    w_optimizer.step()
    return loss.detach()
