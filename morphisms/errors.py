"""The errors of the morphism engine, under one base, `MorphismsError`.

`GraphError` says a graph is not a valid network (cycle, dangling node, shape mismatch, unknown
layer kind); `MorphismError` says a transform was asked for something it cannot do (unknown
node, incompatible shapes, a widen factor <= 1). Both carry one line a user can act on.
"""


class MorphismsError(ValueError):
    """Base of every error the engine raises on bad input (catch this one)."""


class GraphError(MorphismsError):
    """A graph that does not describe a runnable network."""


class MorphismError(MorphismsError):
    """A morphism that cannot be applied where it was asked for."""
