"""morphisms: networks as graphs with weights, and transforms that keep their function.

    from morphisms import start_net, deepen, widen, add_skip, insert_bn, random_morphisms
"""
from .deepen import deepen
from .errors import GraphError, MorphismError, MorphismsError
from .graph import add_layer, infer_shapes, inputs_of, new_graph, validate
from .insert_bn import insert_bn
from .layers import LAYERS, LayerKind, register_layer
from .moves import MORPHISMS, Move, moves, random_morphisms
from .network import Network
from .skip import add_skip
from .start import start_net
from .widen import widen

__all__ = [
    "GraphError", "LAYERS", "LayerKind", "MORPHISMS", "Move", "MorphismError", "MorphismsError", "Network", "add_layer", "add_skip",
    "deepen", "infer_shapes", "inputs_of", "insert_bn", "moves", "new_graph", "random_morphisms", "register_layer",
    "start_net", "validate", "widen",
]
