"""Shrinking moves (the approximate family): they shrink, keep shapes, stay runnable, report how far
the function moved, are exact where they should be, and never mix with the exact morphisms."""
import json
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from morphisms import (MORPHISMS, SHRINK_KINDS, SHRINKS, MorphismError, Move, Network, Shrink,
                       add_skip, approximation_error, deepen, from_module, moves, prune_filters,
                       random_morphisms, random_shrink, remove_block, separable, shrinks, start_net)
from morphisms.edit import Edit
from morphisms.graph import add_layer, new_graph
from morphisms.prune import plan_cut

from conftest import random_start, scramble

# float32 tolerance on outputs, relative to the output's largest magnitude, as in test_morphisms:
# fp32's epsilon is 1.2e-7 and a sum over a few hundred terms in another order moves the last
# bits of each; the exact cases here reach ~1e-7, a wrong cut or fit is off by 1e-2 and more
RTOL32 = 1e-5
# float64, where the claim is "equal up to rounding": epsilon 2.2e-16, the same margin
RTOL64 = 1e-12


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def state_copy(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- networks to shrink


class TinyResNet(nn.Module):
    """A stem, one ResNet basic block and a depthwise conv, as a user writes them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(x + y)
        x = F.relu(self.dw(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def imported_net():
    torch.manual_seed(0)
    return from_module(scramble(TinyResNet()).eval(), torch.randn(2, 3, 10, 12))


def mixed_net():
    """A conv with a bias feeding a depthwise conv, a concat with a grouped conv's output, a
    flatten head and an auxiliary head: the places a cut has to travel through or stop at."""
    g = new_graph((3, 8, 10))
    a = add_layer(g, "conv", ["input"], out_channels=8, kernel_size=3, bias=True)
    r = add_layer(g, "relu", [add_layer(g, "bn", [a])])
    d = add_layer(g, "conv", [r], out_channels=8, kernel_size=3, groups=8)
    r2 = add_layer(g, "relu", [add_layer(g, "bn", [d])])
    grouped = add_layer(g, "relu", [add_layer(g, "conv", ["input"], out_channels=6, kernel_size=3, groups=3)])
    cat = add_layer(g, "concat", [r2, grouped])
    b = add_layer(g, "relu", [add_layer(g, "bn", [add_layer(g, "conv", [cat], out_channels=14, kernel_size=3)])])
    flat = add_layer(g, "flatten", [add_layer(g, "maxpool", [b], kernel_size=4)])
    add_layer(g, "output", [add_layer(g, "linear", [flat], out_features=4)], name="output")
    add_layer(g, "aux_output", [add_layer(g, "linear", [add_layer(g, "global_pool", [r])], out_features=4)],
              name="aux")
    torch.manual_seed(1)
    return scramble(Network(g)).eval()


def morphed_net():
    """A start net after exact morphisms: skips (add and concat), deepened and widened layers."""
    torch.manual_seed(2)
    net = scramble(start_net(3, 6, widths=(4, 6, 8), input_size=12))
    child, applied = random_morphisms(net, 10, rng=5)
    assert {"add_skip", "deepen", "widen"} <= {m.kind for m in applied}
    assert any(child.graph.nodes[n]["kind"] == "concat" for n in child.graph)
    return scramble(child, 3).eval()


NETS = {
    "start": lambda: scramble(start_net(3, 10, widths=(4, 8, 8), input_size=16)).eval(),
    "morphed": morphed_net,
    "imported": imported_net,
    "mixed": mixed_net,
}


def batch(net, n=4, seed=0, dtype=torch.float32):
    return torch.randn(n, *net.input_shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ---------------------------------------------------------------- every move, on every network


@pytest.mark.parametrize("name", sorted(NETS))
def test_each_move_shrinks_keeps_shapes_runs_and_reports_its_error(name):
    parent = NETS[name]()
    x = batch(parent)
    before, graph_before = state_copy(parent), parent.to_json()
    y = parent(x)
    listed = shrinks(parent)
    assert {m.kind for m in listed} == set(SHRINK_KINDS), [str(m) for m in listed]
    for move in listed:
        child, record = move.apply(parent)
        assert record == move and record.did, str(move)
        # the parent is untouched, and the record replays to the same child (before a train-mode
        # forward updates the child's BN statistics)
        assert same_state(parent.state_dict(), before) and parent.to_json() == graph_before
        again, _ = Shrink.from_json(json.loads(json.dumps(record.to_json()))).apply(parent)
        assert again.to_json() == child.to_json() and same_state(again.state_dict(), child.state_dict())
        # shapes: the same input and output
        assert child.input_shape == parent.input_shape
        assert child(x).shape == y.shape
        # really smaller
        assert child.num_params() < parent.num_params(), str(move)
        assert child.macs() <= parent.macs(), str(move)
        # how far the function moved, measured in eval mode, leaving both modes as they were
        child.train()
        err = approximation_error(parent, child, x)
        assert child.training and not parent.training
        assert set(err) == {"max_abs", "relative"} and 0 <= err["max_abs"] < float("inf")
        assert err["relative"] == pytest.approx(err["max_abs"] / y.abs().max().item())
        # runnable: forward and backward in train mode, every gradient finite
        loss = child(x).square().mean()
        loss.backward()
        grads = [p.grad for p in child.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads), str(move)


@pytest.mark.parametrize("kind", SHRINK_KINDS)
def test_a_shrunk_network_saves_and_loads(kind, tmp_path):
    parent = imported_net()
    child, record = random_shrink(parent, rng=0, kinds=(kind,))
    assert record.kind == kind
    child.eval()
    child.save(tmp_path / "child")
    again = Network.load(tmp_path / "child").eval()
    x = batch(parent)
    assert again.to_json() == child.to_json()
    assert torch.equal(again(x), child(x))


# ---------------------------------------------------------------- where an approximate move is exact


def silence(net, node, channels):
    """Zero `channels` of `node`'s class wherever a cut of them would reach: the filters and biases
    that write them, the BN entries (mean and shift 0, so BN maps 0 to 0). They then carry zeros
    everywhere and contribute nothing, so pruning them must keep the function."""
    cut, _ = plan_cut(Edit.view(net, "silence"), node, channels)
    with torch.no_grad():
        for n, idx in cut.items():
            m = net.layers[n]
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight[idx] = 0.0
                if m.bias is not None:
                    m.bias[idx] = 0.0
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean[idx] = 0.0
                m.bias[idx] = 0.0
    return net


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 12))
def test_pruning_channels_that_carry_nothing_keeps_the_function(seed, n):
    rng = random.Random(seed)
    parent, shape = random_start(rng)
    parent, _ = random_morphisms(parent, n, rng=rng)
    parent = scramble(parent, seed).eval()
    options = shrinks(parent, kinds=("prune_filters",))
    if not options:
        return
    move = rng.choice(options)
    node, k = dict(move.args)["node"], dict(move.args)["k"]
    channels = sorted(rng.sample(range(parent.shapes[node][0]), k))
    silence(parent, node, channels)
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(seed))
    child, record = prune_filters(parent, node, k)
    assert record.did["channels"] == channels  # zero filters have the smallest L1 norm
    assert child.shapes[node][0] == parent.shapes[node][0] - k
    assert rel_err(child(x), parent(x)) <= RTOL32, str(move)


def rank1_kernels(conv: nn.Conv2d, seed: int):
    """Give `conv` kernels W[o, c] = p[o, c] * d[c]: rank 1 for each input channel."""
    g = torch.Generator().manual_seed(seed)
    o, c, kh, kw = conv.weight.shape
    p = torch.randn(o, c, 1, 1, generator=g, dtype=torch.float64)
    d = torch.randn(1, c, kh, kw, generator=g, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(p * d)


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, RTOL32), (torch.float64, RTOL64)])
@pytest.mark.parametrize("name", ["start", "imported", "mixed"])
def test_separable_replacement_of_rank1_kernels_keeps_the_function(name, dtype, rtol):
    parent = NETS[name]().to(dtype)
    x = batch(parent, dtype=dtype)
    for i, move in enumerate(shrinks(parent, kinds=("separable",))):
        node = dict(move.args)["node"]
        rank1_kernels(parent.layers[node], i)
        child, record = separable(parent, node)
        assert record.did["kernel_residual"] <= 10 * torch.finfo(dtype).eps
        dw, pw = child.layers[record.did["depthwise"]], child.layers[record.did["pointwise"]]
        old = parent.layers[node]
        assert (dw.stride, dw.padding, dw.dilation, dw.groups) == (old.stride, old.padding, old.dilation,
                                                                   old.in_channels)
        assert (pw.bias is None) == (old.bias is None) and pw.kernel_size == (1, 1)
        assert next(child.parameters()).dtype == dtype
        assert rel_err(child(x), parent(x)) <= rtol, str(move)


def test_separable_fit_is_the_best_rank1_fit():
    """The fitted kernel's error is the norm of the discarded singular values (Eckart-Young)."""
    parent = NETS["start"]()
    child, record = separable(parent, "conv5")
    w = parent.layers["conv5"].weight.detach().to(torch.float64)
    fitted = (child.layers["conv5_pointwise"].weight.to(torch.float64)
              * child.layers["conv5_depthwise"].weight.to(torch.float64).transpose(0, 1))
    s = torch.linalg.svdvals(w.transpose(0, 1).flatten(2))
    best = s[:, 1:].square().sum().sqrt() / w.norm()
    assert ((w - fitted).norm() / w.norm()).item() == pytest.approx(best.item(), rel=1e-5)
    assert record.did["kernel_residual"] == pytest.approx(best.item(), rel=1e-9)


@pytest.mark.parametrize("name", ["start", "morphed", "imported"])
def test_removing_a_block_that_deepen_inserted_restores_the_network(name):
    net = NETS[name]()
    x = batch(net)
    for after in [m.args[0][1] for m in moves(net, kinds=("deepen",))]:
        deeper = deepen(net, after)
        conv = (set(deeper.graph) - set(net.graph)) & {n for n in deeper.graph if deeper.graph.nodes[n]["kind"] == "conv"}
        child, record = remove_block(deeper, conv.pop())
        assert len(record.did["removed"]) == 3 and record.did["input"] == after
        assert child.to_json() == net.to_json()
        assert rel_err(child(x), deeper(x)) <= RTOL32
        assert approximation_error(deeper, child, x)["relative"] <= RTOL32


# ---------------------------------------------------------------- random draws, apart from the exact ones


def test_shrinking_kinds_are_apart_from_the_exact_morphisms():
    assert tuple(SHRINKS) == SHRINK_KINDS and not set(SHRINKS) & set(MORPHISMS)
    net = NETS["morphed"]()
    for kind in SHRINK_KINDS:
        with pytest.raises(MorphismError, match="unknown morphism"):
            Move.of(kind, node="conv1")
        with pytest.raises(MorphismError, match="unknown morphism"):
            random_morphisms(net, 1, rng=0, kinds=(kind,))
    for kind in MORPHISMS:
        with pytest.raises(MorphismError, match="unknown shrinking move"):
            Shrink.of(kind, node="conv1")
        with pytest.raises(MorphismError, match="unknown shrinking move"):
            random_shrink(net, 0, kinds=(kind,))
    assert {m.kind for m in moves(net)} <= set(MORPHISMS)
    for seed in range(5):
        _, applied = random_morphisms(net, 6, rng=seed)
        assert {m.kind for m in applied} <= set(MORPHISMS)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 12))
