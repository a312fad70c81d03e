"""Per-epoch signals of a search going wrong.

- `normal_skips(genotype)`: skip connections in the derived normal cell. DARTS's known failure
  is a collapse to parameter-free ops, skip connections first; their count is the plain signal.
- `dominant_eigenvalue(loss_fn, params)`: the largest-magnitude eigenvalue of the Hessian of a
  loss with respect to some parameters, by power iteration on Hessian-vector products (double
  backward). R-DARTS (Zela et al. 2020) tracks it for the validation loss w.r.t. the alphas: it
  grows before the collapse. `alpha_hessian_eigenvalue` is that measurement on a supernet.
"""
from __future__ import annotations

import torch


def normal_skips(genotype) -> int:
    """skip_connect ops in the normal cell (the only cell of a NAS-Bench-201 genotype)."""
    if hasattr(genotype, "edge_ops"):
        return sum(op == "skip_connect" for op in genotype.edge_ops())
    return sum(op == "skip_connect" for op, _ in genotype.normal)


def dominant_eigenvalue(loss_fn, params, iters: int = 20, generator: torch.Generator | None = None) -> float:
    """Power iteration: v <- H v / |H v| from a random unit v, `iters` Hessian-vector products;
    returns the Rayleigh quotient v.Hv of the last v (signed: the eigenvalue of largest
    magnitude). The gradient graph is built once and reused by every product."""
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    norm = torch.sqrt(sum((t * t).sum() for t in v))
    v = [t / norm for t in v]
    eig = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = sum((h * t).sum() for h, t in zip(hv, v))
        norm = torch.sqrt(sum((h * h).sum() for h in hv))
        # a zero product (a flat loss) leaves v as it is instead of dividing by 0; no host sync
        v = [torch.where(norm > 0, h / norm.clamp_min(1e-30), t) for h, t in zip(hv, v)]
    return float(eig.detach())


def alpha_hessian_eigenvalue(supernet, strategy, batch, iters: int = 20, seed: int = 0) -> float:
    """The dominant eigenvalue of the Hessian of the loss on `batch` w.r.t. the alphas, through
    the strategy's own op weights (softmax for DARTS, the discrete point for NASP), in training
    mode as the alpha step sees it. BN running statistics are restored afterwards, so the
    measurement leaves the search untouched; the start vector comes from `seed`."""
    buffers = [b.detach().clone() for b in supernet.buffers()]
    was_training = supernet.training
    supernet.train()
    try:
        with supernet.weights_frozen():  # only alpha derivatives are read
            return dominant_eigenvalue(lambda: strategy.loss(supernet, batch), supernet.arch_parameters(), iters,
                                       torch.Generator().manual_seed(seed))
    finally:
        supernet.train(was_training)
        with torch.no_grad():
            for b, s in zip(supernet.buffers(), buffers):
                b.copy_(s)
