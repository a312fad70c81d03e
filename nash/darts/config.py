"""The DARTS-family search's settings: one dataclass, the one source of their defaults.

    settings = SearchSettings.of({"method": "darts", "order": 2, "epochs": 50})

`run_search` takes these settings, a dict of them (keys that are not settings are ignored: a
run's config also holds the data set, the budget and so on) or any dataclass that has them;
the darts searcher's `nash.search.DartsConfig` inherits these fields, so the searcher, the CLI
options generated from it (each field's `metadata["help"]`) and the search share one default
and one check per setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from nash.errors import OptionError

from .architect import METHODS, strategy_for
from .ops import SPACES
from .selection import SELECTORS
from .smoothing import EPSILON_START, SMOOTHERS

# cells of the search network when `layers` is None: DARTS 8 cells; NAS-Bench-201 5 per stage
SPACE_LAYERS = {"darts": 8, "nb201": 5}


class SearchConfigError(OptionError):
    """A search setting that cannot be used (one line naming it)."""


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class SearchSettings:
    """How a DARTS-family search runs. Defaults are the reference's: weights by SGD, momentum
    0.9, wd 3e-4, gradient norm clipped to 5, lr a cosine from 0.025 to 0.001 over the epochs;
    alphas by Adam 3e-4, betas (0.5, 0.999), wd 1e-3."""
    space: str = _setting("darts", f"Cell search space: {', '.join(SPACES)} (NAS-Bench-201).")
    method: str = _setting("darts", f"How the alphas learn: {', '.join(METHODS)} (DARTS, MiLeNAS mixed-level, "
                                    f"NASP proximal).")
    order: int = _setting(1, "DARTS first (1) or second (2) order architecture gradient (method darts only).")
    lam: float = _setting(1.0, "MiLeNAS: weight of the validation loss in the alphas' step.")
    smooth: str = _setting("none", "SDARTS smoothing of the weight step: none, rs (random) or adv (adversarial).")
    epsilon: float = _setting(0.3, f"SDARTS perturbation size, ramped from {EPSILON_START} over the epochs.")
    selector: str = _setting("argmax", "How the genotype is derived: argmax of the alphas, or pt (perturbation).")
    pt_tune_epochs: int = _setting(5, "PT: fine-tuning epochs between decisions (0: none).")
    pt_share: float = _setting(0.5, "PT with a budget: the share of the search's time kept for PT.")
    track_hessian: bool = _setting(False, "Record the dominant eigenvalue of the alphas' Hessian every epoch.")
    epochs: int = _setting(50, "Search epochs (reference: 50); a resumed search may change it.")
    channels: int = _setting(16, "Supernet initial channels.")
    layers: int | None = _setting(None, f"Supernet cells (default: the space's, "
                                        f"{', '.join(f'{n} for {s}' for s, n in SPACE_LAYERS.items())}).")
    steps: int = _setting(4, "darts space: intermediate nodes per cell.")
    multiplier: int = _setting(4, "darts space: the last nodes concatenated into a cell's output.")
    batch_size: int = _setting(64, "Search batch size (of each half of the training split).")
    seed: int = _setting(0, "Seed of the initialisation, the batch order and every random choice.")
    w_lr: float = _setting(0.025, "Weights' learning rate at the start of the cosine.")
    w_lr_min: float = _setting(0.001, "Weights' learning rate at the end of the cosine.")
    momentum: float = _setting(0.9, "Weights' SGD momentum.")
    wd: float = _setting(3e-4, "Weights' weight decay.")
    grad_clip: float = _setting(5.0, "Gradient norm clip of the weights' step (0: none).")
    arch_lr: float = _setting(3e-4, "Alphas' Adam learning rate.")
    arch_wd: float = _setting(1e-3, "Alphas' weight decay.")
    augment: bool = _setting(True, "Augment the search's batches as the data set does.")

    # What a resumed search may change: how long it runs. Everything else must match its
    # checkpoint. (DartsConfig's own tuple includes this one.)
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("epochs",)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise SearchConfigError (one line naming the setting) for a value that cannot be used;
        then the checks of the classes after this one (DartsConfig's contract)."""
        def choice(key, known):
            value = getattr(self, key)
            if not (isinstance(value, str) and value in known):
                raise SearchConfigError(f"unknown {key} {value!r} (known: {', '.join(known)})")

        choice("space", SPACES)
        choice("method", METHODS)
        choice("smooth", SMOOTHERS)
        choice("selector", SELECTORS)
        for key in ("epochs", "channels", "layers", "steps", "multiplier", "batch_size"):
            value = getattr(self, key)
            if not (key == "layers" and value is None) and not (_is_int(value) and value >= 1):
                raise SearchConfigError(f"{key} must be a positive integer, got {value!r}")
        if not (_is_int(self.pt_tune_epochs) and self.pt_tune_epochs >= 0):
            raise SearchConfigError(f"pt_tune_epochs must be an integer >= 0, got {self.pt_tune_epochs!r}")
        if not _is_int(self.seed):
            raise SearchConfigError(f"seed must be an integer, got {self.seed!r}")
        for key in ("w_lr", "w_lr_min", "momentum", "wd", "grad_clip", "arch_lr", "arch_wd", "lam"):
            value = getattr(self, key)
            if not (_is_number(value) and value >= 0):
                raise SearchConfigError(f"{key} must be a number >= 0, got {value!r}")
        if not (_is_number(self.epsilon) and self.epsilon > 0):
            raise SearchConfigError(f"epsilon must be a positive number, got {self.epsilon!r}")
        if not (_is_number(self.pt_share) and 0 < self.pt_share < 1):
            raise SearchConfigError(f"pt_share must be between 0 and 1, got {self.pt_share!r}")
        for key in ("track_hessian", "augment"):
            if not isinstance(getattr(self, key), bool):
                raise SearchConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if self.space == "nb201":
            for key in ("steps", "multiplier"):
                if getattr(self, key) != _DEFAULTS[key]:
                    raise SearchConfigError(f"{key} applies to the darts space only (nb201 cells are fixed: 3 nodes)")
        elif self.multiplier > self.steps:
            raise SearchConfigError(f"multiplier ({self.multiplier}) cannot exceed steps ({self.steps})")
        try:
            strategy_for(self.method, self.order)
        except ValueError as e:
            raise SearchConfigError(str(e)) from None
        after = getattr(super(), "validate", None)
        if after is not None:
            after()

    @property
    def cells(self) -> int:
        """The supernet's cells: `layers`, or the space's default where it is None."""
        return SPACE_LAYERS[self.space] if self.layers is None else self.layers

    @classmethod
    def of(cls, config) -> "SearchSettings":
        """The search's settings, checked, from a dict or from any object that has them as
        attributes (a DartsConfig); keys that are not settings are ignored; `layers` resolved
        (`cells`), so that a checkpoint records the network it holds."""
        names = [f.name for f in fields(SearchSettings)]
        if isinstance(config, dict):
            given = {k: config[k] for k in names if k in config}
        else:
            given = {k: getattr(config, k) for k in names if hasattr(config, k)}
        settings = SearchSettings(**given)
        return settings if settings.layers is not None else replace(settings, layers=settings.cells)

    def settings_dict(self) -> dict:
        """The settings alone (a DartsConfig has more fields), as a checkpoint records them."""
        return {f.name: getattr(self, f.name) for f in fields(SearchSettings)}


_DEFAULTS = {f.name: f.default for f in fields(SearchSettings)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
