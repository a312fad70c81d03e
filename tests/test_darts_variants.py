"""DARTS variants: SDARTS smoothing, MiLeNAS, NASP, PT selection, the NAS-Bench-201 space and the
per-epoch diagnostics, each as a property on tiny problems (CPU)."""
import json
import random

import pytest
import torch
import torch.nn.functional as F

from nash.darts import (DARTS_SPACE, NB201_SPACE, AdversarialSmoothing, GenotypeError, MixedLevel, NB201Genotype,
                        NB201Supernet, PerturbationSelector, Proximal, RandomSmoothing, SearchConfigError, Supernet,
                        argmax_cell, argmax_mask, clip_rows, derived_size, dominant_eigenvalue, epsilon_at,
                        get_genotype, lower, run_search, search_config, supernet_genotype,
                        train_genotype)
from nash.darts.supernet import MixedOp
from nash.data import load_dataset
from nash.rundir import RunDir
from nash.search.budget import Budget


def tiny_darts(seed=0, steps=2, C=2, classes=3, in_channels=2, layers=3):
    torch.manual_seed(seed)
    return Supernet(C=C, num_classes=classes, layers=layers, in_channels=in_channels, steps=steps, multiplier=steps)


def tiny_nb201(seed=0, C=2, classes=3, in_channels=2):
    torch.manual_seed(seed)
    return NB201Supernet(C=C, num_classes=classes, layers=1, in_channels=in_channels)


def batches(n=12, c=2, k=3, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, k, (n,), generator=g)
    return (x[:n // 2], y[:n // 2]), (x[n // 2:], y[n // 2:])


# ---------------------------------------------------------------------------------------------
# smoothing


def test_rs_noise_stays_in_the_ball_and_rows_stay_normalised():
    net = tiny_darts()
    weights = net.op_weights()
    for eps in (0.03, 0.3, 1.5):
        noise = RandomSmoothing(seed=3).uniform(weights[0], eps)
        assert noise.abs().max() <= eps and noise.abs().max() > 0.5 * eps
        perturbed, _ = RandomSmoothing(seed=3).perturb(net, weights, None, eps)
        # the perturbation is exactly that noise, then clamped and renormalised
        torch.testing.assert_close(perturbed[0], clip_rows(weights[0] + noise))
        for w in perturbed:
            assert w.min() >= 0 and w.max() <= 1
            torch.testing.assert_close(w.sum(-1), torch.ones(len(w)))
    # a row clamped to all zeros becomes one-hot at its largest entry (the authors' clip)
    torch.testing.assert_close(clip_rows(torch.tensor([[-0.5, -0.1, -0.3]])), torch.tensor([[0.0, 1.0, 0.0]]))
    # the ramp: 0.03 at the first epoch, linear towards epsilon
    assert epsilon_at(0, 10, 0.3) == pytest.approx(0.03) and epsilon_at(5, 10, 0.3) == pytest.approx(0.165)


@pytest.mark.parametrize("make", [tiny_darts, tiny_nb201])
def test_adv_attack_raises_the_loss_more_than_random_noise_of_its_size(make):
    """The attack (before the keep rule, which alone would make "not lower" hold) raises the
    training loss above the clean weights', by more than twice the most that any of 16 random
    perturbations of the same size raises it: it ascends the loss, and is no mere random start."""
    net = make()
    (x, y), _ = batches()
    net.train()
    F.cross_entropy(net(x), y).backward()  # some BN statistics, so eval mode is not trivial
    net.zero_grad(set_to_none=True)
    clean = tuple(w.detach() for w in net.op_weights())

    def loss(ws):
        with torch.no_grad():
            return float(F.cross_entropy(net(x, *net.apply_fixed(ws)), y))
    for eps in (0.05, 0.3):
        perturbed, info = AdversarialSmoothing(seed=0).perturb(net, clean, (x, y), eps)
        assert net.training  # restored after the attack in eval mode
        net.eval()
        before, attacked = loss(clean), loss(perturbed)
        noise = [loss(tuple(clip_rows(w + RandomSmoothing(seed=k).uniform(w, eps)) for w in clean))
                 for k in range(16)]
        net.train()
        assert float(info["adv_kept"]) == 1.0  # the rule kept the attack: it had raised the loss
        # measured: the attack's gain is 5-14x the best random one's; twice is asked
        assert attacked - before > 2 * max(max(noise) - before, 0.0), (before, attacked, max(noise))
        assert float(info["adv_gain"]) == pytest.approx(attacked - before, rel=1e-4, abs=1e-6)
        for w, w0 in zip(perturbed, clean):
            torch.testing.assert_close(w.sum(-1), torch.ones(len(w)))
            assert not torch.equal(w, w0)
    assert all(p.grad is None for p in net.parameters())  # the attack leaves no gradients behind


# ---------------------------------------------------------------------------------------------
# update strategies


def test_milenas_with_lam_zero_is_the_single_level_training_gradient():
    net = tiny_darts()
    train, val = batches()
    opt = torch.optim.SGD(net.weights(), lr=0.05)
    alphas = net.arch_parameters()
    single = torch.autograd.grad(F.cross_entropy(net(train[0]), train[1]), alphas)
    grads, info = MixedLevel(net, lam=0.0).arch_grads(net, train, val, opt, 0.05)
    for g, e in zip(grads, single):  # fp32 rounding: the alpha-only pass takes other kernels
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-8)
    # lam weighs the validation gradient in
    on_val = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), alphas)
    grads, _ = MixedLevel(net, lam=0.5).arch_grads(net, train, val, opt, 0.05)
    for g, s, v in zip(grads, single, on_val):
        torch.testing.assert_close(g, s + 0.5 * v, rtol=1e-5, atol=1e-8)
    assert set(info) == {"val_loss", "train_loss"}


