"""NASH's start network: Conv-BN-ReLU blocks with max-pooling between them, then a classifier."""
from __future__ import annotations

from .graph import add_layer, new_graph
from .network import Network


def start_net(in_channels: int, num_classes: int, widths=(64, 128, 256), input_size=32) -> Network:
    """conv-bn-relu [maxpool conv-bn-relu]... global_pool linear (NASH's start net).

    `input_size` (int or (H, W)) is needed for shape inference; a maxpool is left out where
    the map is already smaller than 2x2, so no input size is too small."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    g = new_graph((in_channels, h, w))
    x = "input"
    for i, width in enumerate(widths):
        if i and min(h, w) >= 2:
            x = add_layer(g, "maxpool", [x], kernel_size=2)
            h, w = h // 2, w // 2
        x = add_layer(g, "conv", [x], out_channels=int(width), kernel_size=3)
        x = add_layer(g, "bn", [x])
        x = add_layer(g, "relu", [x])
    x = add_layer(g, "global_pool", [x])
    x = add_layer(g, "linear", [x], out_features=int(num_classes))
    add_layer(g, "output", [x], name="output")
    return Network(g)
