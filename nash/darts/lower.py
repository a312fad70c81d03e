"""Lower a genotype to a `morphisms.Network`: the evaluation network as a graph.

A DARTS `Genotype` lowers to the DARTS evaluation network, an `NB201Genotype` to the
NAS-Bench-201 network (`lower_nb201`). The DARTS network is the reference's NetworkCIFAR, node for node: a stem (3x3 conv to
stem_multiplier * C channels, BN); `layers` cells, the ones at layers//3 and 2*layers//3
reducing (stride-2 edges from the cell inputs, channels doubled); each cell preprocesses its
two inputs to C channels (FactorizedReduce for the older input when the previous cell reduced,
else ReLU-conv1x1-BN), computes every intermediate node as the sum of its two ops, and outputs
the concat of the genotype's concat nodes; then global average pooling and a linear
classifier. Drop path follows every op that is not an identity (active only in training), and
the optional auxiliary head (the reference's AuxiliaryHeadCIFAR) reads the cell at 2/3 depth
and ends in an `aux_output` node.

Being a plain graph of primitive layers, the result trains with `sgdr_train`, saves and loads
with `Network.save/load` without nash.darts, and can be drawn, exported or morphed further.
"""
from __future__ import annotations

import networkx as nx

from morphisms.errors import GraphError
from morphisms.graph import add_layer, new_graph
from morphisms.network import Network

from .genotype import GenotypeError, NB201Genotype, get_genotype
from .ops import OPS, FactorizedReduce, ReLUConvBN
from .supernet import reduction_layers

