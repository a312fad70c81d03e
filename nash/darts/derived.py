"""The network derived from a search: a genotype lowered to a Network and trained from scratch
as DARTS evaluates a cell (batch 96, lr 0.025 cosine to 0, wd 3e-4 on every weight, auxiliary
weight 0.4, drop path 0.2 ramped linearly, cutout 16, grad clip 5).

    net, result = train_genotype("DARTS_V2", data, epochs=600)

`DerivedNet` is the same in pieces, for a trainer that plans the cosine cycle as it goes (the
darts searcher fits it into a budget): `train` a part of the cycle, then `result`.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from nash.data import DataSplits
from nash.train import TrainResult, evaluate, sgdr_train

from .genotype import NB201Genotype, genotype_space, get_genotype
from .lower import lower


def derived_size(space_name: str, image_size) -> tuple[int, int]:
    """Default (channels, layers) of the network derived from a search in `space_name`.
    darts: the DARTS evaluation size, 36 channels and 20 cells, for inputs of 32x32 and more;
    16 and 8 (the search size) below, where a 20-cell network has too few pixels and too few
    images to learn from in a CPU budget. nb201: the benchmark's 16 channels, 5 cells per stage."""
    if space_name == "nb201":
        return 16, 5
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return (36, 20) if min(size) >= 32 else (16, 8)


class DerivedNet:
    """`genotype` (DARTS or NAS-Bench-201) lowered at its seed's init, and how it trains.

    channels, layers None: `derived_size` of the genotype's space. auxiliary=None: on where it
    fits (DARTS, an 8x8 map at 2/3 depth, i.e. 32x32 inputs); NAS-Bench-201 networks have none.
    cutout=None: 16 for DARTS networks on inputs of at least 32x32, else off (the benchmark
    trains without it)."""

    def __init__(self, genotype, data: DataSplits, channels: int | None = None, layers: int | None = None,
                 lr: float = 0.025, lr_end: float = 0.0, batch_size: int = 96, momentum: float = 0.9,
                 weight_decay: float = 3e-4, auxiliary: bool | None = None, aux_weight: float = 0.4,
                 drop_path: float = 0.2, cutout: int | None = None, grad_clip: float = 5.0, seed: int = 0):
        self.genotype = get_genotype(genotype)
        self.data = data
        size = tuple(data.image_size)
        nb201 = isinstance(self.genotype, NB201Genotype)
        default_channels, default_layers = derived_size(genotype_space(self.genotype).name, size)
        self.channels = default_channels if channels is None else channels
        self.layers = default_layers if layers is None else layers
        self.auxiliary = (not nb201 and min(size) >= 32) if auxiliary is None else auxiliary
        cutout = (16 if not nb201 and min(size) >= 32 else 0) if cutout is None else cutout
        self.aug = replace(data.augment, cutout=cutout) if data.augment else None
        self.seed = seed
        self.settings = dict(lr_start=lr, lr_end=lr_end, batch_size=batch_size, momentum=momentum,
                             weight_decay=weight_decay, grad_clip=grad_clip, drop_path=drop_path,
                             aux_weight=aux_weight if self.auxiliary else 0.0)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA
            self.net = lower(self.genotype, self.channels, self.layers, data.num_classes, data.in_channels,
                             auxiliary=self.auxiliary, drop_path=0.0, input_size=size)

    def train(self, epochs: int, cycle: tuple[float, float] = (0.0, 1.0), opt_state: dict | None = None,
              seed: int | None = None, on_epoch=None, deadline: float | None = None) -> TrainResult:
        """`epochs` epochs covering the part `cycle` of one cosine cycle (sgdr_train's), the
        optimizer's momentum carried in `opt_state`; `seed` (default the network's) orders the
        batches."""
        return sgdr_train(self.net, self.data.train_x, self.data.train_y, epochs, aug=self.aug,
                          seed=self.seed if seed is None else seed, on_epoch=on_epoch, deadline=deadline,
                          cycle=cycle, opt_state=opt_state,
                          decay_all=True,  # the reference decays every weight of its evaluation network
                          **self.settings)

    def result(self, trained: list[TrainResult]) -> dict:
        """The network's size and accuracies after the trainings `trained` (in order)."""
        net, last = self.net, trained[-1]
        result = {"genotype": str(self.genotype), "params": net.num_params(),
                  "params_without_aux": sum(net.node_params(n) for n in net.layers if not n.startswith("aux_")),
                  "train_loss": last.train_loss, "train_acc": last.train_acc,
                  "epochs": sum(r.epochs for r in trained), "steps": sum(r.steps for r in trained),
                  "seconds": sum(r.seconds for r in trained),
                  "failed": next((r.failed for r in trained if r.failed), None)}
        if len(self.data.val_x):
            result["val_acc"], result["val_loss"] = evaluate(net, self.data.val_x, self.data.val_y)
        result["test_acc"], result["test_loss"] = evaluate(net, self.data.test_x, self.data.test_y)
        return result


def train_genotype(genotype, data: DataSplits, epochs: int, channels: int | None = None, layers: int | None = None,
                   lr: float = 0.025, lr_end: float = 0.0, batch_size: int = 96, momentum: float = 0.9,
                   weight_decay: float = 3e-4, auxiliary: bool | None = None, aux_weight: float = 0.4,
                   drop_path: float = 0.2, cutout: int | None = None, grad_clip: float = 5.0, seed: int = 0,
                   on_epoch=None, deadline: float | None = None):
    """Lower `genotype` and train it from scratch for `epochs` epochs of one cosine cycle (see
    `DerivedNet` for the defaults); `deadline` (a time.time()) stops it after the epoch in
    flight. Returns (net, result dict)."""
    derived = DerivedNet(genotype, data, channels=channels, layers=layers, lr=lr, lr_end=lr_end,
                         batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, auxiliary=auxiliary,
                         aux_weight=aux_weight, drop_path=drop_path, cutout=cutout, grad_clip=grad_clip, seed=seed)
    res = derived.train(epochs, on_epoch=on_epoch, deadline=deadline)
    return derived.net, derived.result([res])
