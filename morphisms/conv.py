"""Conv2d: torch's nn.Conv2d, except that a strided 1x1 convolution without padding runs as the
unstrided 1x1 convolution of the subsampled input (x[:, :, ::s, ::s]): the same function.

Why: on x86 CPUs with AVX2 but no AVX-512 (an AMD EPYC here), oneDNN 3.12 (torch 2.13's CPU
build) corrupts the heap in the weight gradient of a 1x1 stride-2 convolution on a channels_last
input when it runs on one thread ("corrupted double-linked list", then an abort; 3 of 8 small
shapes within 30 steps). nash trains in channels_last and runs one thread per Ray worker and in
the tests, and such convolutions are everywhere: DARTS's FactorizedReduce, ResNet downsample
shortcuts. The unstrided 1x1 kernel is not affected. Parameters, state-dict keys and
`isinstance(m, nn.Conv2d)` are those of nn.Conv2d, so saved networks and checkpoints load as
before. tests/test_conv.py runs the crashing case in a fresh process.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class Conv2d(nn.Conv2d):
    def _conv_forward(self, input, weight, bias):
        if (self.kernel_size == (1, 1) and self.stride != (1, 1) and self.padding in ((0, 0), "valid")
                and self.padding_mode == "zeros"):
            sh, sw = self.stride
            return F.conv2d(input[:, :, ::sh, ::sw], weight, bias, 1, 0, 1, self.groups)
        return super()._conv_forward(input, weight, bias)
