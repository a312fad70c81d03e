"""Function preservation and the other promises of the morphism engine, as properties."""
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphisms import (GraphError, MorphismError, Move, Network, add_skip, deepen, insert_bn, moves,
                       random_morphisms, start_net, widen)
from morphisms.graph import add_layer, new_graph

from conftest import random_start

# float32 tolerance on outputs, relative to the output's largest magnitude; what we reach is
# far below it (measured: 0 to ~1e-7), the margin absorbs BLAS reduction-order differences.
RTOL32 = 1e-5
RTOL64 = 1e-12


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def state_copy(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def check_same_state(net, saved):
    now = net.state_dict()
    assert now.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(now[k], v), f"parent tensor {k} changed"


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 20))
def test_random_morphisms_preserve_function(seed, n, tmp_path_factory):
    rng = random.Random(seed)
    parent, shape = random_start(rng)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(seed))
    before = state_copy(parent)
    y = parent(x)
    child, applied = random_morphisms(parent, n, rng=rng)
    child.eval()
    assert len(applied) <= n
    assert rel_err(child(x), y) <= RTOL32, [str(m) for m in applied]
    check_same_state(parent, before)  # the parent is untouched, bit for bit
    # every child validates (Network() validates) and has no map below 1x1
    assert all(min(s[1:]) >= 1 for s in child.shapes.values() if len(s) == 3)
    # save/load round-trips graph and weights exactly
    path = tmp_path_factory.mktemp("net") / "child"
    child.save(path)
    again = Network.load(path).eval()
    assert again.to_json() == child.to_json()
    assert torch.equal(again(x), child(x))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_preservation_is_exact_in_float64(seed):
    rng = random.Random(seed)
    parent, shape = random_start(rng)
    parent = parent.double()
    x = torch.randn(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    child, applied = random_morphisms(parent, 15, rng=rng)
    assert next(child.parameters()).dtype == torch.float64
    assert rel_err(child.eval()(x), parent(x)) <= RTOL64, [str(m) for m in applied]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_calibrated_children_match_in_train_mode(seed):
    rng = random.Random(seed)
    parent, shape = random_start(rng)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(seed))
    child, applied = random_morphisms(parent, 12, rng=rng, calibrate=x)
    assert rel_err(child.eval()(x), parent.eval()(x)) <= RTOL32
    # (eval first: a train-mode call moves the running statistics)
    parent.train(), child.train()
    y_parent, y_child = parent(x), child(x)
    # train-mode BN divides by the batch std, so small variances amplify rounding a little
    assert rel_err(y_child, y_parent) <= 1e-4, [str(m) for m in applied]


def test_same_seed_same_child_weights_included():
    torch.manual_seed(0)
    parent = start_net(3, 10, widths=(4, 8, 8), input_size=16).eval()
    a, ma = random_morphisms(parent, 8, rng=123)
    torch.randn(100)  # moves torch's global generator on: the child must not depend on it
    before = torch.get_rng_state()
    b, mb = random_morphisms(parent, 8, rng=123)
    assert torch.equal(torch.get_rng_state(), before)  # and drawing a child leaves it as it was
    assert ma == mb and a.to_json() == b.to_json()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert any(m.kind in ("widen", "add_skip") for m in ma)  # moves that draw new weights were made
    c, mc = random_morphisms(parent, 8, rng=124)
    sc = c.state_dict()
    assert mc != ma or any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_the_seed_sets_the_new_weights(tiny_net):
    """Only the new filters depend on the seed; the inherited ones are the parent's."""
    a, b, c = (widen(tiny_net, "conv5", 2.0, seed=s) for s in (1, 1, 2))
    wa, wb, wc = (n.layers["conv5"].weight for n in (a, b, c))
    assert torch.equal(wa, wb)
    assert torch.equal(wa[:8], wc[:8]) and torch.equal(wa[:8], tiny_net.layers["conv5"].weight)
    assert not torch.equal(wa[8:], wc[8:])
    one = add_skip(tiny_net, "relu3", "relu11", "add", seed=1)  # 4 -> 8 channels: a 1x1 conv
    two = add_skip(tiny_net, "relu3", "relu11", "add", seed=2)
    conv = next(n for n in one.graph if n not in tiny_net.graph and one.graph.nodes[n]["kind"] == "conv")
    assert not torch.equal(one.layers[conv].weight, two.layers[conv].weight)


@pytest.mark.parametrize("call", [
    lambda n, x: deepen(n, "relu3", calibrate=x, seed=3),
    lambda n, x: widen(n, "conv1", 3, seed=3),
    lambda n, x: add_skip(n, "relu3", "relu11", "add", seed=3),
    lambda n, x: add_skip(n, "maxpool4", "relu11", "concat", seed=3),
    lambda n, x: insert_bn(n, "conv5", calibrate=x, seed=3),
    lambda n, x: random_morphisms(n, 10, rng=3, calibrate=x)[0],
])
def test_morphisms_leave_the_global_generator_alone(tiny_net, call):
    x = torch.randn(4, 3, 16, 16)
    before = torch.get_rng_state()
    call(tiny_net, x)
    assert torch.equal(torch.get_rng_state(), before)


