"""nash.darts supernet, architecture strategies and the search driver (tiny, CPU)."""
import copy
import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nash.darts import (DARTS_SPACE, FirstOrder, Genotype, SecondOrder, Supernet, run_search, search_config,
                        strategy_for, train_genotype)
from nash.darts.search import SearchConfigError
from nash.data import Augment, DataSplits, load_dataset
from nash.rundir import RunDir, RunDirError
from nash.search.budget import Budget


def tiny(dtype=torch.float32, steps=4, seed=0, C=4, in_channels=3, classes=3):
    torch.manual_seed(seed)
    net = Supernet(C=C, num_classes=classes, layers=3, in_channels=in_channels, steps=steps, multiplier=steps)
    return net.to(dtype)


def batches(n=12, c=3, k=3, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, k, (n,), generator=g)
    return (x[:n // 2], y[:n // 2]), (x[n // 2:], y[n // 2:])


# ---------------------------------------------------------------------------------------------
# supernet


def test_weights_and_arch_parameters_partition_the_parameters():
    net = tiny()
    arch, weights = net.arch_parameters(), net.weights()
    assert [tuple(a.shape) for a in arch] == [(14, 8), (14, 8)]
    ids_a, ids_w = {id(p) for p in arch}, {id(p) for p in weights}
    assert not ids_a & ids_w
    assert ids_a | ids_w == {id(p) for p in net.parameters()}
    assert len(weights) + 2 == len(list(net.parameters()))
    # the alphas start near uniform (1e-3 * randn)
    assert all(a.abs().max() < 1e-2 for a in arch)
    # search BNs have no affine parameters (reference), the stem's has
    assert all(not m.affine for n, m in net.named_modules()
               if isinstance(m, torch.nn.BatchNorm2d) and not n.startswith("stem"))


def test_explicit_op_weights():
    net = tiny().eval()
    x = batches()[0][0]
    wn, wr = net.op_weights()
    assert torch.equal(net(x), net(x, wn, wr))
    # one-hot weights (NASP) select single ops; 'none' everywhere in the normal cell still runs
    one_hot = F.one_hot(torch.full((14,), DARTS_SPACE.ops.index("none")), 8).float()
    assert torch.isfinite(net(x, one_hot, wr)).all()
    # detached weights (the weight step): no gradient reaches the alphas
    net.train()
    F.cross_entropy(net(x, wn.detach(), wr.detach()), torch.zeros(len(x), dtype=torch.long)).backward()
    assert all(a.grad is None for a in net.arch_parameters())
    assert all(p.grad is not None for p in net.weights())


# ---------------------------------------------------------------------------------------------
# architecture gradients


def _sgd(net, lr=0.05, momentum=0.9, wd=3e-4, warm_batch=None):
    """The weight optimizer, after one real step so that momentum buffers exist."""
    opt = torch.optim.SGD(net.weights(), lr=lr, momentum=momentum, weight_decay=wd)
    if warm_batch is not None:
        F.cross_entropy(net(warm_batch[0]), warm_batch[1]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
    return opt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_first_order_is_the_plain_validation_gradient(dtype):
    """FirstOrder freezes the weights, so its backward takes other kernels (no weight gradients)
    than autograd through everything: equal up to rounding, not bit for bit. float64: within
    1e-10 of the gradient's scale (the sums here have ~1e3 terms of eps 2.2e-16). float32: the
    same bound with eps 1.2e-7, 1e-4 of the scale (seen on one AMD CPU: 1.8e-5)."""
    net = tiny(dtype)
    train, val = batches(dtype=dtype)
    opt = _sgd(net, warm_batch=train)
    grads, _ = FirstOrder(net).arch_grads(net, train, val, opt, 0.05)
    expect = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), net.arch_parameters())
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for g, e in zip(grads, expect):
        scale = float(e.abs().max())
        assert scale > 0
        torch.testing.assert_close(g, e, rtol=0, atol=tol * scale)


def exact_unrolled_grad(net, train, val, opt, eta, momentum=True):
    """d/dalpha L_val(w'(alpha), alpha), w' = w - eta (grad_w L_train(w, alpha) + wd w + mu buf):
    autograd straight through the virtual step (a double backward), no finite differences."""
    group = opt.param_groups[0]
    A, W = net.arch_parameters(), net.weights()
    names = [n for n, p in net.named_parameters() if not n.startswith("alphas")]

    def loss(params, batch):
        out = functional_call(net, {**params, "alphas_normal": A[0], "alphas_reduce": A[1]}, (batch[0],))
        return F.cross_entropy(out, batch[1])

    w0 = {n: p.detach().clone().requires_grad_() for n, p in zip(names, W)}
    g = torch.autograd.grad(loss(w0, train), list(w0.values()), create_graph=True)
    w1 = {}
    for n, gi, p in zip(names, g, W):
        d = gi + group["weight_decay"] * p.detach()
        if momentum:
            d = d + group["momentum"] * opt.state[p]["momentum_buffer"]
        w1[n] = p.detach() - eta * d
    return torch.autograd.grad(loss(w1, val), A)


def test_second_order_matches_the_exact_unrolled_gradient():
    """The finite-difference architecture gradient equals autograd through the same virtual step
    (float64; relative error < 1e-6). r is taken small here: with the reference's r = 0.01 the
    difference quotient of a ReLU/max-pool net crosses activation kinks, and on a net this small
    that error, inherent to the method, swamps the comparison."""
    net = tiny(torch.float64, steps=2, C=2, in_channels=2)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()  # away from uniform, so every term matters
    train, val = batches(c=2, dtype=torch.float64)
    opt = _sgd(net, warm_batch=train)
    eta = 0.05
    fd, _ = SecondOrder(net, r=1e-6).arch_grads(net, train, val, opt, eta)
    exact = exact_unrolled_grad(net, train, val, opt, eta)
    no_momentum = exact_unrolled_grad(net, train, val, opt, eta, momentum=False)
    for f, e, nm in zip(fd, exact, no_momentum):
        assert float((f - e).norm() / e.norm()) < 1e-6
        assert float((nm - e).norm() / e.norm()) > 1e-3  # the momentum term is really in the step
    first = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), net.arch_parameters())
    assert any(float((f - e).norm() / e.norm()) > 1e-2 for f, e in zip(first, exact))  # 2nd order != 1st