def count_op_calls(net):
    """{(mixed op, op index): forward calls of the op's modules}, by hooks on every module of
    every op of every edge (the fast path calls an op's layers, not always the op itself; a pool
    shared by the edges leaving a node is called through the first of them)."""
    calls, handles = {}, []
    for name, m in net.named_modules():
        if isinstance(m, MixedOp):
            for k, op in enumerate(m.ops):
                def hook(mod, inp, out, key=(name, k)):
                    calls[key] = calls.get(key, 0) + 1
                for sub in op.modules():
                    handles.append(sub.register_forward_hook(hook))
    return calls, handles


@pytest.mark.parametrize("make", [tiny_darts, tiny_nb201])
def test_nasp_weight_step_runs_only_the_selected_ops(make):
    net = make()
    nasp = Proximal(net)
    assert net.relaxation == "plain" and all(bool((a == 0.5).all()) for a in net.arch_parameters())  # authors' init
    with torch.no_grad():
        for a in net.arch_parameters():
            a.uniform_(0.2, 0.8)  # away from the ties of the init
    train, val = batches()
    opt = torch.optim.SGD(net.weights(), lr=0.05)
    discrete = nasp.weight_step_weights(net)
    for w, a in zip(discrete, net.op_weights()):
        torch.testing.assert_close(w, argmax_mask(a, net.space))
    calls, handles = count_op_calls(net)
    net.train()
    net(train[0], *discrete, skip_zero=nasp.skip_zero_ops)
    for h in handles:
        h.remove()
    space = net.space
    cell_of = {}  # MixedOp name ("cells.<i>.edges.<e>") -> (cell type, edge)
    for name, m in net.named_modules():
        if isinstance(m, MixedOp):
            _, i, _, e = name.split(".")
            cell_of[name] = ("reduce" if getattr(net.cells[int(i)], "reduction", False) else "normal", int(e))
    for (name, k), n in calls.items():
        cell, e = cell_of[name]
        assert float(discrete[space.cell_types.index(cell)][e, k]) == 1.0, (name, k)  # only selected ops ran
    ran = {(cell_of[name], k) for name, k in calls}
    selected = {((cell, e), k) for c, cell in enumerate(space.cell_types) for e, k in discrete[c].nonzero().tolist()
                if space.ops[k] != "none"}
    mixed = {cell_of[name]: m for name, m in net.named_modules() if isinstance(m, MixedOp)}
    with_weights = {(edge, k) for edge, k in selected if any(True for _ in mixed[edge].ops[k].parameters())}
    assert with_weights <= ran <= selected  # an op with weights runs on its own edge; shared pools run once
    # the alpha step: the gradient of L_val at the one-hot point, for every op (authors), then a clip
    w = tuple(d.clone().requires_grad_() for d in discrete)
    expect = torch.autograd.grad(F.cross_entropy(net(val[0], *w), val[1]), w)
    grads, _ = nasp.arch_grads(net, train, val, opt, 0.05)
    for g, e in zip(grads, expect):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        net.arch_parameters()[0][0, 0] = 1.2
    nasp.step(net, train, val, opt, 0.05)
    assert all(float(a.detach().min()) >= 0 and float(a.detach().max()) <= 1 for a in net.arch_parameters())