def test_moves_round_trip_as_json(tiny_net):
    for m in moves(tiny_net):
        assert Move.from_json(m.to_json()) == m


def test_each_morphism_alone(tiny_net):
    x = torch.randn(5, 3, 16, 16)
    y = tiny_net(x)
    children = [
        deepen(tiny_net, "relu3"), deepen(tiny_net, "maxpool4", kernel_size=5), widen(tiny_net, "conv5", 1.5),
        widen(tiny_net, "conv1", 3), add_skip(tiny_net, "relu3", "relu11", "add"),
        add_skip(tiny_net, "maxpool4", "relu11", "concat"), insert_bn(tiny_net, "conv5"),
    ]
    for child in children:
        assert rel_err(child.eval()(x), y) <= RTOL32
    assert children[2].shapes["conv5"][0] == 12 and children[3].shapes["conv1"][0] == 12
    assert children[5].num_params() > tiny_net.num_params()


def test_widen_spreads_through_adds_and_concats(tiny_net):
    x = torch.randn(5, 3, 16, 16)
    y = tiny_net(x)
    net = add_skip(tiny_net, "relu7", "relu11", "add")  # relu7 (8ch, pooled) + relu11 (8ch): tied
    child = widen(net, "conv9", 2.0)
    assert rel_err(child.eval()(x), y) <= RTOL32
    # conv5 feeds the add through relu7, so it had to grow with conv9
    assert child.shapes["conv5"][0] == 16 and child.shapes["conv9"][0] == 16
    # through a concat: relu7's new channels land in the middle of the concat's output
    net = add_skip(tiny_net, "relu3", "relu7", "concat")
    child = widen(net, "conv5", 2.0)
    assert rel_err(child.eval()(x), y) <= RTOL32
    assert child.shapes["conv5"][0] == 16


@pytest.mark.parametrize("call, words", [
    (lambda n: deepen(n, "nope"), ["nope"]),
    (lambda n: deepen(n, "conv1"), ["conv1", "negative"]),
    (lambda n: widen(n, "conv1", 1.0), ["conv1", "factor"]),
    (lambda n: widen(n, "conv1", 0.5), ["conv1", "factor"]),
    (lambda n: widen(n, "relu3"), ["relu3", "only conv and linear"]),
    (lambda n: widen(n, "linear13"), ["linear13", "output"]),
    (lambda n: add_skip(n, "relu11", "relu3"), ["cycle"]),
    (lambda n: add_skip(n, "relu3", "relu3"), ["same node"]),
    (lambda n: add_skip(n, "relu3", "global_pool12"), ["feature maps"]),
    (lambda n: add_skip(n, "relu3", "relu7", "mul"), ["mode"]),
    (lambda n: insert_bn(n, "output"), ["output"]),
    (lambda n: Move.of("shrink", node="conv1"), ["unknown morphism", "shrink"]),
])
def test_impossible_morphisms_raise_one_clear_error(tiny_net, call, words):
    with pytest.raises(MorphismError) as e:
        call(tiny_net)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_every_listed_move_applies_on_tiny_inputs():
    """moves() offers only what applies: on maps down to 1x1 every listed move succeeds and keeps
    the function (a move that pooled a map below 1x1 would raise here)."""
    for size in (1, 2, 3):
        torch.manual_seed(size)
        net = start_net(1, 10, widths=(4, 4, 4), input_size=size).eval()
        net, _ = random_morphisms(net, 4, rng=size)  # skips and merges, so that more kinds of move exist
        x = torch.randn(3, 1, size, size)
        y = net.eval()(x)
        options = moves(net)
        assert {m.kind for m in options} == {"deepen", "widen", "add_skip", "insert_bn"}
        for m in options:
            child = m.apply(net)
            assert rel_err(child.eval()(x), y) <= RTOL32, str(m)


def _graph(*layers):
    g = new_graph((1, 4, 4))
    x = "input"
    for kind, attrs in layers:
        x = add_layer(g, kind, [x], **attrs)
    return g, x


