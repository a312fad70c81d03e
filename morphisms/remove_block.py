"""remove_block: drop a conv and the BN/activation chain behind it, where that keeps shapes
(LEMONADE's inverse of deepen).

A block is a conv whose output has its input's shape (same channels, same map: a stride-1,
same-padding conv with as many filters as input channels) and the longest run of BN and
activation nodes that each read only the previous one and are its only reader. Its readers
then read the block's input instead. Exact where the block was the identity (one that
`deepen` inserted and nothing trained since); otherwise the function moves and needs recovery.
"""
from __future__ import annotations

from .approximate import Shrink
from .edit import Edit
from .graph import inputs_of, replace_input
from .network import Network

# per-channel maps that ride along with the conv before them in a Conv-BN-activation block
BLOCK_FOLLOWERS = ("bn", "relu", "relu6", "gelu", "silu", "hardswish")


def block_plan(e: Edit, conv: str):
    """(the block's nodes from `conv` on, its input, its readers); fails where no block can go."""
    e.need_node(conv, "conv")
    if e.kind(conv) != "conv":
        e.fail(f"it is a {e.kind(conv)}; a block starts at a conv")
    src = inputs_of(e.g, conv)[0]
    if e.shapes[src] != e.shapes[conv]:
        e.fail(f"it maps {e.shapes[src]} to {e.shapes[conv]}; only a block that keeps shapes can be removed")
    block = [conv]
    while True:
        readers = list(e.g.successors(block[-1]))
        if len(readers) != 1 or e.kind(readers[0]) not in BLOCK_FOLLOWERS:
            break
        block.append(readers[0])
    readers = sorted(e.g.successors(block[-1]))
    twice = [r for r in readers if e.g.has_edge(src, r)]
    if twice:
        # a residual add of the block and its own input: without the block it would read one
        # tensor twice, which the graph (one edge per pair) cannot say, and the merge would change
        e.fail(f"{twice} already read{'s' if len(twice) == 1 else ''} the block's input {src!r}; "
               "removing the block would merge a tensor with itself")
    return block, src, readers


def remove_block(net: Network, conv: str, seed: int = 0):
    """(child, record): `net` without the block that starts at conv `conv`, its readers rewired
    to the block's input. `seed` is accepted for a uniform signature: nothing is drawn."""
    e = Edit(net, f"remove_block at {conv!r}", seed)
    block, src, readers = block_plan(e, conv)
    for r in readers:
        replace_input(e.g, r, block[-1], src)
    for n in block:
        e.g.remove_node(n)
        del e.modules[n]
    e.refresh_shapes()
    return e.finish(), Shrink.of("remove_block", conv=conv, did={"removed": block, "input": src, "rewired": readers})
