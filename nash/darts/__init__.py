"""nash.darts: differentiable architecture search (DARTS family) in a cell space.

    from nash.darts import Supernet, run_search, Genotype, GENOTYPES, lower
    net = lower(GENOTYPES["DARTS_V2"], channels=36, layers=20)   # a morphisms.Network

Plug-ins, each picked by name: strategies (`strategy_for`: darts 1st/2nd order, milenas, nasp),
smoothers (`SMOOTHERS`: none, rs, adv), selectors (`SELECTORS`: argmax, pt), spaces (`SPACES`:
darts, nb201).
"""
from .architect import (METHODS, STRATEGIES, ArchStrategy, FirstOrder, MixedLevel, Proximal, SecondOrder,
                        strategy_for)
from .diagnostics import alpha_hessian_eigenvalue, dominant_eigenvalue, normal_skips
from .genotype import (DARTS_V1, DARTS_V2, GENOTYPES, Genotype, GenotypeError, NB201Genotype, genotype_space,
                       get_genotype)
from .lower import lower, lower_nb201, reference_params
from .ops import DARTS_SPACE, NB201_SPACE, OPS, SPACES, SearchSpace, register_op
from .config import SearchConfigError, SearchSettings
from .derived import DerivedNet, derived_size, train_genotype
from .search import DEFAULTS, run_search, search_config, search_step
from .selection import (SELECTORS, ArgmaxSelector, PerturbationSelector, Selector, argmax_cell, argmax_genotype,
                        argmax_mask, supernet_genotype)
from .smoothing import SMOOTHERS, AdversarialSmoothing, NoSmoothing, RandomSmoothing, Smoother, clip_rows, epsilon_at
from .supernet import CellSupernet, MixedOp, NB201Supernet, Supernet

__all__ = [
    "AdversarialSmoothing", "ArchStrategy", "ArgmaxSelector", "CellSupernet", "DARTS_SPACE", "DARTS_V1", "DARTS_V2",
    "DEFAULTS", "DerivedNet", "FirstOrder", "GENOTYPES", "Genotype", "GenotypeError", "METHODS", "MixedLevel",
    "MixedOp", "NB201Genotype", "NB201Supernet", "NB201_SPACE", "NoSmoothing", "OPS", "PerturbationSelector",
    "Proximal", "RandomSmoothing", "SELECTORS", "SMOOTHERS", "SPACES", "STRATEGIES", "SearchConfigError",
    "SearchSettings", "SearchSpace", "SecondOrder", "Selector", "Smoother", "Supernet", "alpha_hessian_eigenvalue",
    "argmax_cell", "argmax_genotype", "argmax_mask", "clip_rows", "derived_size", "dominant_eigenvalue", "epsilon_at",
    "genotype_space", "get_genotype", "lower", "lower_nb201", "normal_skips", "reference_params", "register_op",
    "run_search", "search_config", "search_step", "strategy_for", "supernet_genotype", "train_genotype",
]
