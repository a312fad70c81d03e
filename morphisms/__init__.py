"""morphisms: networks as graphs with weights, and transforms that keep their function.

    from morphisms import start_net, deepen, widen, add_skip, insert_bn, random_morphisms
    from morphisms import from_module, to_source   # a user's nn.Module in, plain PyTorch source out
"""
from .deepen import deepen
from .errors import GraphError, MorphismError, MorphismsError
from .from_module import from_module
from .graph import add_layer, infer_shapes, inputs_of, new_graph, validate
from .head import new_head, reinitialized
from .insert_bn import insert_bn
from .layers import LAYERS, LayerKind, register_layer
from .moves import CAPACITY, MORPHISMS, Move, capacity_moves, moves, random_morphisms
from .network import Network
from .skip import add_skip
from .start import start_net
from .to_source import to_source, write_source
from .widen import widen

__all__ = [
    "CAPACITY", "GraphError", "LAYERS", "LayerKind", "MORPHISMS", "Move", "MorphismError", "MorphismsError", "Network", "add_layer", "add_skip",
    "capacity_moves", "deepen", "from_module", "infer_shapes", "inputs_of", "insert_bn", "moves", "new_graph", "new_head", "random_morphisms", "register_layer", "reinitialized",
    "start_net", "to_source", "validate", "widen", "write_source",
]

# the approximate family (shrinking moves), apart from the exact MORPHISMS: see approximate.py
from .approximate import SHRINK_KINDS, Shrink, approximation_error
from .prune import prune_filters
from .remove_block import remove_block
from .separable import separable
from .shrink import SHRINKS, random_shrink, shrinks

__all__ += [
    "SHRINKS", "SHRINK_KINDS", "Shrink", "approximation_error", "prune_filters", "random_shrink", "remove_block",
    "separable", "shrinks",
]

# what a network costs: counted (params, MACs) and measured (latency, cached per architecture)
from .cost import LatencyCache, architecture_fingerprint, costs, measure_latency

__all__ += ["LatencyCache", "architecture_fingerprint", "costs", "measure_latency"]
