"""nash.darts: differentiable architecture search (DARTS family) in a cell space.

    from nash.darts import Supernet, run_search, Genotype, GENOTYPES, lower
    net = lower(GENOTYPES["DARTS_V2"], channels=36, layers=20)   # a morphisms.Network
"""
from .architect import STRATEGIES, ArchStrategy, FirstOrder, SecondOrder, strategy_for
from .genotype import DARTS_V1, DARTS_V2, GENOTYPES, Genotype, GenotypeError, get_genotype
from .lower import lower, reference_params
from .ops import DARTS_SPACE, OPS, SPACES, SearchSpace, register_op
from .search import DEFAULTS, SearchConfigError, run_search, search_config, train_genotype
from .selection import SELECTORS, ArgmaxSelector, Selector, argmax_cell, argmax_genotype
from .supernet import MixedOp, Supernet

__all__ = [
    "ArchStrategy", "ArgmaxSelector", "DARTS_SPACE", "DARTS_V1", "DARTS_V2", "FirstOrder", "GENOTYPES", "Genotype",
    "GenotypeError", "MixedOp", "OPS", "SELECTORS", "SPACES", "STRATEGIES", "SearchSpace", "SecondOrder", "Selector",
    "Supernet", "DEFAULTS", "SearchConfigError", "run_search", "search_config", "train_genotype", "argmax_cell", "argmax_genotype", "get_genotype", "lower", "reference_params", "register_op", "strategy_for",
]