def test_random_shrink_after_random_morphisms_runs_and_is_smaller(seed, n):
    rng = random.Random(seed)
    parent, shape = random_start(rng)
    parent, _ = random_morphisms(parent, n, rng=rng)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed))
    state = torch.random.get_rng_state()
    try:
        child, record = random_shrink(parent, rng)
    except MorphismError as e:  # a net of 1-channel 1x1 maps can have nothing left to take
        assert "no shrinking move" in str(e) and not shrinks(parent)
        return
    assert torch.equal(torch.random.get_rng_state(), state)
    assert record.kind in SHRINK_KINDS and json.dumps(record.to_json())
    assert child.num_params() < parent.num_params() and child.macs() <= parent.macs()
    child.train()
    child(x).sum().backward()
    assert child.eval()(x).shape == parent(x).shape
    assert approximation_error(parent, child, x)["max_abs"] >= 0


def test_random_shrink_is_a_pure_function_of_its_seed():
    net = NETS["morphed"]()
    a, ra = random_shrink(net, rng=7)
    b, rb = random_shrink(net, rng=random.Random(7))
    assert ra == rb and ra.did == rb.did
    assert a.to_json() == b.to_json() and same_state(a.state_dict(), b.state_dict())
    drawn = {random_shrink(net, rng=s)[1].kind for s in range(30)}
    assert drawn == set(SHRINK_KINDS)  # uniform over the kinds: each shows up


