"""Architecture steps: how the alphas learn. One small interface, several strategies.

    strategy = STRATEGIES["darts-2nd"](supernet)            # owns the alphas' Adam optimizer
    strategy.step(supernet, (x_train, y_train), (x_val, y_val), w_optimizer, eta)

`arch_grads` computes the gradient a strategy would apply and `step` applies it, so tests can
compare gradients without touching the optimizer. A strategy also says which op weights the
network runs with: `mixing_weights` (differentiable in the alphas: the architecture as the
alpha gradient sees it) and `weight_step_weights` (the same, detached: what the weight step
trains and what the supernet is evaluated with). DARTS and MiLeNAS use softmax(alpha); NASP
the one-hot argmax architecture.

Strategies (`strategy_for(method, order)`):
  darts-1st  grad_alpha L_val(w, alpha)
  darts-2nd  the unrolled gradient below
  milenas    grad_alpha L_train + lam * grad_alpha L_val (MiLeNAS, He et al. 2020; first order)
  nasp       the gradient at the discrete (one-hot) architecture, applied to plain alphas kept in
             [0, 1] (NASP, Yao et al. 2020)

Second order (DARTS eq. 7-8): the alpha gradient of L_val(w', alpha) at the virtual step
w' = w - eta * (grad_w L_train(w) + momentum * buffer + wd * w), whose implicit part
-eta * d2 L_train / d alpha d w . grad_w' L_val(w') is approximated by a central finite
difference at w +- R v, v = grad_w' L_val(w'), R = r / ||v||. The virtual weights are written
into the supernet's own tensors and restored afterwards: no model copy is ever made.

Passes whose only gradient anyone reads is the alphas' run under `supernet.weights_frozen()`:
autograd then computes no weight gradients and keeps nothing only they would need.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .selection import argmax_mask


def _grads(loss, params) -> list[torch.Tensor]:
    if not loss.requires_grad:  # nothing it depends on learns (weights frozen, every edge decided)
        return [torch.zeros_like(p) for p in params]
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def restore(supernet, weights, saved, buffers) -> None:
    """Put the weights and the BN buffers back exactly as saved: copies, not w - R v + R v, which
    would drift in floating point."""
    with torch.no_grad():
        for p, s in zip(weights, saved):
            p.copy_(s)
        for b, s in zip(supernet.buffers(), buffers):
            b.copy_(s)


class ArchStrategy:
    """Base: owns the optimizer of the alphas (Adam, lr 3e-4, betas (0.5, 0.999), wd 1e-3: the
    DARTS values) and applies whatever gradient `arch_grads` returns."""

    name = "base"

    def __init__(self, supernet: nn.Module, lr: float = 3e-4, betas=(0.5, 0.999), weight_decay: float = 1e-3,
                 criterion=F.cross_entropy):
        self.criterion = criterion
        self.optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=lr, betas=tuple(betas),
                                          weight_decay=weight_decay)

    # whether the weight step may skip ops whose weight is exactly 0 (one host sync per forward)
    skip_zero_ops = False

    def mixing_weights(self, supernet) -> tuple[torch.Tensor, ...]:
        """The op weights of the forward passes that the alpha gradient goes through."""
        return supernet.op_weights()

    def loss(self, supernet, batch, weights=None):
        x, y = batch
        return self.criterion(supernet(x, *(self.mixing_weights(supernet) if weights is None else weights)), y)

    def arch_grads(self, supernet, train_batch, val_batch, w_optimizer, eta) -> tuple[list[torch.Tensor], dict]:
        raise NotImplementedError

    def step(self, supernet, train_batch, val_batch, w_optimizer, eta: float) -> dict:
        """One update of the alphas; returns {'val_loss': tensor, ...}: scalar tensors the driver
        averages over the epoch (no host sync)."""
        grads, info = self.arch_grads(supernet, train_batch, val_batch, w_optimizer, eta)
        for a, g in zip(supernet.arch_parameters(), grads):
            a.grad = g.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return info

    def weight_step_weights(self, supernet) -> tuple[torch.Tensor, ...]:
        """Op weights for the weight step and for evaluating the supernet; detached so the
        weight step builds no alpha graph."""
        return tuple(w.detach() for w in self.mixing_weights(supernet))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


class FirstOrder(ArchStrategy):
    """DARTS first order: grad_alpha L_val(w, alpha), the weights taken as they are."""

    name = "darts-1st"

    def arch_grads(self, supernet, train_batch, val_batch, w_optimizer, eta):
        with supernet.weights_frozen():
            loss = self.loss(supernet, val_batch)
            return _grads(loss, supernet.arch_parameters()), {"val_loss": loss.detach()}


class SecondOrder(ArchStrategy):
    """DARTS second order (unrolled), finite-difference Hessian-vector product (see module doc)."""

    name = "darts-2nd"

    def __init__(self, supernet, r: float = 0.01, **kw):
        super().__init__(supernet, **kw)
        self.r = r  # reference value: the perturbation w +- R v has norm 0.01

    @staticmethod
    def _sgd_direction(w_optimizer, weights, grads) -> list[torch.Tensor]:
        """What the weight optimizer's next step would subtract (over its lr): the gradient plus
        momentum * buffer plus weight decay * w, read from its own state and param groups."""
        group_of = {id(p): g for g in w_optimizer.param_groups for p in g["params"]}
        out = []
        for p, g in zip(weights, grads):
            group = group_of.get(id(p), {})
            d = g + group.get("weight_decay", 0.0) * p.detach()
            buf = w_optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                d = d + group.get("momentum", 0.0) * buf
            out.append(d)
        return out

    def arch_grads(self, supernet, train_batch, val_batch, w_optimizer, eta):
        alphas, weights = supernet.arch_parameters(), supernet.weights()
        # Probing passes must not move BN running statistics: only the real weight step may.
        buffers = [b.detach().clone() for b in supernet.buffers()]
        saved = [p.detach().clone() for p in weights]
        try:
            # 1. the virtual step w' (in place); only weight gradients: detached op weights
            g_train = _grads(self.loss(supernet, train_batch, self.weight_step_weights(supernet)), weights)
            step = self._sgd_direction(w_optimizer, weights, g_train)
            del g_train
            with torch.no_grad():
                for p, d in zip(weights, step):
                    p.sub_(eta * d)
            del step
            # 2. L_val at w': its alpha gradient, and v = its weight gradient
            val_loss = self.loss(supernet, val_batch)
            gs = _grads(val_loss, alphas + weights)
            dalpha, v = gs[:len(alphas)], gs[len(alphas):]
            del gs
            # 3. d/dalpha grad_w L_train(w) . v by central differences at w +- R v
            R = self.r / torch.sqrt(sum((t * t).sum() for t in v))
            with torch.no_grad():
                for p, s, t in zip(weights, saved, v):
                    p.copy_(s).add_(R * t)
            with supernet.weights_frozen():
                g_plus = _grads(self.loss(supernet, train_batch), alphas)
            with torch.no_grad():
                for p, s, t in zip(weights, saved, v):
                    p.copy_(s).sub_(R * t)
            with supernet.weights_frozen():
                g_minus = _grads(self.loss(supernet, train_batch), alphas)
            grads = [da - eta * (gp - gm) / (2 * R) for da, gp, gm in zip(dalpha, g_plus, g_minus)]
        finally:
            restore(supernet, weights, saved, buffers)
        return grads, {"val_loss": val_loss.detach()}


class MixedLevel(ArchStrategy):
    """MiLeNAS: grad_alpha L_train(w, alpha) + lam * grad_alpha L_val(w, alpha), L_train on the
    weight batch, L_val on the alpha batch; the weight step is DARTS's (L_train). The authors'
    code computes the two gradients in two separate passes, and so does this one."""

    name = "milenas"

    def __init__(self, supernet, lam: float = 1.0, **kw):
        super().__init__(supernet, **kw)
        self.lam = float(lam)

    def arch_grads(self, supernet, train_batch, val_batch, w_optimizer, eta):
        alphas = supernet.arch_parameters()
        with supernet.weights_frozen():
            train_loss = self.loss(supernet, train_batch)
            g_train = _grads(train_loss, alphas)
            val_loss = self.loss(supernet, val_batch)
            g_val = _grads(val_loss, alphas)
        grads = [gt + self.lam * gv for gt, gv in zip(g_train, g_val)]
        return grads, {"val_loss": val_loss.detach(), "train_loss": train_loss.detach()}


class Proximal(ArchStrategy):
    """NASP: the alphas are plain op weights (no softmax), started at 0.5 and clipped to [0, 1]
    after every Adam step. Each step rounds them to the discrete architecture (`argmax_mask`: per
    edge the strongest op; in the DARTS space only each node's 2 strongest edges, as the authors'
    binarization keeps them), takes the gradient of L_val there, and applies it to the continuous
    alphas. The weight step trains that discrete architecture and runs only its ops.

    Followed on purpose from the authors' code: the init is exactly 0.5 (no noise); the alpha
    gradient is the full d L_val / d (op weight) at the one-hot point, i.e. every op of every
    edge runs in the alpha step (their updateType "alphas"), while the weight step runs only
    the selected ops (their updateType "weights"). With the straight-through form
    w = onehot + alpha - stop_grad(alpha) both facts are one line."""

    name = "nasp"
    skip_zero_ops = True

    def __init__(self, supernet, **kw):
        supernet.relaxation = "plain"
        with torch.no_grad():
            for a in supernet.arch_parameters():
                a.fill_(0.5)
        super().__init__(supernet, **kw)

    def discrete_weights(self, supernet) -> tuple[torch.Tensor, ...]:
        return tuple(argmax_mask(w.detach(), supernet.space) for w in supernet.op_weights())

    def mixing_weights(self, supernet):
        # value: the one-hot architecture (fixed edges included); gradient: identity to alpha
        alphas = supernet.op_weights()
        return supernet.apply_fixed(d + a - a.detach() for d, a in zip(self.discrete_weights(supernet), alphas))

    def weight_step_weights(self, supernet):
        return supernet.apply_fixed(self.discrete_weights(supernet))

    def arch_grads(self, supernet, train_batch, val_batch, w_optimizer, eta):
        with supernet.weights_frozen():
            loss = self.loss(supernet, val_batch)
            return _grads(loss, supernet.arch_parameters()), {"val_loss": loss.detach()}

    def step(self, supernet, train_batch, val_batch, w_optimizer, eta: float) -> dict:
        info = super().step(supernet, train_batch, val_batch, w_optimizer, eta)
        with torch.no_grad():
            for a in supernet.arch_parameters():
                a.clamp_(0.0, 1.0)
        return info


STRATEGIES: dict[str, type[ArchStrategy]] = {
    FirstOrder.name: FirstOrder,
    SecondOrder.name: SecondOrder,
    MixedLevel.name: MixedLevel,
    Proximal.name: Proximal,
}
METHODS = ("darts", "milenas", "nasp")


def strategy_for(method: str, order: int = 1) -> type[ArchStrategy]:
    """The strategy class for a config's method ("darts" | "milenas" | "nasp") and order (1 | 2;
    second order exists for darts only)."""
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r} (known: {', '.join(METHODS)})")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if method != "darts" and order != 1:
        raise ValueError(f"order 2 exists for method darts only; {method} is first order")
    return STRATEGIES[f"darts-{'1st' if order == 1 else '2nd'}" if method == "darts" else method]
