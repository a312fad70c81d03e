"""The CUDA path: skipped where no GPU is present (conftest.py), never failing without one.
experiments/device_check.sh runs these on a GPU machine.

Tolerances: fp32 comparisons turn TF32 off (cuDNN would otherwise round convolution inputs to 10
mantissa bits); under bf16 autocast (8 mantissa bits, rounding in every layer) a child's output
agrees with its parent's to 5e-2 of the output's scale.
"""
from __future__ import annotations

import copy

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
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max()) / max(float(b.float().abs().max()), 1e-12)


def test_tiny_climb_on_cuda(tmp_path):
    cfg = ClimbConfig(data="digits", subset=600, device="cuda", widths=(16, 32), n_neigh=3, n_nm=2, steps=1,
                      schedule="paper", epoch_neigh=2, pretrain_epochs=4, epoch_final=2)
    res = run_searcher("nash", cfg, out=tmp_path / "run")
    assert res["steps"] == 1 and res["final"]["test_acc"] > 0.3  # chance is 0.1
    best = Network.load(tmp_path / "run" / "best", map_location="cpu")
    assert best.num_params() == res["final"]["params"]


def test_tiny_darts_search_on_cuda(tmp_path):
    cfg = DartsConfig(data="digits", subset=600, device="cuda", epochs=2, channels=4, layers=2, batch_size=32,
                      train_epochs=15, train_channels=8, train_layers=2, train_batch_size=64)
    res = run_searcher("darts", cfg, out=tmp_path / "run")
    assert res["final"]["test_acc"] > 0.2 and (tmp_path / "run" / "genotype.json").is_file()


def test_fast_supernet_equals_plain_on_cuda(no_tf32):
    torch.manual_seed(0)
    net = Supernet(4, 10, 5, 3).to(CUDA).train()
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
        child = child.to(CUDA).eval()
        assert moves
        with torch.no_grad():
            assert rel(child(x), parent(x)) < 1e-4
            with autocast_for(CUDA):
                assert rel(child(x), parent(x)) < 5e-2


def test_networks_move_between_devices(tmp_path, no_tf32):
    torch.manual_seed(0)
    net = start_net(3, 10, (8, 16), (16, 16)).to(CUDA)
    x = torch.randn(8, 3, 16, 16)
    # a training step on the GPU, so the saved state is not the init
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    F.cross_entropy(net(x.to(CUDA)), torch.zeros(8, dtype=torch.long, device=CUDA)).backward()
    opt.step()
    net.eval()
    net.save(tmp_path / "net")
    on_cpu = Network.load(tmp_path / "net", map_location="cpu").eval()
    back = Network.load(tmp_path / "net", map_location="cuda").eval()
    with torch.no_grad():
        expect = net(x.to(CUDA)).cpu()
        assert rel(on_cpu(x), expect) < 1e-4
        assert torch.equal(back(x.to(CUDA)).cpu(), expect)