# ---------------------------------------------------------------------------------------------
# PT


def test_pt_keeps_the_op_whose_removal_hurts_most():
    """A constructed accuracy, additive over (edge, op): removing op k of edge e costs
    value[e, k] * w[e, k]. PT must keep, per edge, the choosable op of largest cost, and per node
    the 2 edges whose kept op costs most to remove."""
    net = tiny_darts(steps=3)
    space = net.space
    g = torch.Generator().manual_seed(0)
    value = [torch.rand(space.num_edges, len(space.ops), generator=g) for _ in space.cell_types]
    start = [w.detach().clone() for w in net.op_weights()]

    def accuracy(weights):
        return float(sum((v * w.detach()).sum() for v, w in zip(value, weights)))

    seen = []
    genotype = PerturbationSelector(seed=1).select(net, accuracy=accuracy, record=lambda **f: seen.append(f))
    choosable = space.choosable_ops()
    for c, cell in enumerate(space.cell_types):
        cost = value[c] * start[c]
        best = {e: max(choosable, key=lambda k: float(cost[e, k])) for e in range(space.num_edges)}
        expect = []
        for node in range(space.num_inputs, space.num_inputs + space.steps):
            edges = [e for e, (src, dst) in enumerate(space.edges) if dst == node]
            keep = sorted(sorted(edges, key=lambda e: -float(value[c][e, best[e]]))[:2])
            expect += [(space.ops[best[e]], space.edges[e][0]) for e in keep]
        assert getattr(genotype, cell) == expect
    ops = [f for f in seen if f["decision"] == "op"]
    assert len(ops) == 2 * space.num_edges and all(f["measured"] for f in ops)
    # the recorded drop is the accuracy lost by removing the kept op: the largest of the edge
    for f in ops:
        assert f["drop"] == pytest.approx(f["base_acc"] - min(f["accs"].values()))
    # nodes 3 and 4 have 3 and 4 inputs: 1 + 2 drops per cell
    assert len([f for f in seen if f["decision"] == "edge"]) == 2 * 3


def test_pt_out_of_time_decides_by_argmax():
    net = tiny_darts(steps=3)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    seen = []
    genotype = PerturbationSelector().select(net, accuracy=lambda w: 1 / 0, deadline=0.0,
                                             record=lambda **f: seen.append(f))
    assert seen and not any(f["measured"] for f in seen)
    net.clear_fixed()
    expect = supernet_genotype(net)
    for cell in ("normal", "reduce"):
        # same edges and ops; the argmax rule lists a node's edges strongest first, PT in edge order
        assert sorted(getattr(genotype, cell)) == sorted(getattr(expect, cell))


# ---------------------------------------------------------------------------------------------
# Hessian


