"""The CUDA path: skipped where no GPU is present (conftest.py), never failing without one.
experiments/device_check.sh runs this file on a GPU machine (`pytest tests/test_cuda.py`).

Every test checks that its work ran on the GPU (where its tensors live, and memory torch
allocated there), not only that it finished. What only a GPU can show of the CUDA fixes is here
too: no host sync per training step (counted with torch.cuda.set_sync_debug_mode, the count must
not grow with the number of steps), NASP's mask and PT's rows without a host round trip, the
CUDA generator left alone by the seeded inits, bf16 or the fp16 fallback, a loaded network on
the GPU, Ray's GPU tasks each in a fresh worker. tests/test_devices.py holds the CPU halves.

Tolerances: fp32 comparisons turn TF32 off (cuDNN would otherwise round convolution inputs to 10
mantissa bits); under bf16 autocast (8 mantissa bits, rounding in every layer) a child's output
agrees with its parent's to 5e-2 of the output's scale.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from morphisms import Network, random_morphisms, start_net
from nash.darts.architect import FirstOrder
from nash.darts.plain import plain_arch_grads, plain_forward
from nash.darts.supernet import Supernet
from nash.search import ClimbConfig, DartsConfig, run_searcher
from nash.train import autocast_for

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")


@pytest.fixture
def gpu_memory():
    """Peak memory torch allocates on the GPU during the test, in bytes (a callable): above 0
    only when the work ran there."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    return lambda: torch.cuda.max_memory_allocated() - base


def on_cuda(module) -> bool:
    tensors = [*module.parameters(), *module.buffers()]
    return bool(tensors) and all(t.device.type == "cuda" for t in tensors)