def test_second_order_restores_weights_and_bn_statistics_and_copies_no_model(monkeypatch):
    net = tiny()
    train, val = batches()
    opt = _sgd(net, warm_batch=train)
    state = copy.deepcopy(net.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    strategy = SecondOrder(net)
    alphas = [a.detach().clone() for a in net.arch_parameters()]

    def refuse(*a, **k):
        raise AssertionError("the architecture step must not copy or rebuild the supernet")
    monkeypatch.setattr(copy, "deepcopy", refuse)
    monkeypatch.setattr(Supernet, "__init__", refuse)
    strategy.step(net, train, val, opt, 0.05)
    monkeypatch.undo()
    for k, v in net.state_dict().items():
        if not k.startswith("alphas"):
            assert torch.equal(v, state[k]), k
    assert all(not torch.equal(a, b) for a, b in zip(alphas, net.arch_parameters()))  # alphas moved
    assert all(p.grad is None for p in net.weights())
    s1, s0 = opt.state_dict()["state"], opt_state["state"]
    assert all(torch.equal(s1[i]["momentum_buffer"], s0[i]["momentum_buffer"]) for i in s0)


def test_strategy_registry():
    assert strategy_for("darts", 1) is FirstOrder and strategy_for("darts", 2) is SecondOrder
    with pytest.raises(ValueError, match="order"):
        strategy_for("darts", 3)
    with pytest.raises(ValueError, match="unknown search method"):
        strategy_for("enas")


# ---------------------------------------------------------------------------------------------
# the search driver


def random_data(n=32, c=3, k=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 16, c, size, size, generator=g)
    y = torch.randint(0, k, (n + 16,), generator=g)
    return DataSplits("random", x[:n], y[:n], x[n:n + 8], y[n:n + 8], x[n + 8:], y[n + 8:], c, k, (size, size),
                      (0.0,) * c, (1.0,) * c, Augment(pad=1))


CFG = dict(method="darts", order=2, epochs=2, channels=4, layers=3, batch_size=8, seed=3)


class Killed(Exception):
    pass


def test_resumed_search_equals_uninterrupted_and_writes_its_outputs(tmp_path):
    data = random_data()
    full = run_search(CFG, RunDir.create(tmp_path / "full", CFG), data)

    def kill_after_first_epoch(event):
        if event["epoch"] == 1:
            raise Killed  # as if the process died right after the epoch-1 checkpoint
    run = RunDir.create(tmp_path / "killed", CFG)
    with pytest.raises(Killed):
        run_search(CFG, run, data, progress=kill_after_first_epoch)
    # a checkpoint of the earlier format also holds the global generator's state: read, ignored
    state = run.load_checkpoint()
    assert "torch" not in state["rng"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        state["rng"]["torch"] = torch.get_rng_state()
    run.save_checkpoint(state)
    seen = []
    with torch.random.fork_rng(devices=[]):
        # the caller's generator is elsewhere than in the first session: the search neither
        # depends on it nor sets it (the old resume restored it from the checkpoint)
        torch.manual_seed(1234)
        caller = torch.get_rng_state()
        resumed = run_search(CFG, RunDir.open(tmp_path / "killed"), data, progress=seen.append)
        assert torch.equal(torch.get_rng_state(), caller)
    assert [e["epoch"] for e in seen] == [2]  # continued at the next epoch

    a = RunDir.open(tmp_path / "full").load_checkpoint()
    b = RunDir.open(tmp_path / "killed").load_checkpoint()
    for key in ("alphas_normal", "alphas_reduce"):
        assert torch.equal(a["supernet"][key], b["supernet"][key])
    for k, v in a["supernet"].items():
        assert torch.equal(v, b["supernet"][k]), k
    assert full["genotype"] == resumed["genotype"] and full["epochs_done"] == resumed["epochs_done"] == 2
    assert a["epoch"] == 2 and "scheduler" not in a

    # outputs: genotype files, the plot, one event per epoch with the alphas' softmax
    for name in ("full", "killed"):
        d = tmp_path / name
        g = Genotype.parse((d / "genotype.txt").read_text())
        assert str(g) == full["genotype"] == str(Genotype.from_json(json.loads((d / "genotype.json").read_text())))
        assert (d / "alphas.png").stat().st_size > 1000
        events = RunDir.open(d).events("darts_epoch")
        assert [e["epoch"] for e in events] == [1, 2]
        for e in events:
            assert len(e["alphas_normal"]) == 14 and len(e["alphas_normal"][0]) == 8
            assert abs(sum(e["alphas_reduce"][3]) - 1) < 1e-4
            Genotype.parse(e["genotype"])
            assert 0 <= e["train_acc"] <= 1 and 0 <= e["val_acc"] <= 1
    assert [e["alphas_normal"] for e in RunDir.open(tmp_path / "full").events("darts_epoch")] == \
           [e["alphas_normal"] for e in RunDir.open(tmp_path / "killed").events("darts_epoch")]


def test_a_search_leaves_process_wide_state_alone(tmp_path):
    """Denormal flushing is the process's (the nash CLI sets it at its start), not a search's."""
    def flushed():
        return bool(torch.tensor([1e-40]) * 1.0 == 0)  # 1e-40 is a float32 denormal

    was = flushed()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    try:
        cfg = dict(CFG, order=1, epochs=1)
        run_search(cfg, RunDir.create(tmp_path / "run", cfg), random_data())
        assert not flushed()
    finally:
        torch.set_flush_denormal(was)


def test_budget_stops_between_epochs_and_resume_checks_the_config(tmp_path):
    cfg = dict(CFG, order=1, epochs=5)
    run = RunDir.create(tmp_path / "run", cfg)
    summary = run_search(cfg, run, random_data(), budget=Budget.from_now(1e-3))
    assert summary["epochs_done"] == 1 and summary["stopped"] == "budget"  # the first epoch always runs
    events = run.events("darts_epoch")
    assert len(events) == 1 and events[0]["steps"] == 1  # and its first step
    with pytest.raises(RunDirError, match="channels=4, not 6"):
        run_search(dict(cfg, channels=6), RunDir.open(tmp_path / "run"), random_data())
    # no budget continues the same run
    more = run_search(dict(cfg, epochs=2), RunDir.open(tmp_path / "run"), random_data())
    assert more["epochs_done"] == 2 and more["stopped"] is None


def test_a_search_whose_epoch_outlasts_its_share_stops_within_it(tmp_path):
    """SDARTS-ADV (ten forward-backward passes a step) with one epoch of 323 small steps, longer
    than its share (half of a 30 s budget; the search's start-up takes seconds of it, too): the
    search stops mid-epoch, within its share, and the derived network trains in the rest. Stated
    slack past the share: 25% of the budget (the step in flight and the epoch's validation pass,
    on a busy 2-core CPU)."""
    from nash.search import DartsConfig, run_searcher
    from nash.search.budget import Budget
    budget = 30.0
    cfg = DartsConfig(data="digits", device="cpu", budget=budget, smooth="adv", channels=4, layers=3, batch_size=2,
                      train_channels=4, train_layers=2, train_batch_size=64)
    res = run_searcher("darts", cfg, out=tmp_path / "run")
    run = RunDir.open(tmp_path / "run")
    share_ends = Budget.for_run(budget, 0.0).share(cfg.search_share).deadline  # on the run's clock
    epoch, = run.events("darts_epoch")
    done, = run.events("darts_done")
    final, = run.events("final")
    assert epoch["steps"] < 323 and done["stopped"] == "budget"  # cut mid-epoch
    assert epoch["elapsed"] <= share_ends + 0.25 * budget
    # the derived network gets its part: more than the one epoch it always trains, for at
    # least a quarter of the time after the share, every epoch it trained in the network (its
    # timing epoch too), and learns: ten classes, chance 0.1; measured 0.96 after 8 epochs
    assert res["epochs"] >= 3 and final["elapsed"] - done["elapsed"] >= 0.25 * (budget - share_ends)
    # (the last epoch may be a part of one, ending the cycle with the time)
    assert len(run.events("train_epoch")) == math.ceil(res["epochs"]) and res["final"]["test_acc"] > 0.5
    assert res["seconds"] <= budget  # the run ends within its budget


@pytest.mark.parametrize("bad", [dict(order=3), dict(epochs=0), dict(w_lr=-1), dict(layers=0),
                                 dict(selector="bogus")])
def test_config_errors_are_one_line(bad):
    with pytest.raises(SearchConfigError) as e:
        search_config(bad)
    (key, value), = bad.items()
    msg = str(e.value)
    assert "\n" not in msg and key in msg and repr(value) in msg, msg


def test_foreign_config_keys_are_ignored():
    assert search_config({"dataset": "cifar10"}).w_lr == 0.025


def test_train_genotype_helper():
    data = load_dataset("digits", subset=800, seed=0)
    net, result = train_genotype("DARTS_V2", data, epochs=3, channels=4, layers=3, batch_size=32)
    assert result["epochs"] == 3 and result["failed"] is None
    # ten classes, chance is 0.1; measured 0.56-0.74 over seeds 0-9 (0.72 with this one)
    assert result["test_acc"] > 0.3
    assert result["params"] == net.num_params() == result["params_without_aux"]  # 8x8: no auxiliary head


@pytest.fixture
def counted_sgd_steps(monkeypatch):
    """The number of SGD steps taken (every network the derived network's training makes)."""
    steps = [0]
    step = torch.optim.SGD.step

    def counted(self, *args, **kwargs):
        steps[0] += 1
        return step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.SGD, "step", counted)
    return steps


def derived_run(tmp_path, budget):
    from nash.darts import GENOTYPES
    from nash.progress import Reporter
    from nash.search import DartsConfig
    from nash.search.darts import train_and_report
    data = load_dataset("digits", subset=600, seed=0)
    cfg = DartsConfig(data="digits", device="cpu", train_channels=4, train_layers=2, train_batch_size=32)
    run = RunDir.create(tmp_path / "run", cfg.to_json())
    run.start_clock()
    final, details = train_and_report(run, GENOTYPES["DARTS_V2"], data, cfg, Reporter(quiet=True), budget)
    return run, final, details, data


def test_the_derived_network_keeps_its_timing_epoch_and_trains_until_its_deadline(tmp_path, counted_sgd_steps):
    """With a budget, the epoch that times the derived network is its first training epoch, not
    one thrown away (on a small budget that is a large part of it): every SGD step taken is in
    the network reported. The cycle is re-planned after every epoch, so the last epoch ends
    within the report's reserve and two epochs of the deadline, not long before it."""
    budget = Budget.from_now(8.0)
    run, final, details, data = derived_run(tmp_path, budget)
    steps_per_epoch = len(data.train_y) // 32
    epochs = run.events("train_epoch")
    assert len(epochs) == math.ceil(details["epochs"]) and details["epochs"] >= 3  # the last may be a part
    assert counted_sgd_steps[0] == details["epochs"] * steps_per_epoch  # nothing trained and thrown away
    assert time.time() <= budget.deadline + 1.0  # the report's reserve held (1 s of slack on a busy CPU)
    longest = max(b["time"] - a["time"] for a, b in zip(epochs, epochs[1:]))
    assert epochs[-1]["time"] >= budget.deadline - Budget.reserve(longest) - 2.2 * longest
    # ten classes, chance 0.1; measured 0.8-0.9 here
    assert final["test_acc"] > 0.4


def test_a_derived_network_past_its_deadline_trains_one_whole_cycle(tmp_path, counted_sgd_steps):
    """A search that overran the whole budget (its first step always runs) leaves the derived
    network one epoch, the one that always runs: the whole cosine cycle, and nothing more."""
    from morphisms import Network
    from nash.darts import GENOTYPES
    run, final, details, data = derived_run(tmp_path, Budget.from_now(-1.0))
    assert details["epochs"] == 1 and counted_sgd_steps[0] == len(data.train_y) // 32
    # the network one unbudgeted epoch of a whole cycle trains, bit for bit
    net, _ = train_genotype(GENOTYPES["DARTS_V2"], data, epochs=1, channels=4, layers=2, batch_size=32)
    saved = Network.load(run.path / "best").state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
