"""morphisms.conv.Conv2d: a strided 1x1 conv computed as the 1x1 conv of the subsampled input."""
import itertools
import subprocess
import sys
import textwrap

import pytest
import torch

from morphisms.conv import Conv2d


@pytest.mark.parametrize("c_in,c_out,groups,size,stride", [(3, 4, 1, (7, 5), 2), (4, 6, 2, (8, 8), 2),
                                                           (2, 2, 1, (9, 4), (3, 2)), (5, 1, 1, (1, 1), 2)])
def test_strided_pointwise_conv_is_nn_conv(c_in, c_out, groups, size, stride):
    # float64 and two different kernels: equal up to rounding (sums of c_in / groups terms)
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(c_in, c_out, 1, stride, groups=groups, bias=True).double()
    ours = Conv2d(c_in, c_out, 1, stride, groups=groups, bias=True).double()
    ours.load_state_dict(ref.state_dict())
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, c_in, *size, dtype=torch.float64).contiguous(memory_format=layout)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = ref(xa), ours(xb)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(a)
        a.backward(g)
        b.backward(g)
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
        ref.zero_grad(), ours.zero_grad()


def test_other_convs_are_untouched():
    # not the special case: the very kernel nn.Conv2d runs, so bit for bit
    torch.manual_seed(1)
    for k, s, p in [(3, 2, 1), (1, 1, 0), (1, 2, 1)]:
        ref = torch.nn.Conv2d(3, 4, k, s, p)
        ours = Conv2d(3, 4, k, s, p)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, 3, 6, 6)
        assert torch.equal(ours(x), ref(x))


def test_strided_pointwise_training_survives_one_thread_channels_last():
    """The case that corrupts the heap with nn.Conv2d on AVX2-only CPUs (oneDNN 3.12, one
    thread, channels_last, the weight gradient; see morphisms/conv.py): run it in a fresh
    process, where glibc's MALLOC_CHECK_=3 aborts on the first corruption."""
    code = textwrap.dedent("""
        import torch
        from morphisms.conv import Conv2d
        torch.set_num_threads(1)
        for c_in, c_out, h in [(2, 1, 8), (4, 4, 8), (8, 8, 8), (3, 5, 7)]:
            conv = Conv2d(c_in, c_out, 1, 2, bias=False).to(memory_format=torch.channels_last)
            for _ in range(30):
                x = torch.randn(32, c_in, h, h).contiguous(memory_format=torch.channels_last)
                out = conv(x)
                w, = torch.autograd.grad(out, (conv.weight,), torch.randn_like(out))
        print("ok")
    """)
    env = {"MALLOC_CHECK_": "3", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
