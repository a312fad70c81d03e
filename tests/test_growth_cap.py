"""random_morphisms' cap on growth (max_macs): children stay within it and keep the function."""
import torch

from morphisms import random_morphisms, start_net


def test_max_macs_caps_every_child_and_keeps_the_function():
    net = start_net(1, 10, (16, 32, 64), (28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    uncapped = [random_morphisms(net, 5, rng=s)[0].macs() for s in range(6)]
    assert max(uncapped) > 2 * net.macs()  # without the cap, 5 morphisms often more than double the cost
    for s in range(6):
        child, applied = random_morphisms(net, 5, rng=s, max_macs=2 * net.macs())
        assert child.macs() <= 2 * net.macs()
        assert len(applied) == 5  # cheap moves (BN inserts, skips) still fit under the cap: not cut short
        assert torch.allclose(child.eval()(x), net(x), atol=1e-5)
    # a cap nothing fits under leaves the parent as it is
    child, applied = random_morphisms(net, 3, rng=0, max_macs=net.macs() - 1)
    assert applied == [] and child.macs() == net.macs()
