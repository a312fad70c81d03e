"""The approximate family: its record (`Shrink`) and how far a move moved the function.

Exact morphisms keep the function and may be chained blindly; these do not, and each wants a
short recovery training afterwards (LEMONADE). They live apart from `MORPHISMS`: their kind
names are disjoint from the exact ones and `Move.of` refuses them, so nothing that needs
exactness (the climber's `random_morphisms`) can draw one by accident.

A record says what to do (`args`, enough to replay the move on the same parent) and what was
done (`did`: the nodes removed, the channels pruned, the fit's residual), all JSON-able.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import MorphismError

# the registry itself (shrink.py) imports the moves, which import this record: the names live
# here so that a record can be checked without the moves
SHRINK_KINDS = ("remove_block", "prune_filters", "separable")


@dataclass(frozen=True)
class Shrink:
    kind: str
    args: tuple  # ((name, value), ...), sorted, hashable: replaying them gives the same child
    did: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, kind: str, did: dict | None = None, **args) -> "Shrink":
        if kind not in SHRINK_KINDS:
            raise MorphismError(f"unknown shrinking move {kind!r} (known: {', '.join(SHRINK_KINDS)})")
        return cls(kind, tuple(sorted(args.items())), dict(did or {}))

    def apply(self, net, seed: int = 0):
        """(child, record of what was done)."""
        from .shrink import SHRINKS  # the moves import this module, so the registry comes later
        return SHRINKS[self.kind](net, **dict(self.args), seed=seed)

    def to_json(self) -> dict:
        return {"kind": self.kind, **dict(self.args), **({"did": self.did} if self.did else {})}

    @classmethod
    def from_json(cls, data: dict) -> "Shrink":
        data = dict(data)
        did = data.pop("did", None)
        return cls.of(data.pop("kind"), did=did, **data)

    def __str__(self):
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in self.args)})"


def approximation_error(parent, child, x: torch.Tensor) -> dict:
    """How far `child` computes from `parent` on batch `x`, both in eval mode (BN on its running
    statistics, no dropout): {"max_abs": max |child(x) - parent(x)|, "relative": that over
    max |parent(x)|}. Each module's train/eval flag is put back afterwards."""
    flags = [(m, m.training) for net in (parent, child) for m in net.modules()]
    try:
        parent.eval()
        child.eval()
        with torch.no_grad():
            want, got = parent(x), child(x)
    finally:
        for m, training in flags:
            m.training = training
    if got.shape != want.shape:
        raise MorphismError(f"the child's output {tuple(got.shape)} is not shaped like the parent's {tuple(want.shape)}")
    diff = (got - want).abs().max().item() if want.numel() else 0.0
    scale = want.abs().max().item() if want.numel() else 0.0
    relative = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return {"max_abs": diff, "relative": relative}
