"""From a trained supernet to a genotype: which edges and ops survive.

A `Selector` turns a supernet (plus whatever else it needs: PT measures accuracies and
fine-tunes) into a genotype. `ArgmaxSelector` is the DARTS rule, whose core is the pure
function `argmax_cell`, usable on any op weights; `PerturbationSelector` is PT (Wang et al.
2021): it keeps, edge by edge, the op whose removal costs the most accuracy.
"""
from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F

from .genotype import Genotype, NB201Genotype
from .ops import DARTS_SPACE, NB201_SPACE, SearchSpace


def argmax_choices(weights: torch.Tensor, space: SearchSpace) -> list[tuple[int, int]]:
    """(edge, op column) pairs the argmax rule keeps in one cell, given its op weights
    (edges x ops). Where the space keeps k inputs per node (DARTS: 2), each node keeps the k
    incoming edges whose strongest choosable op (not 'none') is strongest, strongest first;
    where it keeps every edge (NAS-Bench-201), each edge takes its strongest op, 'none'
    included, in edge order.

    Ties go to the lower index (the earlier edge, the earlier op), as the reference does, so the
    same weights print the same genotype text."""
    w = weights.detach().to("cpu", torch.float64)
    allowed = space.choosable_ops()
    chosen, e = [], 0
    for i in range(space.steps):
        n_in = space.num_inputs + i
        best_val, best_k = w[e:e + n_in, allowed].max(dim=1)  # max returns the first index of a tie
        edges = range(n_in)
        if space.inputs_per_node is not None:
            # sorted() is stable: equal strengths keep edge order
            edges = sorted(edges, key=lambda j: -float(best_val[j]))[:space.inputs_per_node]
        chosen += [(e + j, allowed[int(best_k[j])]) for j in edges]
        e += n_in
    return chosen


def argmax_cell(weights: torch.Tensor, space: SearchSpace) -> list[tuple[str, int]]:
    """The argmax rule as the genotype's (op name, input node) pairs (see `argmax_choices`)."""
    edges = space.edges
    return [(space.ops[k], edges[e][0]) for e, k in argmax_choices(weights, space)]


def argmax_mask(weights: torch.Tensor, space: SearchSpace) -> torch.Tensor:
    """The argmax architecture as op weights: 1 for each kept (edge, op), 0 elsewhere (a dropped
    edge is a row of zeros). Same device and dtype as `weights`. On a GPU it is computed there
    (`_argmax_mask_on_device`, the same choices): NASP asks for it every step, and the host's
    rule would wait for the GPU each time."""
    if weights.device.type != "cpu":
        return _argmax_mask_on_device(weights, space)
    mask = torch.zeros(weights.shape, dtype=weights.dtype)
    for e, k in argmax_choices(weights, space):
        mask[e, k] = 1.0
    return mask.to(weights.device)