def test_power_iteration_matches_the_exact_hessian():
    net = tiny_nb201().double()
    with torch.no_grad():
        net.alphas_normal.normal_()
    (x, y), _ = batches(dtype=torch.float64)
    net.train()

    def loss(a):
        return F.cross_entropy(net(x, F.softmax(a, dim=-1)), y)

    H = torch.autograd.functional.hessian(loss, net.alphas_normal.detach()).reshape(30, 30)
    eig = torch.linalg.eigvalsh(H)
    top = float(eig[eig.abs().argmax()])
    got = dominant_eigenvalue(lambda: loss(net.alphas_normal), [net.alphas_normal], iters=50,
                              generator=torch.Generator().manual_seed(0))
    assert got == pytest.approx(top, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# NAS-Bench-201


ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def random_nb201(rng: random.Random) -> NB201Genotype:
    return NB201Genotype.from_edges(rng.choice(NB201_SPACE.ops) for _ in range(NB201_SPACE.num_edges))


def test_nb201_genotype_text_round_trips():
    g = NB201Genotype.parse(ARCH)
    assert str(g) == ARCH and get_genotype(ARCH) == g and get_genotype(json.dumps(g.to_json())) == g
    assert g.edge_ops() == ["nor_conv_3x3", "skip_connect", "nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3"]
    rng = random.Random(0)
    for _ in range(50):
        r = random_nb201(rng)
        assert NB201Genotype.parse(str(r)) == r and NB201Genotype.from_json(json.loads(json.dumps(r.to_json()))) == r
    for bad in ("", "|nor_conv_3x3~0|", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "|none~0|+|none~0|none~1|+|none~0|none~1|none~x|",
                "|none~0|+|none~0|+|none~0|none~1|none~2|"):
        with pytest.raises(GenotypeError) as e:
            get_genotype(bad) if bad.startswith("|") else NB201Genotype.parse(bad)
        assert "\n" not in str(e.value)


def test_nb201_argmax_keeps_every_edge_and_may_choose_none():
    w = torch.zeros(6, 5)
    w[:, 0] = 1.0  # 'none' strongest everywhere
    w[5, 3] = 2.0
    cell = argmax_cell(w, NB201_SPACE)
    assert cell == [("none", 0), ("none", 0), ("none", 1), ("none", 0), ("none", 1), ("nor_conv_3x3", 2)]


def test_nb201_lowering_parameter_counts():
    """The skeleton's size: a cell of no parameters leaves 73,306 (stem, residual blocks, head) and
    the all-3x3-conv cell 1,531,546, the two ends of the benchmark's range (0.07M to 1.53M)."""
    assert lower("|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|", 16, 5).num_params() \
        == 73306
    assert lower("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
                 16, 5).num_params() == 1531546


def test_random_nb201_cells_lower_and_train_one_step():
    rng = random.Random(201)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 1])
    for _ in range(20):
        g = random_nb201(rng)
        torch.manual_seed(0)
        net = lower(g, channels=2, layers=1, num_classes=3, in_channels=1, input_size=8)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in net.parameters()), str(g)


def test_nb201_lowering_computes_what_the_supernet_computes_with_one_hot_weights():
    """With the supernet's weights copied in, the lowered network of a cell equals the search
    network run with that cell's one-hot op weights (training mode: BN on batch statistics, so
    the search BNs without affine part match the lowered ones at their initial scale 1, shift 0)."""
    rng = random.Random(7)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(12):
        g = random_nb201(rng)
        sup = tiny_nb201(C=2, in_channels=1)
        net = lower(g, channels=2, layers=1, num_classes=3, in_channels=1, input_size=8)
        layers = net.layers
        pairs = [(sup.stem[0], "stem_conv"), (sup.classifier, "classifier")]
        k = 0
        for idx, cell in enumerate(sup.cells):
            if hasattr(cell, "conv_a"):  # a residual block between stages
                stage = (idx + 1) // 2
                pairs += [(cell.conv_a[1], f"r{stage}_a_conv"), (cell.conv_b[1], f"r{stage}_b_conv"),
                          (cell.downsample[1], f"r{stage}_down_conv")]
                continue
            for e, ((op, _), (i, j)) in enumerate(zip([p for node in g.nodes for p in node], NB201_SPACE.edges)):
                if op.startswith("nor_conv"):
                    pairs.append((cell.edges[e].ops[NB201_SPACE.ops.index(op)][1], f"c{k}_n{j}_{i}_conv"))
            k += 1
        with torch.no_grad():
            for module, name in pairs:
                if name in layers:  # nodes that reach no output are not lowered
                    for a, b in zip(module.parameters(), layers[name].parameters()):
                        b.copy_(a)
        one_hot = F.one_hot(torch.tensor([NB201_SPACE.ops.index(op) for op in g.edge_ops()]), 5).float()
        sup.train(), net.train()
        torch.testing.assert_close(net(x), sup(x, one_hot), rtol=1e-4, atol=1e-5, msg=str(g))


