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


def test_same_seed_same_child(tiny_net):
    a, ma = random_morphisms(tiny_net, 10, rng=7)
    b, mb = random_morphisms(tiny_net, 10, rng=7)
    assert ma == mb and a.to_json() == b.to_json()
    c, mc = random_morphisms(tiny_net, 10, rng=8)
    assert mc != ma


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


def test_no_move_shrinks_a_map_below_1x1():
    for size in (1, 2, 3, 8):
        net = start_net(1, 10, widths=(4, 4, 4), input_size=size)
        assert min(s[1] for s in net.shapes.values() if len(s) == 3) >= 1
        child, applied = random_morphisms(net, 30, rng=size)
        assert all(min(s[1:]) >= 1 for s in child.shapes.values() if len(s) == 3)


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
        Network(g)
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
    g4.nodes["relu2"]["kind"] = "gelu"
    with pytest.raises(GraphError, match="unknown layer kind 'gelu'"):
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