@functools.lru_cache(maxsize=None)
def _argmax_tables(space: SearchSpace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the choosable op columns as a mask; [j, j']: edges j and j' end at the same node; [j, j']:
    j' is earlier there, so it wins a tie), on `device`, made once per space and device."""
    choosable = torch.zeros(len(space.ops), dtype=torch.bool)
    choosable[space.choosable_ops()] = True
    dst = torch.tensor([d for _, d in space.edges])
    index = torch.arange(space.num_edges)
    same_node = dst[:, None] == dst[None, :]
    earlier = same_node & (index[None, :] < index[:, None])  # [j, j']: j' comes before j at j's node
    return choosable.to(device), same_node.to(device), earlier.to(device)


def _argmax_mask_on_device(weights: torch.Tensor, space: SearchSpace) -> torch.Tensor:
    """`argmax_mask` with tensor ops only, no host sync: the same choices as `argmax_choices`
    (each edge's first strongest choosable op; each node's `inputs_per_node` strongest edges,
    the earlier edge first on a tie), bit for bit."""
    choosable, same_node, earlier = _argmax_tables(space, weights.device)
    w = weights.detach()
    best_val, best_k = w.masked_fill(~choosable, float("-inf")).max(dim=1)  # max: the first index of a tie
    keep = torch.ones_like(best_val, dtype=torch.bool)
    if space.inputs_per_node is not None:
        v, v_other = best_val[:, None], best_val[None, :]
        outranked_by = same_node & ((v_other > v) | ((v_other == v) & earlier))  # [j, j']: j' ranks above j
        keep = outranked_by.sum(dim=1) < space.inputs_per_node
    return F.one_hot(best_k, w.shape[1]).to(w.dtype) * keep[:, None].to(w.dtype)


def make_genotype(space: SearchSpace, cells: dict, multiplier: int | None = None):
    """The genotype of per-cell-type (op, input) pair lists, in the space's own format."""
    if space.name == NB201_SPACE.name:
        return NB201Genotype.from_edges(op for op, _ in cells["normal"])
    concat = list(range(space.num_inputs + space.steps - multiplier, space.num_inputs + space.steps))
    return Genotype.make(cells["normal"], concat, cells["reduce"], concat, space)


def argmax_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor, space: SearchSpace = DARTS_SPACE,
                    multiplier: int = 4) -> Genotype:
    """The DARTS genotype of the given alphas (logits: softmax is taken here)."""
    return make_genotype(space, {"normal": argmax_cell(F.softmax(alphas_normal.detach(), dim=-1), space),
                                 "reduce": argmax_cell(F.softmax(alphas_reduce.detach(), dim=-1), space)}, multiplier)


def supernet_genotype(supernet, weights=None):
    """The argmax genotype of a supernet's op weights (default: `supernet.op_weights()`)."""
    weights = supernet.op_weights() if weights is None else weights
    cells = {cell: argmax_cell(w, supernet.space) for cell, w in zip(supernet.cell_types, weights)}
    return make_genotype(supernet.space, cells, getattr(supernet, "multiplier", None))


class Selector:
    """Interface: `select(supernet, **kw) -> genotype`."""

    name = "base"

    def select(self, supernet, **kw):
        raise NotImplementedError


class ArgmaxSelector(Selector):
    name = "argmax"

    def select(self, supernet, **kw):
        return supernet_genotype(supernet)


# ---------------------------------------------------------------------------------------------
# PT


class PerturbationSelector(Selector):
    """Perturbation-based selection (PT), following the authors' darts-pt code.

    1. Op decisions, in rounds: each round takes the next edge of a random order per cell type
       (normal and reduction together), masks each choosable op of that edge in turn (its weight
       set to 0), measures accuracy, and keeps the op whose removal gives the lowest accuracy
       (the first on a tie); the edge is then fixed to that op (one-hot).
    2. Node decisions (spaces that keep k inputs per node), in rounds over a random node order:
       while a node has more than k incoming edges, drop the edge whose removal gives the highest
       accuracy (the last on a tie).
    Between rounds the supernet is fine-tuned (`tune`), so it adapts to each decision.

    select(supernet, accuracy, weights=None, tune=None, record=None, deadline=None):
      accuracy(weights) -> float: accuracy of the supernet run with these op weights;
      weights() -> the current op weights (default supernet.op_weights()), fixed edges included;
      tune(deadline): fine-tune until the next round (called between rounds, never after the last);
      record(**fields): one call per decision (the events `darts_pt_decision`);
      deadline (time.time()): past it no more tuning is asked for and any edge still open is
        decided by the argmax rule on the alphas (`relaxed_weights`) without measuring, recorded
        as such.
    Tuning is only asked for while the measurements still to come fit before the deadline,
    estimated from the time the measurements so far took."""

    name = "pt"

    def __init__(self, seed: int = 0):
        self.seed = seed

    @staticmethod
    def rounds(space: SearchSpace) -> int:
        """Number of decision rounds: one per edge, plus one per node with too many inputs."""
        nodes = 0 if space.inputs_per_node is None else sum(
            1 for i in range(space.steps) if space.num_inputs + i > space.inputs_per_node)
        return space.num_edges + nodes

    def select(self, supernet, accuracy=None, weights=None, tune=None, record=None, deadline=None, **kw):
        space = supernet.space
        weights = weights or supernet.op_weights
        record = record or (lambda **fields: None)
        gen = torch.Generator().manual_seed(self.seed)
        cells = supernet.cell_types
        choosable = space.choosable_ops()
        self._eval_seconds, self._evals = 0.0, 0
        # rounds: ("op", {cell: edge}) then ("node", {cell: node})
        edge_order = {c: torch.randperm(space.num_edges, generator=gen).tolist() for c in cells}
        plan = [("op", {c: edge_order[c][r] for c in cells}) for r in range(space.num_edges)]
        if space.inputs_per_node is not None:
            big = [space.num_inputs + i for i in range(space.steps)
                   if space.num_inputs + i > space.inputs_per_node]
            node_order = {c: [big[j] for j in torch.randperm(len(big), generator=gen).tolist()] for c in cells}
            plan += [("node", {c: node_order[c][r] for c in cells}) for r in range(len(big))]

        def evals_in(rounds) -> int:
            n = 0
            for kind, targets in rounds:
                for c, t in targets.items():
                    if kind == "op":
                        n += 1 + len(choosable)
                    else:  # k edges down to inputs_per_node: k + (k - 1) + ... removals, plus the base
                        k = sum(1 for src, dst in space.edges if dst == t)
                        n += 1 + sum(range(space.inputs_per_node + 1, k + 1))
            return n

        def measure(ws) -> float:
            t0 = time.time()
            acc = float(accuracy(ws))
            self._eval_seconds += time.time() - t0
            self._evals += 1
            return acc

        for r, (kind, targets) in enumerate(plan):
            for cell, target in targets.items():
                c = cells.index(cell)
                out_of_time = deadline is not None and time.time() > deadline
                if kind == "op":
                    self._decide_op(supernet, weights, c, cell, target, choosable, measure, record, out_of_time)
                else:
                    self._decide_node(supernet, weights, c, cell, target, measure, record, out_of_time)
            if r + 1 < len(plan) and tune is not None:
                if deadline is None:
                    tune(None)
                else:
                    per_eval = self._eval_seconds / max(self._evals, 1)
                    # leave the time the remaining measurements need (10% margin)
                    tune_deadline = deadline - 1.1 * per_eval * evals_in(plan[r + 1:])
                    tune(tune_deadline)
        return self.genotype(supernet)

    def _decide_op(self, supernet, weights, c, cell, edge, choosable, measure, record, out_of_time):
        space = supernet.space
        src, dst = space.edges[edge]
        if out_of_time:
            w = supernet.relaxed_weights()[c].detach()
            best = max(choosable, key=lambda k: (float(w[edge, k]), -k))  # argmax, first on a tie
            accs, base = None, None
        else:
            base = measure(weights())
            accs = {}
            for k in choosable:
                ws = [x.detach().clone() for x in weights()]
                ws[c][edge, k] = 0.0
                accs[k] = measure(tuple(ws))
            best = min(choosable, key=lambda k: accs[k])  # min returns the first of a tie
        row = torch.zeros(len(space.ops))
        row[best] = 1.0
        supernet.fix_edge(cell, edge, row)
        record(decision="op", cell=cell, edge=edge, src=src, dst=dst, op=space.ops[best], measured=not out_of_time,
               base_acc=base, accs=None if accs is None else {space.ops[k]: a for k, a in accs.items()},
               drop=None if accs is None else base - accs[best])

    def _decide_node(self, supernet, weights, c, cell, node, measure, record, out_of_time):
        space = supernet.space
        edges = [e for e, (src, dst) in enumerate(space.edges) if dst == node]
        zeros = torch.zeros(len(space.ops))
        while len(edges) > space.inputs_per_node:
            if out_of_time:
                w = supernet.relaxed_weights()[c].detach()
                # drop the weakest edge by its strongest choosable op (the argmax rule's ranking)
                strength = {e: max(float(w[e, k]) for k in space.choosable_ops()) for e in edges}
                drop = min(reversed(edges), key=lambda e: strength[e])  # the last on a tie, as below
                accs, base = None, None
            else:
                base = measure(weights())
                accs = {}
                for e in edges:
                    ws = [x.detach().clone() for x in weights()]
                    ws[c][e] = 0.0
                    accs[e] = measure(tuple(ws))
                # removal that hurts least; the authors' comparison keeps the last of a tie
                drop = max(reversed(edges), key=lambda e: accs[e])
            supernet.fix_edge(cell, drop, zeros)
            edges.remove(drop)
            record(decision="edge", cell=cell, node=node, dropped_src=space.edges[drop][0], measured=not out_of_time,
                   base_acc=base, accs=None if accs is None else {str(space.edges[e][0]): a for e, a in accs.items()},
                   drop=None if accs is None else base - accs[drop])

    @staticmethod
    def genotype(supernet):
        """The genotype of the decided edges: every edge fixed, a one-hot row for each kept one."""
        space = supernet.space
        cells = {}
        for cell in supernet.cell_types:
            fixed = supernet.fixed_edges(cell)
            missing = [e for e in range(space.num_edges) if e not in fixed]
            if missing:
                raise RuntimeError(f"PT left edges {missing} of the {cell} cell undecided")
            cells[cell] = [(space.ops[int(fixed[e].argmax())], space.edges[e][0])
                           for e in range(space.num_edges) if float(fixed[e].sum()) > 0]
        return make_genotype(space, cells, getattr(supernet, "multiplier", None))


SELECTORS: dict[str, type[Selector]] = {ArgmaxSelector.name: ArgmaxSelector,
                                        PerturbationSelector.name: PerturbationSelector}