# ---------------------------------------------------------------- one clear error each


def residual_net():
    """A deepened block whose output is added back to its own input (an add skip around it)."""
    net = NETS["start"]()
    deeper = deepen(net, "relu7")
    new = sorted(set(deeper.graph) - set(net.graph))
    relu = next(n for n in new if deeper.graph.nodes[n]["kind"] == "relu")
    conv = next(n for n in new if deeper.graph.nodes[n]["kind"] == "conv")
    return add_skip(deeper, "relu7", relu, mode="add"), conv


@pytest.mark.parametrize("call, words", [
    (lambda n: remove_block(n, "nope"), "no conv named 'nope'"),
    (lambda n: remove_block(n, "bn2"), "a block starts at a conv"),
    (lambda n: remove_block(n, "conv1"), "only a block that keeps shapes"),
    (lambda n: prune_filters(n, "relu3"), "only conv and linear"),
    (lambda n: prune_filters(n, "conv1", 0), "k must be an int in 1..3"),
    (lambda n: prune_filters(n, "conv1", 4), "at least one of its 4 channels stays"),
    (lambda n: prune_filters(n, "linear13", 1), "whose size is fixed"),
    (lambda n: separable(n, "bn2"), "not a conv"),
    (lambda n: Shrink.of("shrink_everything"), "unknown shrinking move"),
    (lambda n: shrinks(n, kinds=("prune",)), "unknown shrinking move"),
    (lambda n: shrinks(n, prune_fraction=1.0), "prune_fraction must be in"),
])
def test_impossible_shrinks_raise_one_clear_error(call, words):
    with pytest.raises(MorphismError, match=words.replace("(", r"\(").replace(".", r"\.")):
        call(NETS["start"]())