def test_nb201_zero_node_read_by_a_conv_is_exact():
    """Node 1 is 'none' and node 2 convolves it: BN after a conv of zeros outputs its shift,
    so the cell's output is not zero though no path carries the input."""
    torch.manual_seed(0)
    net = lower("|none~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|", channels=2, layers=1,
                num_classes=3, in_channels=1, input_size=8)
    bns = [m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and "_n2_1_" in n]
    assert bns, "the conv reading the zero node is lowered"
    with torch.no_grad():
        for bn in bns:
            bn.bias.fill_(0.7)
    net.train()
    a = net(torch.randn(3, 1, 8, 8))
    b = net(torch.randn(3, 1, 8, 8))
    torch.testing.assert_close(a, b)  # the output depends on no input pixel


def test_nb201_supernet_shape_and_sizes():
    net = tiny_nb201()
    assert [tuple(a.shape) for a in net.arch_parameters()] == [(6, 5)] and net.cell_types == ("normal",)
    out = net(batches()[0][0])
    assert out.shape == (6, 3)
    assert derived_size("nb201", (32, 32)) == (16, 5) and derived_size("darts", (32, 32)) == (36, 20)
    assert derived_size("darts", (8, 8)) == (16, 8)


# ---------------------------------------------------------------------------------------------
# config


def test_variant_config_errors_are_one_line():
    for bad, fragment in ((dict(method="enas"), "method"), (dict(method="milenas", order=2), "order 2"),
                          (dict(smooth="gauss"), "smooth"), (dict(epsilon=0), "epsilon"), (dict(lam=-1), "lam"),
                          (dict(selector="best"), "selector"), (dict(pt_tune_epochs=-1), "pt_tune_epochs"),
                          (dict(pt_share=1.0), "pt_share"), (dict(track_hessian="yes"), "track_hessian"),
                          (dict(space="nb101"), "space"), (dict(space="nb201", steps=3), "steps")):
        with pytest.raises(SearchConfigError, match=fragment) as e:
            search_config(bad)
        assert "\n" not in str(e.value)
    assert search_config({}).layers == 8 and search_config({"space": "nb201"}).layers == 5
    assert search_config({"space": "nb201", "layers": 2}).layers == 2


# ---------------------------------------------------------------------------------------------
# tiny searches


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", subset=64, val_fraction=0.25)


TINY = dict(epochs=2, channels=2, layers=3, steps=2, multiplier=2, batch_size=16, seed=0, augment=False)
VARIANTS = {
    "rs": dict(smooth="rs"),
    "adv": dict(smooth="adv", epochs=1),
    "milenas": dict(method="milenas", lam=0.5),
    "nasp": dict(method="nasp"),
    "hessian": dict(track_hessian=True, epochs=1),
    "pt": dict(selector="pt", pt_tune_epochs=1, epochs=1),
    "nb201": dict(space="nb201", layers=1, steps=4, multiplier=4),
    "nb201+nasp+rs+pt": dict(space="nb201", layers=1, steps=4, multiplier=4, method="nasp", smooth="rs",
                             selector="pt", pt_tune_epochs=1, epochs=1),
    "milenas+rs+pt": dict(method="milenas", smooth="rs", selector="pt", pt_tune_epochs=1, epochs=1),
}


# what sets a variant apart from a plain DARTS search of the same epochs, in the supernet it ends
# with: smoothing trains other weights, MiLeNAS moves the alphas otherwise, NASP's alphas are
# weights in [0, 1] (plain DARTS's are logits around 0), tracking the Hessian changes nothing
DEFINING = {"rs": "weights", "adv": "weights", "milenas": "alphas", "nasp": "nasp", "hessian": "nothing"}


