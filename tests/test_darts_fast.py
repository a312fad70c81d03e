"""The fast search path computes what the plain (authors'-cost) path computes, on a tiny supernet.

In float64 the two agree to rounding (1e-9 relative): same function, same alpha gradients of
both orders, same weight gradients, same BN running statistics. In float32 on CPU they agree to
the stated tolerances: outputs 1e-5 and first-order alpha gradients 1e-4 of their largest entry.
The second-order gradient is compared in float32 at eta = 0 (the unrolled path, its restore
included, reducing to the first-order gradient), because at eta > 0 its finite difference is
ill-conditioned in any implementation: the ReLU and max-pool kinks make it move by 1e-3 under a
1e-7 relative change of the weights even in float64, so float32 rounding alone moves the
reference's own result by up to 40% on this tiny net (measured over seeds); float64 is where
the two paths are shown equal. And the fast path keeps less than half of what the plain one
keeps for the backward pass, counted in bytes of saved tensors.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from nash.darts.architect import FirstOrder, SecondOrder
from nash.darts.fused import DepthwisePointwise, WeightedBatchNorm
from nash.darts.plain import plain_arch_grads, plain_forward, plain_loss, reference_layout
from nash.darts.supernet import Supernet


def tiny(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    net = Supernet(4, 10, 5, 3).to(dtype)
    with torch.no_grad():  # alphas away from uniform, so every op weight differs
        for a in net.arch_parameters():
            a.normal_(0, 1)
    net.train()
    return net


def batches(dtype=torch.float32, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda: (torch.randn(n, 3, 16, 16, generator=g).to(dtype), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    return make(), make()


def sgd(net):
    return torch.optim.SGD(net.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)


def rel(a, b) -> float:
    """The largest difference, relative to the largest entry of b."""
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b)) / max(float(y.detach().abs().max()) for y in b)



def with_momentum(net, opt, batch):
    """One real weight step, so the optimizer has momentum buffers (second order reads them)."""
    opt.zero_grad()
    plain_loss(net, batch).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    for a in net.arch_parameters():
        a.grad = None


@pytest.mark.parametrize("dtype, out_tol, first_tol, second_eta, second_tol", [
    (torch.float64, 1e-10, 1e-9, 0.025, 1e-9),
    (torch.float32, 1e-5, 1e-4, 0.0, 1e-4),
])
def test_fast_equals_plain(dtype, out_tol, first_tol, second_eta, second_tol):
    fast = tiny(dtype)
    plain = reference_layout(copy.deepcopy(fast))
    train, val = batches(dtype)
    # the function
    assert rel([fast(train[0])], [plain_forward(plain, train[0])]) < out_tol
    # alpha gradients of both orders, with momentum in the weight optimizer
    f_opt, p_opt = sgd(fast), sgd(plain)
    with_momentum(fast, f_opt, val)
    with_momentum(plain, p_opt, val)
    g1, _ = FirstOrder(fast).arch_grads(fast, train, val, f_opt, 0.025)
    assert rel(g1, plain_arch_grads(plain, train, val, p_opt, 0.025, order=1)) < first_tol
    g2, _ = SecondOrder(fast).arch_grads(fast, train, val, f_opt, second_eta)
    assert rel(g2, plain_arch_grads(plain, train, val, p_opt, second_eta, order=2)) < second_tol
    # the weights are where they were, and so are BN's running statistics
    # (one real step each, in their own layouts: other kernels, so equal up to rounding; the
    # weights are O(1) and moved by lr 0.025 times a gradient, so a few eps of the dtype each)
    for p, q in zip(fast.weights(), plain.weights()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_weight_gradients_and_running_statistics_agree():
    fast = tiny(torch.float64)
    plain = reference_layout(copy.deepcopy(fast))
    train, _ = batches(torch.float64)
    ws = tuple(w.detach() for w in fast.op_weights())  # the weight step's op weights
    F.cross_entropy(fast(train[0], *ws), train[1]).backward()
    F.cross_entropy(plain_forward(plain, train[0], ws), train[1]).backward()
    for (name, p), q in zip(fast.named_parameters(), plain.parameters()):
        if not name.startswith("alphas"):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
    # every BN module, shared pools' included, saw the update its own call makes
    for (name, b), c in zip(fast.named_buffers(), plain.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-9, atol=1e-12, msg=name)
    # eval mode: each BN with its own running statistics
    fast.eval(), plain.eval()
    assert rel([fast(train[0])], [plain_forward(plain, train[0])]) < 1e-10


def saved_bytes(run) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while `run()` builds its graph
    (a tensor saved by several ops counts once)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.dtype)] = max(seen.get((t.untyped_storage().data_ptr(), t.dtype), 0),
                                                               t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    del loss
    return sum(seen.values())


def test_fast_path_keeps_under_half_of_what_plain_keeps():
    fast = tiny()
    plain = reference_layout(copy.deepcopy(fast))
    (x, y), _ = batches(n=8)
    # the alpha pass (first order) and the weight pass
    with fast.weights_frozen():
        fast_alpha = saved_bytes(lambda: F.cross_entropy(fast(x), y))
    plain_alpha = saved_bytes(lambda: plain_loss(plain, (x, y)))
    fast_weight = saved_bytes(lambda: F.cross_entropy(fast(x, *(w.detach() for w in fast.op_weights())), y))
    assert fast_alpha < 0.5 * plain_alpha, (fast_alpha, plain_alpha)
    assert fast_weight < 0.5 * plain_alpha, (fast_weight, plain_alpha)  # the plain weight step is its alpha pass


# (kernel, stride, padding, dilation, side): DARTS's sep and dil convs at stride 1 and 2; the
# strided dilated ones take the subsampled path, on even and odd sides
@pytest.mark.parametrize("k, stride, padding, dilation, side", [
    (3, 1, 1, 1, 6), (5, 2, 2, 1, 6), (3, 1, 2, 2, 6), (3, 2, 2, 2, 6), (5, 2, 4, 2, 7), (3, 2, 2, 2, 5)])
def test_depthwise_pointwise_is_the_two_convs(k, stride, padding, dilation, side):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, side, side, generator=g, dtype=torch.float64, requires_grad=True)
    w_dw = torch.randn(3, 1, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    w_pw = torch.randn(4, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    conf = ((stride, stride), (padding, padding), (dilation, dilation))
    dwpw = lambda x, a, b: DepthwisePointwise.apply(x, a, b, *conf)  # noqa: E731
    expect = F.conv2d(F.conv2d(x, w_dw, None, stride, padding, dilation, 3), w_pw)
    torch.testing.assert_close(dwpw(x, w_dw, w_pw), expect, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(dwpw, (x, w_dw, w_pw))
    assert torch.autograd.gradgradcheck(dwpw, (x, w_dw, w_pw))  # the Hessian diagnostics differentiate twice


def test_weighted_batch_norm_is_w_times_bn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    stats = (torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    wbn = lambda x, w: WeightedBatchNorm.apply(x, w, *stats, 0.1, 1e-5)  # noqa: E731
    expect = w * F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(wbn(x, w), expect)
    assert torch.autograd.gradcheck(wbn, (x, w))
    assert torch.autograd.gradgradcheck(wbn, (x, w))