def test_remove_block_refuses_to_merge_a_tensor_with_itself():
    net, conv = residual_net()
    with pytest.raises(MorphismError, match="merge a tensor with itself"):
        remove_block(net, conv)
    assert all(dict(m.args)["conv"] != conv for m in shrinks(net, kinds=("remove_block",)))


def test_separable_refuses_what_it_cannot_factorise_or_would_not_shrink():
    mixed = mixed_net()
    conv1x1 = {n for n in mixed.graph if mixed.graph.nodes[n]["kind"] == "conv" and mixed.graph.nodes[n]["groups"] != 1}
    for n in conv1x1:
        with pytest.raises(MorphismError, match="grouped conv"):
            separable(mixed, n)
    g = new_graph((4, 6, 6))
    one = add_layer(g, "conv", ["input"], out_channels=1, kernel_size=3)
    point = add_layer(g, "conv", [one], out_channels=3, kernel_size=1)
    add_layer(g, "output", [add_layer(g, "linear", [add_layer(g, "global_pool", [point])], out_features=2)],
              name="output")
    net = Network(g)
    with pytest.raises(MorphismError, match="would not be smaller"):
        separable(net, one)
    with pytest.raises(MorphismError, match="1x1 conv"):
        separable(net, point)
    with pytest.raises(MorphismError, match="no shrinking move"):
        random_shrink(net, 0, kinds=("separable",))


def test_pruning_refuses_grouped_convs_and_cuts_through_depthwise_concat_and_flatten():
    net = mixed_net()
    grouped = next(n for n in net.graph if net.graph.nodes[n].get("groups", 1) == 3)
    with pytest.raises(MorphismError, match="grouped conv"):
        prune_filters(net, grouped, 1)
    depthwise = next(n for n in net.graph if net.graph.nodes[n].get("groups", 1) == 8)
    with pytest.raises(MorphismError, match="depthwise"):
        prune_filters(net, depthwise, 1)
    first = "conv1"
    child, record = prune_filters(net, first, 3)
    assert child.graph.nodes[depthwise]["groups"] == 5 and child.shapes[depthwise][0] == 5
    cat = next(n for n in net.graph if net.graph.nodes[n]["kind"] == "concat")
    assert child.shapes[cat][0] == net.shapes[cat][0] - 3
    flat = next(n for n in net.graph if net.graph.nodes[n]["kind"] == "flatten")
    assert child.shapes[flat] == net.shapes[flat]  # the concat's reader is a conv: the cut stops there
    assert len(record.did["channels"]) == 3 and depthwise in record.did["cut"]
    last = next(n for n in net.graph if net.graph.nodes[n]["kind"] == "conv" and net.graph.has_edge(cat, n))
    child, record = prune_filters(net, last, 2)
    _, h, w = net.shapes[next(iter(net.graph.predecessors(flat)))]
    assert child.shapes[flat][0] == net.shapes[flat][0] - 2 * h * w  # a block of features per channel
    assert record.did["readers"] == [next(iter(net.graph.successors(flat)))]