def host_syncs(fn) -> int:
    """How many synchronizing CUDA operations (a copy to the host, .item(), a synchronize) fn
    makes: torch.cuda.set_sync_debug_mode's warnings, counted."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in seen)


@pytest.fixture
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max()) / max(float(b.float().abs().max()), 1e-12)


def test_tiny_climb_on_cuda(tmp_path, gpu_memory):
    cfg = ClimbConfig(data="digits", subset=600, device="cuda", widths=(16, 32), n_neigh=3, n_nm=2, steps=1,
                      schedule="paper", epoch_neigh=2, pretrain_epochs=4, epoch_final=2)
    res = run_searcher("nash", cfg, out=tmp_path / "run")
    assert res["steps"] == 1 and res["final"]["test_acc"] > 0.3  # chance is 0.1
    # the data (480 images of 1x8x8 floats: 123 kB) and the networks lived on the GPU
    assert gpu_memory() > 100_000
    best = Network.load(tmp_path / "run" / "best", map_location="cpu")
    assert best.num_params() == res["final"]["params"]


def test_tiny_darts_search_on_cuda(tmp_path, gpu_memory):
    cfg = DartsConfig(data="digits", subset=600, device="cuda", epochs=2, channels=4, layers=2, batch_size=32,
                      train_epochs=15, train_channels=8, train_layers=2, train_batch_size=64)
    res = run_searcher("darts", cfg, out=tmp_path / "run")
    assert res["final"]["test_acc"] > 0.2 and (tmp_path / "run" / "genotype.json").is_file()
    assert gpu_memory() > 100_000  # the data and the supernet lived on the GPU


def test_fast_supernet_equals_plain_on_cuda(no_tf32):
    torch.manual_seed(0)
    net = Supernet(4, 10, 5, 3).to(CUDA).train()
    assert on_cuda(net)
    ref = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    g = torch.Generator(device=CUDA).manual_seed(0)
    x = torch.randn(16, 3, 16, 16, generator=g, device=CUDA)
    y = torch.randint(0, 10, (16,), generator=g, device=CUDA)
    assert rel(net(x), plain_forward(ref, x)) < 1e-5
    opt = torch.optim.SGD(net.weights(), lr=0.025)
    grads, _ = FirstOrder(net).arch_grads(net, (x, y), (x, y), opt, 0.025)
    expect = plain_arch_grads(ref, (x, y), (x, y), torch.optim.SGD(ref.weights(), lr=0.025), 0.025, order=1)
    for a, b in zip(grads, expect):
        assert rel(a, b) < 1e-4


def test_morphisms_preserve_the_function_on_cuda(no_tf32):
    torch.manual_seed(0)
    parent = start_net(3, 10, (16, 32), (16, 16)).to(CUDA).eval()
    x = torch.randn(32, 3, 16, 16, device=CUDA)
    for seed in range(3):
        child, moves = random_morphisms(parent, 5, rng=seed, calibrate=x)
        assert moves and on_cuda(child)  # made where its parent is, new layers included
        child = child.eval()
        with torch.no_grad():
            assert rel(child(x), parent(x)) < 1e-4
            with autocast_for(CUDA):
                assert rel(child(x), parent(x)) < 5e-2


def test_networks_move_between_devices(tmp_path, no_tf32):
    torch.manual_seed(0)
    net = start_net(3, 10, (8, 16), (16, 16)).to(CUDA)
    assert on_cuda(net)
    x = torch.randn(8, 3, 16, 16)
    # a training step on the GPU, so the saved state is not the init
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    F.cross_entropy(net(x.to(CUDA)), torch.zeros(8, dtype=torch.long, device=CUDA)).backward()
    opt.step()
    net.eval()
    net.save(tmp_path / "net")
    on_cpu = Network.load(tmp_path / "net", map_location="cpu").eval()
    back = Network.load(tmp_path / "net", map_location="cuda").eval()
    assert all(t.device.type == "cpu" for t in on_cpu.state_dict().values())
    assert on_cuda(back)  # the network itself, not just copies of its weights, lives on the GPU
    with torch.no_grad():
        expect = net(x.to(CUDA)).cpu()
        assert rel(on_cpu(x), expect) < 1e-4
        # the same weights, kernels and inputs on the same GPU: the same output, bit for bit
        assert torch.equal(back(x.to(CUDA)).cpu(), expect)


# ------------------------------------------------------------------ no host sync per step


def digits_on_cuda(n=None):
    from nash.data import load_dataset
    d = load_dataset("digits", subset=n, seed=0, device="cuda")
    assert d.train_x.is_cuda and d.val_x.is_cuda
    return d


def test_draws_happen_on_the_gpu_without_a_host_sync():
    from nash.data import Augment, iterate_batches, make_generator, mixup
    d = digits_on_cuda()
    g = make_generator(0, d.train_x.device)
    assert g.device.type == "cuda"
    aug = Augment(pad=2, flip=True, cutout=3)

    def epoch(n):
        def run():
            for xb, yb in iterate_batches(d.train_x[:n], d.train_y[:n], 64, generator=g, aug=aug, drop_last=True):
                xm, ya, yb2, lam = mixup(xb, yb, 0.4, g)
                assert xm.is_cuda and isinstance(lam, torch.Tensor) and lam.is_cuda
        return run

    epoch(128)()  # first-call setup outside the count
    assert host_syncs(epoch(128)) == host_syncs(epoch(1024))  # 2 batches or 16: none per batch


def test_a_training_step_makes_no_host_sync(gpu_memory):
    """sgdr_train syncs once per epoch (the non-finite check) and at the end: the count is the
    same for 2 steps an epoch as for 8."""
    from nash.data import Augment
    from nash.train import sgdr_train
    d = digits_on_cuda()

    def run(n_images):
        torch.manual_seed(0)
        net = start_net(1, 10, (8, 16), d.image_size)
        x, y = d.train_x[:n_images], d.train_y[:n_images]
        return lambda: sgdr_train(net, x, y, 2, batch_size=32, aug=Augment(pad=1), mixup_alpha=0.2, grad_clip=5.0)

    run(64)()  # cuDNN and the allocator warm up outside the count
    assert host_syncs(run(64)) == host_syncs(run(256))
    assert gpu_memory() > 0


def test_a_darts_search_step_makes_no_host_sync():
    """First-order DARTS with RS smoothing (noise from the smoother's GPU generator), PT's
    decided rows and NASP's mask: no sync per step. NASP's weight step runs only the chosen
    ops, which the host must know: exactly one sync per step there."""
    from nash.darts.architect import Proximal
    from nash.darts.search import train_epoch
    from nash.darts.smoothing import RandomSmoothing
    from nash.data import Augment, make_generator
    d = digits_on_cuda()
    cfg = {"batch_size": 16, "grad_clip": 5.0}

    def epoch_fn(steps, strategy_cls, smooth):
        torch.manual_seed(0)
        net = Supernet(2, 10, 3, 1, steps=2, multiplier=2).to(CUDA)
        strategy = strategy_cls(net)
        net.fix_edge("normal", 0, torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]))  # as PT decides one
        assert net.fixed_edges("normal")[0].is_cuda
        w_opt = torch.optim.SGD(net.weights(), lr=0.025, momentum=0.9)
        n = 16 * steps
        w_half, a_half = (d.train_x[:n], d.train_y[:n]), (d.train_x[n:2 * n], d.train_y[n:2 * n])
        smoother = RandomSmoothing(seed=0, device=CUDA) if smooth else None
        perturb = (lambda s, ws, b: smoother.perturb(s, ws, b, 0.3)) if smooth else None
        g = make_generator(0, CUDA)
        return lambda: train_epoch(net, strategy, w_opt, w_half, a_half, cfg, 0.025, g, Augment(pad=1),
                                   perturb=perturb)

    epoch_fn(2, FirstOrder, True)()  # warm-ups: kernels, and NASP's index tables copied to the GPU once
    epoch_fn(2, Proximal, False)()
    assert host_syncs(epoch_fn(2, FirstOrder, True)) == host_syncs(epoch_fn(6, FirstOrder, True))
    nasp_2, nasp_6 = host_syncs(epoch_fn(2, Proximal, False)), host_syncs(epoch_fn(6, Proximal, False))
    assert nasp_6 - nasp_2 == 4  # one per step: the weight step's zero pattern


def test_nasp_mask_is_made_on_the_gpu_as_on_the_host():
    from nash.darts.ops import DARTS_SPACE, NB201_SPACE
    from nash.darts.selection import argmax_mask
    g = torch.Generator().manual_seed(0)
    for space in (DARTS_SPACE, NB201_SPACE):
        w = torch.randint(0, 3, (space.num_edges, len(space.ops)), generator=g).float() / 2  # ties
        argmax_mask(w.to(CUDA), space)  # its index tables go to the GPU once
        masks = []
        assert host_syncs(lambda: masks.append(argmax_mask(w.to(CUDA), space))) <= 1  # the .to(CUDA) copy
        assert masks[0].is_cuda and torch.equal(masks[0].cpu(), argmax_mask(w, space))


# ------------------------------------------------------------------ seeds, devices, precision


def test_seeded_inits_leave_the_cuda_generator_alone():
    from nash.darts.search import build, search_config
    from nash.search.kit import make_start_net
    d = digits_on_cuda(200)
    torch.cuda.manual_seed(1234)
    state = torch.cuda.get_rng_state()
    make_start_net(ClimbConfig(widths=(4, 8), seed=3), d)
    build(search_config({"channels": 2, "layers": 3, "steps": 1, "multiplier": 1}), d)
    assert torch.equal(torch.cuda.get_rng_state(), state)


def test_a_gpu_index_past_the_last_is_one_user_error():
    from nash.errors import NashError
    from nash.search.contract import pick_device
    count = torch.cuda.device_count()
    assert pick_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(NashError, match=f"{count} GPU"):
        pick_device(f"cuda:{count}")


def test_bf16_where_the_gpu_has_it_and_fp16_with_loss_scaling_elsewhere(monkeypatch, gpu_memory):
    import nash.train as train
    native = torch.cuda.get_device_capability(CUDA)[0] >= 8
    assert train.precision_for(CUDA) == (torch.bfloat16 if native else torch.float16)
    d = digits_on_cuda(400)
    monkeypatch.setattr(train, "precision_for", lambda device: torch.float16)  # a V100's or T4's path
    torch.manual_seed(0)
    net = start_net(1, 10, (8, 16), d.image_size)
    res = train.sgdr_train(net, d.train_x, d.train_y, 3, batch_size=64, grad_clip=5.0)
    assert res.failed is None and res.steps == 3 * (len(d.train_x) // 64) and on_cuda(net)
    acc, loss = train.evaluate(net, d.val_x, d.val_y)
    assert 0 <= acc <= 1 and loss == loss  # finite, not NaN
    assert gpu_memory() > 0


def test_ray_gpu_tasks_each_get_a_fresh_worker_on_their_gpu():
    """A run on CUDA: each task gets its GPU in a worker process of its own (max_calls=1), so
    its CUDA context is made for that GPU. A run on the CPU on the same machine: its tasks ask for
    no GPU and never touch CUDA."""
    pytest.importorskip("ray")
    from nash.search.jobs import TrainJob, TrainSettings
    from nash.search.ray_executor import RayExecutor, _data_on
    d = digits_on_cuda(300)
    settings = TrainSettings(0.05, 0.0, 64, d.augment)

    def runner(job, *args):  # a nested function: Ray ships it by value
        import os

        import torch

        from nash.search.ray_executor import run_job
        out = run_job(job, *args)
        used = torch.cuda.is_initialized()
        out.extra = {"pid": os.getpid(), "cuda": used, "peak": torch.cuda.max_memory_allocated() if used else 0,
                     "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
        return out

    torch.manual_seed(0)
    net = start_net(1, 10, (4, 8), d.image_size)
    # one GPU per candidate: on a one-GPU machine the two tasks run one after the other, and a
    # reused worker would show as one pid
    ex = RayExecutor(gpus_per_candidate=1, device="cuda")
    try:
        ex.runner = runner
        gpu = ex.map([TrainJob(k, copy.deepcopy(net).to(CUDA), 1, (0.0, 1.0), seed=k) for k in range(2)],
                     (d, settings))
        cpu = ex.map([TrainJob(0, copy.deepcopy(net), 1, (0.0, 1.0), seed=0)],
                     (_data_on(d, torch.device("cpu")), settings))
    finally:
        ex.close()
    assert all(o.ok and on_cuda(o.net) for o in gpu)  # back on the device the job's net was on
    assert all(o.extra["cuda"] and o.extra["peak"] > 0 for o in gpu)  # trained on a GPU
    assert all(o.extra["visible"] and "," not in o.extra["visible"] for o in gpu)  # just its own GPU
    assert len({o.extra["pid"] for o in gpu}) == 2  # a fresh worker each
    assert cpu[0].ok and not cpu[0].extra["cuda"] and next(iter(cpu[0].net.parameters())).device.type == "cpu"
