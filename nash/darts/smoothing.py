"""Smoothing of the weight step (SDARTS, Chen and Hsieh 2020): train the weights under perturbed
op weights, so that the supernet's loss is flat around the architecture and the alphas stop
drifting towards the sharp regions where DARTS collapses.

    smoother = SMOOTHERS["rs"](seed=0)
    weights, info = smoother.perturb(supernet, weights, (x, y), epsilon)   # then the weight step

A smoother only changes the op weights handed to the weight step, so it composes with any
architecture strategy (whatever op weights the strategy gives, they get perturbed). Facts
followed from the authors' code: the perturbation is on the softmax weights (not on the
logits), is followed by `clip_rows` (clamp to [0, 1], renormalise each row), and epsilon ramps
linearly from 0.03 at the first epoch to `epsilon` (`epsilon_at`).

  none  no perturbation
  rs    uniform noise in [-eps, eps]
  adv   7 steps of L-inf PGD ascending the training loss, step 2 eps / 7, sign steps, random
        start, on the training batch with BN in eval mode; the perturbation is dropped when it
        did not raise the loss
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nash.data import make_generator, set_generator_state

EPSILON_START = 0.03  # the authors' ramp start


def epsilon_at(epoch: int, epochs: int, epsilon: float) -> float:
    """The authors' linear ramp: 0.03 at epoch 0, reaching `epsilon` only after the last epoch
    (epoch / epochs, epochs counted from 0, as their train_search does)."""
    return EPSILON_START + (epsilon - EPSILON_START) * epoch / epochs


def clip_rows(w: torch.Tensor) -> torch.Tensor:
    """Clamp op weights to [0, 1] and renormalise each row to sum 1; a row clamped to all zeros
    becomes one-hot at its (pre-clamp) largest entry (authors' `clip`). No host sync."""
    clamped = w.clamp(0.0, 1.0)
    dead = clamped.sum(dim=-1, keepdim=True) == 0
    one_hot = F.one_hot(w.argmax(dim=-1), w.shape[-1]).to(w.dtype)
    clamped = torch.where(dead, one_hot, clamped)
    return clamped / clamped.sum(dim=-1, keepdim=True)


class Smoother:
    """Interface. Randomness comes from the smoother's own generator, saved with the run, so a
    resumed search draws the same perturbations. It lives on `device`, the supernet's
    (`nash.data.make_generator`): on a CPU today's stream, on a GPU draws without a host sync."""

    name = "base"

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu"):
        self.generator = make_generator(seed, device)

    def perturb(self, supernet, weights: tuple, batch, epsilon: float) -> tuple[tuple, dict]:
        """(perturbed op weights, {name: scalar tensor} to average over the epoch)."""
        raise NotImplementedError

    def uniform(self, w: torch.Tensor, epsilon: float) -> torch.Tensor:
        """Noise uniform in [-epsilon, epsilon], shaped like w, on w's device."""
        u = torch.rand(w.shape, generator=self.generator, dtype=w.dtype, device=self.generator.device)
        return ((2 * u - 1) * epsilon).to(w.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        set_generator_state(self.generator, state["generator"])  # also across device types


class NoSmoothing(Smoother):
    name = "none"

    def perturb(self, supernet, weights, batch, epsilon):
        return tuple(weights), {}


class RandomSmoothing(Smoother):
    """SDARTS-RS."""

    name = "rs"

    def perturb(self, supernet, weights, batch, epsilon):
        return tuple(clip_rows(w + self.uniform(w, epsilon)) for w in weights), {}


class AdversarialSmoothing(Smoother):
    """SDARTS-ADV: the op weights within epsilon (L-inf) of the given ones that (approximately)
    maximise the training loss on this batch. Costs 1 + steps forward-backward passes and two
    forward passes per weight step."""

    name = "adv"

    def __init__(self, seed: int = 0, steps: int = 7, device: str | torch.device = "cpu"):
        super().__init__(seed, device)
        self.steps = steps

    def perturb(self, supernet, weights, batch, epsilon):
        x, y = batch
        clean = tuple(w.detach() for w in weights)

        def loss(ws):
            return F.cross_entropy(supernet(x, *supernet.apply_fixed(ws)), y)

        was_training = supernet.training
        supernet.eval()  # BN in eval mode during the attack (authors)
        try:
            with torch.no_grad():
                loss_before = loss(clean)
            ws = tuple(clip_rows(w + self.uniform(w, epsilon)) for w in clean)  # random start
            step = 2 * epsilon / self.steps
            for _ in range(self.steps):
                ws = tuple(w.requires_grad_() for w in ws)
                # allow_unused: a cell whose every edge PT has decided does not depend on its weights;
                # weights frozen: the attack reads the op weights' gradient only
                with supernet.weights_frozen():
                    attacked = loss(ws)
                    grads = torch.autograd.grad(attacked, ws, allow_unused=True) if attacked.requires_grad \
                        else [None] * len(ws)
                grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, ws)]
                with torch.no_grad():
                    ws = tuple(clip_rows(w0 + (w + step * g.sign() - w0).clamp(-epsilon, epsilon))
                               for w, g, w0 in zip(ws, grads, clean))
            with torch.no_grad():
                loss_after = loss(ws)
        finally:
            supernet.train(was_training)
        # keep the perturbation only where it raised the loss (authors: restore when
        # loss_before > loss_after); chosen on the device, no host sync
        kept = loss_after >= loss_before
        ws = tuple(torch.where(kept, w, w0) for w, w0 in zip(ws, clean))
        gain = torch.where(kept, loss_after - loss_before, torch.zeros_like(loss_after))
        return ws, {"adv_kept": kept.float(), "adv_gain": gain}


SMOOTHERS: dict[str, type[Smoother]] = {s.name: s for s in (NoSmoothing, RandomSmoothing, AdversarialSmoothing)}
