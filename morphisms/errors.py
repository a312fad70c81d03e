"""The two errors of the morphism engine.

`GraphError` says a graph is not a valid network (cycle, dangling node, shape mismatch, unknown
layer kind); `MorphismError` says a transform was asked for something it cannot do (unknown
node, incompatible shapes, a widen factor <= 1). Both carry one line a user can act on.
"""


class GraphError(ValueError):
    """A graph that does not describe a runnable network."""


class MorphismError(ValueError):
    """A morphism that cannot be applied where it was asked for."""