@pytest.mark.parametrize("make, words", [
    (lambda: _graph(("conv", dict(out_channels=2)), ("output", {})), None),
    (lambda: _graph(("conv", dict(out_channels=2)), ("linear", dict(out_features=3)), ("output", {})), ["vector"]),
    (lambda: _graph(("maxpool", dict(kernel_size=8)), ("output", {})), ["below 1x1"]),
    (lambda: _graph(("conv", dict(out_channels=2))), ["exactly one 'output'"]),
])
def test_validator(make, words):
    g, last = make()
    if words is None:
        # a valid graph: the shapes the validator infers are the ones a forward pass produces
        net = Network(g).eval()
        values = net.activations(torch.randn(2, *net.input_shape), list(net.shapes))
        assert {n: tuple(v.shape[1:]) for n, v in values.items()} == net.shapes
        return
    with pytest.raises(GraphError) as e:
        Network(g)
    for w in words:
        assert w in str(e.value)


def test_validator_rejects_cycles_dangling_nodes_and_unknown_kinds():
    g, last = _graph(("conv", dict(out_channels=1)), ("relu", {}), ("output", {}))
    g2 = g.copy()
    g2.add_edge("relu2", "conv1", slot=1)
    with pytest.raises(GraphError, match="cycle"):
        Network(g2)
    g3 = g.copy()
    add_layer(g3, "relu", ["conv1"], name="lonely")
    with pytest.raises(GraphError, match="dangling.*lonely"):
        Network(g3)
    g4 = g.copy()
    g4.nodes["relu2"]["kind"] = "softplus"
    with pytest.raises(GraphError, match="unknown layer kind 'softplus'"):
        Network(g4)
    g5, _ = _graph(("conv", dict(out_channels=2)))
    add_layer(g5, "add", ["conv1", "input"], name="bad_add")
    add_layer(g5, "output", ["bad_add"], name="output")
    with pytest.raises(GraphError, match="disagree in shape"):
        Network(g5)


def test_load_rejects_bad_files(tmp_path, tiny_net):
    path = tmp_path / "net"
    tiny_net.save(path)
    (path / "weights.pt").write_bytes(b"not a zip")
    with pytest.raises(GraphError, match="cannot read weights"):
        Network.load(path)
    tiny_net.save(path)
    (path / "graph.json").write_text('{"format": "nash-network", "version": 1, "nodes": [], "edges": []}')
    with pytest.raises(GraphError, match="graph.json"):
        Network.load(path)
    with pytest.raises(GraphError, match="not found"):
        Network.load(tmp_path / "missing")


def test_a_child_of_many_morphisms_still_trains():
    torch.manual_seed(0)
    net = start_net(1, 4, widths=(4, 8), input_size=8)
    child, _ = random_morphisms(net, 25, rng=3)
    x = torch.randn(32, 1, 8, 8)
    y = torch.randint(0, 4, (32,))
    opt = torch.optim.SGD(child.parameters(), lr=0.05, momentum=0.9)
    child.train()
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(child(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in child.parameters() if p.requires_grad)


def test_forward_skips_auxiliary_heads():
    g, last = _graph(("conv", dict(out_channels=2)), ("relu", {}), ("global_pool", {}),
                     ("linear", dict(out_features=3)), ("output", {}))
    add_layer(g, "linear", ["global_pool3"], name="aux_linear", out_features=3)
    add_layer(g, "aux_output", ["aux_linear"], name="aux")
    net = Network(g).eval()
    calls = []
    net.layers["aux_linear"].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 1, 4, 4)
    y = net(x)
    assert calls == []
    main, aux = net.forward_with_aux(x)
    assert calls == [1] and torch.equal(main, y) and aux[0].shape == (2, 3)


def test_global_pool_is_the_mean_and_hands_back_its_gradient_in_the_input_layout():
    # an additive merge right before the pool: its backward would otherwise hand NCHW gradients
    # to the channels_last ReLUs below it (a mixed-layout ReLU backward ran 7-10x slower)
    from morphisms.layers import GlobalAvgPool, WeightedAdd
    torch.manual_seed(0)
    a, b = (torch.randn(4, 6, 5, 3).contiguous(memory_format=torch.channels_last).requires_grad_() for _ in "ab")
    add, pool = WeightedAdd(0.3), GlobalAvgPool()
    ra, rb = torch.relu(a), torch.relu(b)
    reaching = []  # the gradients that reach the ReLUs' backward
    for r in (ra, rb):
        r.register_hook(reaching.append)
    out = pool(add(ra, rb))
    # bit for bit: CPU torch computes mean as the same sum kernel followed by a division, which
    # is what global_avg_pool does (same kernels, same inputs)
    assert torch.equal(out, add(ra, rb).mean(dim=(2, 3)))
    g = torch.randn_like(out)
    out.backward(g)
    assert len(reaching) == 2 and all(t.is_contiguous(memory_format=torch.channels_last) for t in reaching)
    want = torch.autograd.grad(add(torch.relu(a), torch.relu(b)).mean(dim=(2, 3)), (a, b), g)
    torch.testing.assert_close((a.grad, b.grad), want, rtol=1e-6, atol=1e-7)
