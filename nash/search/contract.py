"""The one contract every searcher follows.

    config dataclass ──> searcher(config, data, run, budget, reporter, executor) ──> run dir + results.json

A searcher's config is a dataclass derived from `SearchConfig`: validated on creation, JSON
round-trip, and a class-level `RESUME_MAY_CHANGE` naming the fields a resumed run may change.
Every searcher writes the same run directory layout (config.json, events.jsonl, checkpoint.pt,
best/, results.json, plots) and returns the same `results.json` shape:

    {"method": name, "start": {...} (where there is a start net), "final": {"val_acc",
     "test_acc", "params"}, "seconds": wall-clock of the run, "curve": [[seconds, best
     validation accuracy so far], ...], ...searcher-specific extras}

A searcher sizes its work from the `Budget` it is handed (budget.py: the one clock, made once
from the budget, the moment the user's command began and the time the run had already spent
before a resume, kept in the run directory's checkpoint envelope, see RunDir).
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..budget import parse_budget
from ..data import DATASETS
from ..errors import OptionError
from ..rundir import RunDir


@dataclass
class SearchConfig:
    """What every searcher shares: the data, the seed, the budget, the device.

    Each field's metadata says how it reads as an option of the `nash` command (nash/cli_options.py)."""
    data: str = field(default="digits", metadata={"help": "Data set.", "choices": DATASETS, "noun": "data set"})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the data set's files.",
                                                         "metavar": "PATH"})
    subset: int | None = field(default=None, metadata={"help": "Use this many training images (quick runs)."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of the training images held out for "
                                                               "validation."})
    seed: int = field(default=0, metadata={"help": "Seed of the split, the initialisation and every random draw."})
    budget: float | None = field(default=None, metadata={  # seconds of wall-clock for the whole run
        "help": "Wall-clock budget for the whole run: 12h, 90m, 45s, 1h30m.", "parse": parse_budget,
        "metavar": "DURATION"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})

    # Fields a resumed run may take anew from the command line; all others must match.
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("budget", "device")
    # Whether the searcher picks among networks by validation accuracy (it then needs a
    # validation split: without one every candidate would score 0.0 and the pick be arbitrary).
    SELECTS_ON_VALIDATION: ClassVar[bool] = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise OptionError (one line) for a value that cannot be used."""
        if self.budget is not None and not (isinstance(self.budget, (int, float)) and self.budget > 0):
            raise OptionError(f"budget must be a positive number of seconds, got {self.budget!r}")
        if self.subset is not None and self.subset < 1:
            raise OptionError(f"subset must be at least 1, got {self.subset}")
        if not 0 <= self.val_fraction < 1:
            raise OptionError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def check_data(self, data) -> None:
        """Raise OptionError (one line) where this config does not fit the loaded data; run
        before anything is written, so a refused command leaves no run directory behind."""
        if self.SELECTS_ON_VALIDATION and len(data.val_y) == 0:
            raise OptionError(f"val_fraction {self.val_fraction} leaves no validation images ({len(data.train_y)} "
                              f"training images), and this searcher picks its networks by validation accuracy; "
                              f"give a val_fraction above 0 (default 0.1)")

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise OptionError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        try:
            return cls(**kw)
        except TypeError as e:
            raise OptionError(f"{cls.__name__}: {e}") from None

    def resumed_with(self, changes: dict):
        """This config with `changes` (field -> value, from the resuming command line) applied;
        OptionError naming the field if one that a resume may not change differs."""
        for key, value in changes.items():
            if key not in {f.name for f in dataclasses.fields(self)}:
                continue  # an option this searcher does not have
            if getattr(self, key) != value and key not in self.RESUME_MAY_CHANGE:
                raise OptionError(f"--resume: {key} was {getattr(self, key)!r} for this run and cannot change "
                                  f"(a resume may change only {', '.join(self.RESUME_MAY_CHANGE)})")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in self.RESUME_MAY_CHANGE})


@dataclass
class StartNetConfig(SearchConfig):
    """What the searchers that start from the NASH start net (nash, random, none) share: the
    start net and how a network is trained (SGD, one cosine cycle per call)."""
    lr_start: float = field(default=0.05, metadata={"help": "Learning rate at the start of a cosine cycle."})
    lr_end: float = field(default=0.0, metadata={"help": "Learning rate at the end of a cosine cycle."})
    batch_size: int = field(default=128, metadata={"help": "Training batch size."})
    widths: tuple[int, ...] = field(default=(64, 128, 256), metadata={"help": "Start net conv widths."})
    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha (0: off)."})
    cutout: int = field(default=0, metadata={"help": "Cutout square size (0: off)."})
    # what to start from instead of the NASH start net: a saved Network (a path); in Python also
    # a Network or an nn.Module (imported through torch.fx), snapshotted into the run directory
    start: str | None = field(default=None, metadata={"help": "Start from a saved network (e.g. RUN_DIR/best).",
                                                      "metavar": "PATH"})
    new_head: bool = field(default=False, metadata={"help": "A start network with another number of classes than "
                                                            "the data gets a new linear classifier (else refused)."})

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1 or self.cutout < 0 or self.mixup < 0:
            raise OptionError(f"batch_size must be at least 1, cutout and mixup at least 0 (got {self.batch_size}, "
                              f"{self.cutout}, {self.mixup})")
        if not (self.lr_start > 0 and self.lr_end >= 0):
            raise OptionError(f"learning rates must be positive (lr_start {self.lr_start}, lr_end {self.lr_end})")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise OptionError(f"widths must be positive integers, got {self.widths}")
        if self.start is not None and not isinstance(self.start, (str, os.PathLike, torch.nn.Module)):
            raise OptionError(f"start must be a saved network's path, a Network or a torch.nn.Module, got "
                              f"{type(self.start).__name__}")

    def to_json(self) -> dict:
        if isinstance(self.start, torch.nn.Module):  # run_searcher snapshots it first (search/start.py)
            raise TypeError("a config whose start is a module has no JSON form; snapshot the start network first")
        d = super().to_json()
        d["start"] = None if self.start is None else str(self.start)
        return d

    def check_data(self, data) -> None:
        super().check_data(data)
        h, w = data.image_size
        if self.cutout > min(h, w):
            raise OptionError(f"cutout {self.cutout} does not fit in the data's {h}x{w} images (at most {min(h, w)}, "
                              f"or 0 for none)")
        if self.start is not None:
            from .start import start_network
            start_network(self.start, data, self.seed if self.new_head else None)


def coerce_field(cls, name: str, value, label: str):
    """`value` (as parsed from `--set`) as the type of config field `name` of `cls`, or an
    OptionError naming the field and the type it takes. `label` names the option in the error.
    Text for a field with a `parse` in its metadata is read as its option reads it (200k)."""
    parse = {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("parse")
    if parse is not None and isinstance(value, str):
        try:
            return parse(value)
        except ValueError as e:  # NashError's value errors (BudgetError, UnitsError) included
            raise OptionError(f"{label}: {e}") from None
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] if args and typing.get_origin(hint) not in (tuple, list) else [hint]
    if value is None and optional:
        return None
    for kind in kinds:
        kind = typing.get_origin(kind) or kind
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if kind in (tuple, list) and isinstance(value, (list, tuple)):
            return tuple(value)
    names = " or ".join(getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in kinds)
    raise OptionError(f"{label}: {name} takes {names}{' or null' if optional else ''}, got {value!r}")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"unknown device {name!r} (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {name!r}: CUDA is not available here (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise OptionError(f"device {name!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def curve_from_events(events: list[dict]) -> list[list[float]]:
    """(elapsed seconds, best validation accuracy so far) from every event that scored a
    network on the validation split: the anytime performance of the search."""
    curve, best = [], -math.inf
    for e in events:
        acc, t = e.get("val_acc"), e.get("elapsed")
        if acc is None or t is None:
            continue
        best = max(best, acc)
        curve.append([round(t, 3), best])
    return curve


def write_results(run: RunDir, method: str, final: dict, start: dict | None = None, **extra) -> dict:
    """results.json in the shared shape (see the module doc); returns it."""
    results = {"method": method, "final": {k: final[k] for k in ("val_acc", "test_acc", "params")},
               "seconds": run.elapsed(), "curve": curve_from_events(run.events()), **extra}
    if start is not None:
        results["start"] = {k: start[k] for k in ("val_acc", "test_acc", "params")}
    run.write_json("results.json", results)
    return results

