import os

# One thread per process (this one and every nash process a test starts, which inherit the
# variable): the test nets are tiny, and two processes of two OpenMP threads each on a 2-core
# machine can run 10x slower than one thread each, which would turn timing slack into noise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from morphisms import start_net
from morphisms.layers import WeightedAdd


def scramble(net, seed=0):
    """Give a fresh net non-trivial BN statistics, affine params and merge weights, so that
    preservation tests do not pass merely because every BN starts as (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            elif isinstance(m, WeightedAdd):
                m.lam.copy_(torch.rand((), generator=g))
    return net


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return scramble(start_net(3, 10, widths=(4, 8, 8), input_size=16)).eval()


def random_start(rng: random.Random):
    shape = rng.choice([(3, 32, 32), (1, 8, 8), (2, 5, 7), (1, 1, 1)])
    blocks = rng.randint(1, 3)
    widths = tuple(rng.choice([2, 3, 4, 6, 8]) for _ in range(blocks))
    torch.manual_seed(rng.randrange(2**31))
    net = start_net(shape[0], rng.randint(2, 10), widths=widths, input_size=shape[1:])
    return scramble(net, rng.randrange(2**31)).eval(), shape


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped where none is present "
                                       "(experiments/device_check.sh runs them on one)")
    config.addinivalue_line("markers", "cluster: starts a two-node Ray cluster on this machine (skipped "
                                       "without Ray); deselect with -m 'not cluster'")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
