"""Shrinking moves (the approximate family): every one applicable to a network, and a random one.

Kept apart from `moves`/`random_morphisms` on purpose: the climber draws from those and relies
on each child computing its parent's function, which no move here promises. `shrinks(net)` lists
the applicable moves in a fixed order, so a seeded `random_shrink` makes the same choice every
time; a child is a pure function of parent and record (what goes is chosen by the weights, the
fits are closed-form, nothing is drawn from torch's generators).
"""
from __future__ import annotations

import random

from .approximate import SHRINK_KINDS, Shrink
from .channels import tied_class
from .edit import Edit
from .errors import MorphismError
from .moves import MORPHISMS, _ok
from .network import Network
from .prune import PRUNABLE, prune_filters, prune_plan
from .remove_block import block_plan, remove_block
from .separable import separable, separable_plan

SHRINKS = {"remove_block": remove_block, "prune_filters": prune_filters, "separable": separable}
assert tuple(SHRINKS) == SHRINK_KINDS and not set(SHRINKS) & set(MORPHISMS)

# the share of a class's channels one prune_filters takes when none is asked for (at least one,
# and at least one stays): big enough to matter, small enough that a short recovery can follow
PRUNE_FRACTION = 0.25


def prune_count(width: int, fraction: float = PRUNE_FRACTION) -> int:
    return min(width - 1, max(1, int(width * fraction)))


def _check_kinds(kinds):
    unknown = [k for k in kinds if k not in SHRINKS]
    if unknown:
        raise MorphismError(f"unknown shrinking move(s) {unknown} (known: {', '.join(SHRINKS)})")


def shrinks(net: Network, kinds=SHRINK_KINDS, prune_fraction: float = PRUNE_FRACTION) -> list[Shrink]:
    """Every applicable shrinking move, in a fixed order (one prune per tied class: pruning any
    of a class's producers is the same move)."""
    _check_kinds(kinds)
    if not 0 < prune_fraction < 1:
        raise MorphismError(f"prune_fraction must be in (0, 1), got {prune_fraction!r}")
    g, order = net.graph, net._order
    probe = Edit.view(net)  # graph-only checks: no module copies
    out = []
    if "remove_block" in kinds:
        out += [Shrink.of("remove_block", conv=n) for n in order
                if g.nodes[n]["kind"] == "conv" and _ok(lambda n=n: block_plan(probe, n))]
    if "prune_filters" in kinds:
        seen = set()
        for n in order:
            if g.nodes[n]["kind"] not in PRUNABLE or net.shapes[n][0] < 2:
                continue
            members = frozenset(tied_class(g, n, net.shapes))
            k = prune_count(net.shapes[n][0], prune_fraction)
            if members not in seen and _ok(lambda n=n, k=k: prune_plan(probe, n, k)):
                seen.add(members)
                out.append(Shrink.of("prune_filters", node=n, k=k))
    if "separable" in kinds:
        out += [Shrink.of("separable", node=n) for n in order
                if g.nodes[n]["kind"] == "conv" and _ok(lambda n=n: separable_plan(probe, n))]
    return out


def random_shrink(net: Network, rng=0, kinds=SHRINK_KINDS, prune_fraction: float = PRUNE_FRACTION):
    """(child, record) of one shrinking move: a kind uniformly among the applicable ones, then
    one of its places uniformly. `rng` is an int seed or a `random.Random`. Raises MorphismError
    where no move of `kinds` applies."""
    options = shrinks(net, kinds, prune_fraction)
    if not options:
        raise MorphismError(f"no shrinking move ({', '.join(kinds)}) applies to this network")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    by_kind = {}
    for m in options:
        by_kind.setdefault(m.kind, []).append(m)
    move = rng.choice(by_kind[rng.choice(sorted(by_kind))])
    return move.apply(net, seed=rng.getrandbits(63))
