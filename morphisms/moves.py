"""Candidate moves: every morphism applicable to a network, and random sequences of them.

A `Move` is a small value (kind + arguments) that can be printed, stored in JSON and applied
again; `moves(net)` lists the applicable ones in a fixed order, so that a seeded
`random_morphisms` makes the same choices every time. The random weights a move adds come from
the `seed` it is applied with, so (parent, move, seed) fixes the child, weights included.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import networkx as nx

from .deepen import DEEPEN_AFTER, deepen
from .edit import Edit, is_nonneg
from .errors import MorphismError
from .insert_bn import insert_bn
from .network import Network
from .skip import add_skip, concat_plan
from .widen import WIDENABLE, widen, widen_plan

MORPHISMS = {"deepen": deepen, "widen": widen, "add_skip": add_skip, "insert_bn": insert_bn}
# a skip is exact whatever the activation: any of them ends a block
BLOCK_OUTPUTS = ("relu", "relu6", "gelu", "silu", "hardswish", "maxpool", "avgpool", "add", "concat")


@dataclass(frozen=True)
class Move:
    kind: str
    args: tuple  # ((name, value), ...), sorted, hashable

    @classmethod
    def of(cls, kind: str, **args) -> "Move":
        if kind not in MORPHISMS:
            raise MorphismError(f"unknown morphism {kind!r} (known: {', '.join(MORPHISMS)})")
        return cls(kind, tuple(sorted(args.items())))

    def apply(self, net: Network, calibrate=None, seed: int = 0) -> Network:
        return MORPHISMS[self.kind](net, **dict(self.args), calibrate=calibrate, seed=seed)

    def to_json(self) -> dict:
        return {"kind": self.kind, **dict(self.args)}

    @classmethod
    def from_json(cls, data: dict) -> "Move":
        data = dict(data)
        return cls.of(data.pop("kind"), **data)

    def __str__(self):
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in self.args)})"


def _ok(check) -> bool:
    try:
        check()
        return True
    except MorphismError:
        return False


def moves(net: Network, kinds=tuple(MORPHISMS)) -> list[Move]:
    """Every applicable morphism (with default sizes: 3x3 deepen, widen x2), in a fixed order."""
    g, shapes = net.graph, net.shapes
    order = net._order
    maps = [n for n in order if len(shapes[n]) == 3 and g.nodes[n]["kind"] not in ("input", "output", "aux_output")]
    out = []
    if "deepen" in kinds:
        memo = {}
        out += [Move.of("deepen", after=n) for n in maps
                if g.nodes[n]["kind"] in DEEPEN_AFTER and is_nonneg(net, n, memo)]
    if "widen" in kinds:
        probe = Edit.view(net)  # graph-only checks: no module copies needed
        out += [Move.of("widen", node=n, factor=2.0) for n in order
                if g.nodes[n]["kind"] in WIDENABLE and _ok(lambda n=n: widen_plan(probe, n, 2.0))]
    if "add_skip" in kinds:
        probe = Edit.view(net)
        ends = [n for n in maps if g.nodes[n]["kind"] in BLOCK_OUTPUTS]
        for dst in ends:
            before = nx.ancestors(g, dst)
            preds = set(g.predecessors(dst))
            srcs = [s for s in ends if s in before and s not in preds and _divides(shapes[s], shapes[dst])]
            if not srcs:
                continue
            out += [Move.of("add_skip", src=s, dst=dst, mode="add") for s in srcs]
            try:  # the plan depends on the branch's width only through counts, not which nodes grow
                grown, _ = concat_plan(probe, dst, 1)
            except MorphismError:
                continue
            out += [Move.of("add_skip", src=s, dst=dst, mode="concat") for s in srcs if s not in grown]
    if "insert_bn" in kinds:
        out += [Move.of("insert_bn", after=n) for n in maps
                if g.nodes[n]["kind"] != "bn" and not any(g.nodes[c]["kind"] == "bn" for c in g.successors(n))]
    return out


def _divides(s, d) -> bool:
    return s[1] % d[1] == 0 and s[2] % d[2] == 0 and s[1] // d[1] == s[2] // d[2]


CAPACITY = ("deepen", "widen")  # the morphisms that add capacity; skips and BN re-route or rescale it


def _within(net: Network, max_macs, max_params) -> bool:
    return (max_macs is None or net.macs() <= max_macs) and (max_params is None or net.num_params() <= max_params)


def capacity_moves(net: Network, max_macs=None, max_params=None) -> list[tuple[Move, int, int]]:
    """[(move, parameters added, MACs added)] for the deepen and widen moves of `net` whose child
    stays within `max_macs` and `max_params`, in `moves`' fixed order. A step's children can each
    start from a different one of them (`random_morphisms(first=...)`), so that a step compares
    where capacity is added rather than drawing the same deepen several times over."""
    out = []
    params, macs = net.num_params(), net.macs()
    for m in moves(net, CAPACITY):
        child = m.apply(net)  # no calibration: only the counts are read
        if _within(child, max_macs, max_params):
            out.append((m, child.num_params() - params, child.macs() - macs))
    return out


def random_morphisms(net: Network, n: int, rng=0, calibrate=None, kinds=tuple(MORPHISMS), max_macs=None,
                     max_params=None, first: Move | None = None):
    """Apply `n` random applicable morphisms; return (child, [Move, ...]) in the order applied.

    Each step picks a morphism kind uniformly among those applicable, then one of its moves
    uniformly, so frequent kinds (there are many more skips than widens) do not crowd out the
    rest. `rng` is an int seed or a `random.Random`; each move's weight seed is drawn from it
    too, so the same seed gives the same child, weights included, whatever the state of torch's
    global generator (which is left untouched).

    `max_macs`: a move that would make the child cost more multiply-accumulates per input is
    drawn again from the other moves (a search on a budget caps how much a child may grow);
    fewer than `n` moves are applied when no move fits. `max_params`: the same for parameters.
    A cap that no move reaches changes nothing: the draws are those made without it. (Both
    counts only grow under these morphisms, so a cap on every move is a cap on the child.)

    `first`: a move applied before the random ones (its weight seed the generator's first draw),
    which then number n - 1; one that does not apply, or breaks a cap, is an error."""
    unknown = [k for k in kinds if k not in MORPHISMS]
    if unknown:
        raise MorphismError(f"unknown morphism(s) {unknown} (known: {', '.join(MORPHISMS)})")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    applied = []
    if first is not None and n > 0:
        if first not in moves(net, (first.kind,)):
            raise MorphismError(f"{first} does not apply to this network")
        net = first.apply(net, calibrate=calibrate, seed=rng.getrandbits(63))
        if not _within(net, max_macs, max_params):
            raise MorphismError(f"{first} makes a child over the cost cap")
        applied.append(first)
    for _ in range(n - len(applied)):
        options = moves(net, kinds)
        child = None
        while options and child is None:
            by_kind = {}
            for m in options:
                by_kind.setdefault(m.kind, []).append(m)
            move = rng.choice(by_kind[rng.choice(sorted(by_kind))])
            child = move.apply(net, calibrate=calibrate, seed=rng.getrandbits(63))
            if not _within(child, max_macs, max_params):
                options.remove(move)
                child = None
        if child is None:
            break
        net = child
        applied.append(move)
    return net, applied