@pytest.fixture(scope="module")
def plain(digits, tmp_path_factory):
    """The supernet after a plain DARTS search of TINY, for 1 and 2 epochs."""
    out = {}
    for epochs in (1, 2):
        cfg = dict(TINY, epochs=epochs)
        path = tmp_path_factory.mktemp(f"plain{epochs}") / "run"
        run_search(cfg, RunDir.create(path, cfg), digits)
        out[epochs] = RunDir.open(path).load_checkpoint()["supernet"]
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_tiny_search_of_each_variant(name, digits, tmp_path, request):
    cfg = dict(TINY, **VARIANTS[name])
    caller = torch.get_rng_state()
    summary = run_search(cfg, RunDir.create(tmp_path / "run", cfg), digits)
    assert torch.equal(torch.get_rng_state(), caller)  # every draw from the search's own generators
    run = RunDir.open(tmp_path / "run")
    if name in DEFINING:  # bitwise against the plain search: the same kernels on the same inputs
        state, base = run.load_checkpoint()["supernet"], request.getfixturevalue("plain")[cfg["epochs"]]
        alphas = [k for k in state if k.startswith("alphas_")]
        weights = [k for k in base if k not in alphas]
        assert alphas and weights and set(weights) <= set(state)
        changed = lambda keys: any(not torch.equal(state[k], base[k]) for k in keys)
        if DEFINING[name] == "weights":
            assert changed(weights)
        elif DEFINING[name] == "alphas":
            assert changed(alphas)
        elif DEFINING[name] == "nasp":
            assert all(float(state[k].min()) >= 0 and float(state[k].max()) <= 1 for k in alphas)
            assert any(float(base[k].min()) < 0 for k in alphas)  # which plain DARTS's logits are not
            assert changed(alphas) and not all(bool((state[k] == 0.5).all()) for k in alphas)  # moved from the init
        else:
            assert state.keys() == base.keys() and not changed(list(state))
    events = run.events("darts_epoch")
    assert len(events) == cfg["epochs"] == summary["epochs_done"]
    genotype = get_genotype(summary["genotype"])
    assert get_genotype(json.loads((tmp_path / "run" / "genotype.json").read_text())) == genotype
    assert isinstance(genotype, NB201Genotype) == (cfg.get("space") == "nb201")
    for e in events:
        json.dumps(e)
        assert isinstance(e["skips"], int) and get_genotype(e["genotype"])
        assert ("epsilon" in e) == ("smooth" in cfg) and ("hessian_eig" in e) == ("track_hessian" in cfg)
        assert ("alphas_reduce" in e) == (cfg.get("space") != "nb201")
    if "smooth" in cfg:
        assert events[0]["epsilon"] == pytest.approx(0.03)
    if cfg.get("smooth") == "adv":
        assert 0 <= events[0]["adv_kept"] <= 1 and events[0]["adv_gain"] >= 0
    if cfg.get("method") == "milenas":
        assert "arch_train_loss" in events[0]
    if cfg.get("track_hessian"):
        assert isinstance(events[0]["hessian_eig"], float)
    decisions = run.events("darts_pt_decision")
    if cfg.get("selector") == "pt":
        space = NB201_SPACE if cfg.get("space") == "nb201" else DARTS_SPACE.with_steps(2)
        assert len([d for d in decisions if d["decision"] == "op"]) == space.num_edges * len(space.cell_types)
        assert all(d["measured"] and d["drop"] is not None for d in decisions)
        # once done, PT is not run again on resume: the checkpoint holds its genotype
        again = run_search(cfg, RunDir.open(tmp_path / "run"), digits)
        assert again["genotype"] == summary["genotype"]
        assert len(RunDir.open(tmp_path / "run").events("darts_pt_decision")) == len(decisions)
    else:
        assert not decisions
    for f in ("alphas.png", "diagnostics.png"):
        assert (tmp_path / "run" / f).stat().st_size > 1000