class _CellBuilder:
    """Adds the nodes of one op or block, naming them `<prefix>_<part>` so the graph reads like
    the reference module tree (c7_n3_a_dw1 = cell 7, node 3, first op, first depthwise conv)."""

    def __init__(self, g, drop_path: float):
        self.g = g
        self.drop_path = drop_path

    def add(self, kind, inputs, name, **attrs) -> str:
        return add_layer(self.g, kind, inputs, name=name, **attrs)

    def relu_conv_bn(self, x, c_out, p, kernel_size=1, stride=1, padding=0):
        x = self.add("relu", [x], f"{p}_relu")
        x = self.add("conv", [x], f"{p}_conv", out_channels=c_out, kernel_size=kernel_size, stride=stride,
                     padding=padding)
        return self.add("bn", [x], f"{p}_bn")

    def factorized_reduce(self, x, c_out, p):
        r = self.add("relu", [x], f"{p}_relu")
        a = self.add("conv", [r], f"{p}_conv1", out_channels=c_out // 2, kernel_size=1, stride=2, padding=0)
        shifted = self.add("crop", [r], f"{p}_crop", top=1, left=1)
        b = self.add("conv", [shifted], f"{p}_conv2", out_channels=c_out // 2, kernel_size=1, stride=2, padding=0)
        return self.add("bn", [self.add("concat", [a, b], f"{p}_cat")], f"{p}_bn")

    def sep_conv(self, x, C, k, stride, p):
        for half, s in ((1, stride), (2, 1)):  # only the first half strides
            x = self.add("relu", [x], f"{p}_relu{half}")
            x = self.add("conv", [x], f"{p}_dw{half}", out_channels=C, kernel_size=k, stride=s, padding=k // 2,
                         groups=C)
            x = self.add("conv", [x], f"{p}_pw{half}", out_channels=C, kernel_size=1, padding=0)
            x = self.add("bn", [x], f"{p}_bn{half}")
        return x

    def dil_conv(self, x, C, k, stride, p):
        x = self.add("relu", [x], f"{p}_relu")
        x = self.add("conv", [x], f"{p}_dw", out_channels=C, kernel_size=k, stride=stride, padding=k - 1,
                     dilation=2, groups=C)
        x = self.add("conv", [x], f"{p}_pw", out_channels=C, kernel_size=1, padding=0)
        return self.add("bn", [x], f"{p}_bn")

    def op(self, name, x, C, stride, p) -> str:
        """The genotype op `name` on x; returns its output node (after drop path if any)."""
        if name == "skip_connect" and stride == 1:
            return self.add("identity", [x], f"{p}_skip")  # the one op drop path spares (reference)
        if name == "skip_connect":
            out = self.factorized_reduce(x, C, f"{p}_fr")
        elif name == "max_pool_3x3":
            out = self.add("maxpool", [x], f"{p}_maxpool", kernel_size=3, stride=stride, padding=1)
        elif name == "avg_pool_3x3":
            out = self.add("avgpool", [x], f"{p}_avgpool", kernel_size=3, stride=stride, padding=1,
                           count_include_pad=False)
        elif name in ("sep_conv_3x3", "sep_conv_5x5"):
            out = self.sep_conv(x, C, int(name[-1]), stride, p)
        elif name in ("dil_conv_3x3", "dil_conv_5x5"):
            out = self.dil_conv(x, C, int(name[-1]), stride, p)
        else:
            raise GenotypeError(f"op {name!r} cannot be lowered (lowerable: skip_connect, max_pool_3x3, "
                                f"avg_pool_3x3, sep_conv_3x3/5x5, dil_conv_3x3/5x5)")
        return self.add("drop_path", [out], f"{p}_drop", drop_prob=self.drop_path)

    def aux_head(self, x, num_classes):
        """AuxiliaryHeadCIFAR: ReLU, 5x5 avg pool stride 3 (8x8 -> 2x2), 1x1 conv 128 + BN + ReLU,
        2x2 conv 768 + BN + ReLU, linear. The reference flattens the 1x1 map; a global pool is
        the same there and also lets larger inputs through."""
        x = self.add("relu", [x], "aux_relu0")
        x = self.add("avgpool", [x], "aux_pool", kernel_size=5, stride=3, padding=0, count_include_pad=False)
        x = self.add("conv", [x], "aux_conv1", out_channels=128, kernel_size=1, padding=0)
        x = self.add("relu", [self.add("bn", [x], "aux_bn1")], "aux_relu1")
        x = self.add("conv", [x], "aux_conv2", out_channels=768, kernel_size=2, padding=0)
        x = self.add("relu", [self.add("bn", [x], "aux_bn2")], "aux_relu2")
        x = self.add("linear", [self.add("global_pool", [x], "aux_gap")], "aux_linear", out_features=num_classes)
        return self.add("aux_output", [x], "aux_output")


def lower(genotype, channels: int = 36, layers: int = 20, num_classes: int = 10, in_channels: int = 3,
          auxiliary: bool = False, drop_path: float = 0.0, input_size=32, stem_multiplier: int = 3) -> Network:
    """The evaluation network of `genotype` (a Genotype, a published name such as "DARTS_V2", or
    genotype text) as a Network taking in_channels x input_size x input_size images.

    drop_path: the initial drop-path probability of every drop_path node (a trainer may ramp it).
    auxiliary: add the auxiliary head at 2/3 depth (needs an 8x8 map there: input_size >= 32).
    Raises GenotypeError for a bad genotype, GraphError for sizes the network cannot take."""
    genotype = get_genotype(genotype)
    if isinstance(genotype, NB201Genotype):
        if auxiliary:
            raise GraphError("a NAS-Bench-201 network has no auxiliary head")
        return lower_nb201(genotype, channels, layers, num_classes, in_channels, input_size)
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if channels < 1 or channels % 2:
        raise GraphError(f"channels must be a positive even number (FactorizedReduce halves them), got {channels}")
    if layers < 1:
        raise GraphError(f"layers must be >= 1, got {layers}")
    if not 0.0 <= drop_path < 1.0:
        raise GraphError(f"drop_path must be in [0, 1), got {drop_path}")
    g = new_graph((in_channels, h, w))
    b = _CellBuilder(g, drop_path)

    c_curr = stem_multiplier * channels
    stem = b.add("bn", [b.add("conv", ["input"], "stem_conv", out_channels=c_curr, kernel_size=3, padding=1)],
                 "stem_bn")
    s0 = s1 = stem
    c_curr = channels  # input widths of every node come from shape inference, not bookkeeping
    reductions = reduction_layers(layers)
    reduction_prev, aux_from = False, None
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
            if h % 2 or w % 2:
                raise GraphError(f"cell {i} reduces a {h}x{w} map; FactorizedReduce needs even sides "
                                 f"(input_size must be divisible by 4)")
        pairs, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                    genotype.normal_concat)
        p = f"c{i}"
        states = [b.factorized_reduce(s0, c_curr, f"{p}_pre0") if reduction_prev
                  else b.relu_conv_bn(s0, c_curr, f"{p}_pre0"),
                  b.relu_conv_bn(s1, c_curr, f"{p}_pre1")]
        for k in range(len(pairs) // 2):
            node = len(states)
            outs = []
            for which, (op, idx) in zip("ab", pairs[2 * k:2 * k + 2]):
                stride = 2 if reduction and idx < 2 else 1
                outs.append(b.op(op, states[idx], c_curr, stride, f"{p}_n{node}_{which}"))
            states.append(b.add("add", outs, f"{p}_n{node}", weighted=False))
        picked = [states[j] for j in concat]
        out = (b.add("concat", picked, f"{p}_out") if len(picked) > 1
               else b.add("identity", picked, f"{p}_out"))
        if reduction:
            h, w = (h + 1) // 2, (w + 1) // 2
        s0, s1 = s1, out
        reduction_prev = reduction
        if i == 2 * layers // 3:
            aux_from, aux_size = out, (h, w)
    if auxiliary:
        if min(aux_size) < 8:
            raise GraphError(f"the auxiliary head needs at least an 8x8 map at cell {2 * layers // 3}, "
                             f"got {aux_size[0]}x{aux_size[1]} (use 32x32 inputs, or no auxiliary head)")
        b.aux_head(aux_from, num_classes)
    x = b.add("global_pool", [s1], "gap")
    b.add("output", [b.add("linear", [x], "classifier", out_features=num_classes)], "output")
    # A genotype whose concat leaves an intermediate node unread has dead ops. The reference
    # computes them and counts their parameters; they never affect an output, so they are
    # dropped here (a graph network has no dangling nodes). DARTS genotypes have none.
    _drop_dead_nodes(g)
    return Network(g)


def _drop_dead_nodes(g) -> None:
    outputs = [n for n, k in g.nodes(data="kind") if k in ("output", "aux_output")]
    live = set(outputs).union(*(nx.ancestors(g, o) for o in outputs))
    g.remove_nodes_from([n for n in list(g) if n not in live])


def lower_nb201(genotype, channels: int = 16, layers: int = 5, num_classes: int = 10, in_channels: int = 3,
                input_size=32) -> Network:
    """The NAS-Bench-201 network of a cell (NB201Genotype or its arch string), the benchmark's
    TinyNetwork node for node: stem 3x3 conv `channels` + BN; three stages of `layers` cells at
    channels, 2x, 4x, a ResNet basic block of stride 2 between stages; BN, ReLU, global average
    pooling, linear. No drop path and no auxiliary head: the benchmark trains without them.

    In a cell, 'none' edges are left out, and so are ops that map a zero node to zeros (skip,
    average pooling); a zero node that a conv reads, or that is the cell's output, becomes a
    `zero` node, because BN after a conv of zeros still adds its shift (exact, as the benchmark
    computes it). A node that no path to the output reads (node 2 when node 3 has 'none' from
    it, say) is dropped, as in `lower`: the benchmark computes it and counts its parameters, but
    it never affects the output."""
    genotype = get_genotype(genotype)
    if not isinstance(genotype, NB201Genotype):
        raise GenotypeError(f"lower_nb201 needs a NAS-Bench-201 genotype (|op~0|+...), got {type(genotype).__name__}")
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if channels < 1:
        raise GraphError(f"channels must be >= 1, got {channels}")
    if layers < 1:
        raise GraphError(f"layers (cells per stage) must be >= 1, got {layers}")
    if h % 4 or w % 4:
        raise GraphError(f"a NAS-Bench-201 network halves a {h}x{w} input twice; its sides must be divisible by 4")
    g = new_graph((in_channels, h, w))
    b = _CellBuilder(g, 0.0)
    x = b.add("bn", [b.add("conv", ["input"], "stem_conv", out_channels=channels, kernel_size=3, padding=1)],
              "stem_bn")
    c, k = channels, 0
    for stage in range(3):
        if stage:
            x = _nb201_resblock(b, x, 2 * c, f"r{stage}")
            c *= 2
        for _ in range(layers):
            x = _nb201_cell(b, x, genotype, c, f"c{k}")
            k += 1
    x = b.add("relu", [b.add("bn", [x], "last_bn")], "last_relu")
    x = b.add("global_pool", [x], "gap")
    b.add("output", [b.add("linear", [x], "classifier", out_features=num_classes)], "output")
    _drop_dead_nodes(g)
    return Network(g)


def _nb201_resblock(b: _CellBuilder, x: str, c_out: int, p: str) -> str:
    """ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, plus avgpool 2x2 (stride 2) -> conv 1x1."""
    a = b.relu_conv_bn(x, c_out, f"{p}_a", kernel_size=3, stride=2, padding=1)
    a = b.relu_conv_bn(a, c_out, f"{p}_b", kernel_size=3, stride=1, padding=1)
    r = b.add("avgpool", [x], f"{p}_down_pool", kernel_size=2, stride=2, padding=0)
    r = b.add("conv", [r], f"{p}_down_conv", out_channels=c_out, kernel_size=1, padding=0)
    return b.add("add", [r, a], f"{p}_add", weighted=False)


def _nb201_cell(b: _CellBuilder, x: str, genotype: NB201Genotype, C: int, p: str) -> str:
    nodes: list = [x]  # graph node per cell node; None: a node that is all zeros
    zero = []

    def zeros() -> str:
        if not zero:
            zero.append(b.add("zero", [x], f"{p}_zero"))
        return zero[0]

    for j, edges in enumerate(genotype.nodes, start=1):
        outs = []
        for op, i in edges:
            src, q = nodes[i], f"{p}_n{j}_{i}"
            if op == "none" or (src is None and op in ("skip_connect", "avg_pool_3x3")):
                continue  # contributes zeros
            src = zeros() if src is None else src
            if op == "skip_connect":
                outs.append(b.add("identity", [src], f"{q}_skip"))
            elif op == "avg_pool_3x3":
                outs.append(b.add("avgpool", [src], f"{q}_avgpool", kernel_size=3, stride=1, padding=1,
                                  count_include_pad=False))
            else:  # nor_conv_1x1, nor_conv_3x3
                size = int(op[-1])
                outs.append(b.relu_conv_bn(src, C, q, kernel_size=size, padding=size // 2))
        nodes.append(None if not outs else outs[0] if len(outs) == 1
                     else b.add("add", outs, f"{p}_n{j}", weighted=False))
    return zeros() if nodes[-1] is None else nodes[-1]


def reference_params(genotype, channels: int = 36, layers: int = 20, num_classes: int = 10,
                     in_channels: int = 3, stem_multiplier: int = 3) -> int:
    """The parameter count the reference code reports for this network (auxiliary head left out,
    as its count_parameters_in_MB does). It equals `lower(...).num_params()` unless some op of
    the genotype is dead (an input or node that nothing reads): the reference still builds and
    counts those, `lower` drops them. Counted by building the ops.py modules (affine), not the
    graph, so it is a second, independent description of the same network."""
    genotype = get_genotype(genotype)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    c_curr = stem_multiplier * channels
    total = in_channels * c_curr * 9 + 2 * c_curr  # stem conv + BN
    c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
    reductions, reduction_prev = reduction_layers(layers), False
    for i in range(layers):
        reduction = i in reductions
        c_curr *= 2 if reduction else 1
        pairs, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                    genotype.normal_concat)
        total += count(FactorizedReduce(c_prev_prev, c_curr) if reduction_prev
                       else ReLUConvBN(c_prev_prev, c_curr, 1, 1, 0))
        total += count(ReLUConvBN(c_prev, c_curr, 1, 1, 0))
        total += sum(count(OPS[op](c_curr, 2 if reduction and idx < 2 else 1, True)) for op, idx in pairs)
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, len(concat) * c_curr
    return total + c_prev * num_classes + num_classes