class Killed(Exception):
    pass


def test_smoothed_search_resumes_bit_for_bit(digits, tmp_path):
    cfg = dict(TINY, smooth="rs", epochs=2)
    run_search(cfg, RunDir.create(tmp_path / "full", cfg), digits)

    def kill(event):
        raise Killed
    with pytest.raises(Killed):
        run_search(cfg, RunDir.create(tmp_path / "killed", cfg), digits, progress=kill)
    run_search(cfg, RunDir.open(tmp_path / "killed"), digits)
    a, b = (RunDir.open(tmp_path / d).load_checkpoint() for d in ("full", "killed"))
    for k, v in a["supernet"].items():
        assert torch.equal(v, b["supernet"][k]), k


def test_train_genotype_takes_an_nb201_cell(digits):
    """train_genotype lowers the NAS-Bench-201 cell it is given at the size asked (the benchmark's
    network: no auxiliary head), trains it from its seed's init and reports the accuracy of the
    network it returns."""
    from nash.train import evaluate
    net, result = train_genotype(ARCH, digits, epochs=1, channels=2, layers=1, batch_size=16)
    assert result["genotype"] == ARCH and result["failed"] is None
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(0)  # train_genotype's seed
        fresh = lower(ARCH, channels=2, layers=1, num_classes=10, in_channels=1, input_size=(8, 8))
    assert net.to_json() == fresh.to_json() and result["params"] == fresh.num_params()
    assert not any(n.startswith("aux_") for n in net.layers)
    assert result["epochs"] == 1 and result["steps"] == -(-len(digits.train_y) // 16)
    trained = dict(net.named_parameters())
    assert trained.keys() == dict(fresh.named_parameters()).keys()
    assert any(not torch.equal(p, trained[n]) for n, p in fresh.named_parameters())  # it trained
    assert result["test_acc"] == evaluate(net, digits.test_x, digits.test_y)[0]


NB201_PT = dict(TINY, space="nb201", layers=1, steps=4, multiplier=4, selector="pt", pt_tune_epochs=1, epochs=1)


def test_pt_interrupted_restarts_from_the_search_end(digits, tmp_path, monkeypatch):
    full = run_search(NB201_PT, RunDir.create(tmp_path / "full", NB201_PT), digits)
    decisions = RunDir.open(tmp_path / "full").events("darts_pt_decision")
    event = RunDir.event

    def die_on_the_third_decision(self, kind, **fields):
        if kind == "darts_pt_decision" and len(self.events("darts_pt_decision")) == 2:
            raise Killed
        event(self, kind, **fields)
    monkeypatch.setattr(RunDir, "event", die_on_the_third_decision)
    with pytest.raises(Killed):
        run_search(NB201_PT, RunDir.create(tmp_path / "killed", NB201_PT), digits)
    monkeypatch.undo()
    resumed = run_search(NB201_PT, RunDir.open(tmp_path / "killed"), digits)
    assert resumed["genotype"] == full["genotype"]
    again = RunDir.open(tmp_path / "killed").events("darts_pt_decision")
    assert [{k: v for k, v in d.items() if k != "time"} for d in again] == \
           [{k: v for k, v in d.items() if k != "time"} for d in decisions]


def test_pt_honours_the_budget(digits, tmp_path):
    cfg = dict(NB201_PT, epochs=3)
    summary = run_search(cfg, RunDir.create(tmp_path / "run", cfg), digits, budget=Budget.from_now(1e-3))
    assert summary["epochs_done"] == 1 and summary["stopped"] == "budget"
    run = RunDir.open(tmp_path / "run")
    decisions = run.events("darts_pt_decision")
    # no time left: every edge decided by the argmax rule, nothing measured, nothing tuned
    assert len(decisions) == 6 and not any(d["measured"] for d in decisions)
    assert all(t["epochs"] == 0 for t in run.events("darts_pt_tune"))
    assert summary["genotype"] == run.events("darts_epoch")[-1]["genotype"]  # the argmax genotype
