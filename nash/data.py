"""Image classification data sets, held as whole tensors on the training device.

NASH trains many small networks for a few epochs each, so the data loader must not be the
bottleneck: every split is loaded once, normalised once and kept on the device, and batches
are slices of those tensors. Augmentation works on whole batches with tensor operations (no
per-sample Python loop), so it runs on the device too and the same code serves CPU and GPU.

`load_dataset(name, ...)` returns a `DataSplits`; the names it knows are the keys of
`DATASETS`. Every problem with the files on disk is reported as a `DataError` whose one-line
message names the exact path that was expected and what was wrong with it, so a user can fix
it without reading a traceback.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from .errors import NashError

__all__ = [
    "DATASETS",
    "Augment",
    "DataError",
    "DataSplits",
    "DatasetSpec",
    "augment_batch",
    "iterate_batches",
    "load_dataset",
    "make_generator",
    "set_generator_state",
    "mixup",
]

# Seed of every choice that must not depend on the user's --seed: the digits test split and
# the capped test set under `subset`. Runs with different seeds are then scored on the same
# images and stay comparable.
_FIXED_SEED = 0


class DataError(NashError):
    """A data set that cannot be loaded; the message is one line a user can act on."""


@dataclass(frozen=True)
class Augment:
    """How training batches are augmented.

    pad:    random shift of up to `pad` pixels in each direction (pad with zeros, crop back).
    flip:   horizontal flip of a random half of the batch; only sensible for natural images,
            a flipped digit is a different (or no) digit.
    cutout: side of a square set to zero at a random place in each image (0 = off).
    """

    pad: int = 0
    flip: bool = False
    cutout: int = 0


@dataclass
class DataSplits:
    """Train/validation/test tensors of one data set, ready for training.

    x tensors are float32, N x C x H x W, normalised per channel with the mean and std of the
    train split (`mean`, `std`, in units of [0, 1] pixel values); y tensors are int64. The
    augmentation defaults suit the data set; enable more with e.g.
    `splits.augment = dataclasses.replace(splits.augment, cutout=16)`.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment


@dataclass
class _RawData:
    """What a loader reads from disk: uint8 images N x C x H x W in [0, max_value]."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    max_value: float = 255.0


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of `DATASETS`.

    loader(data_dir, image_size) reads the data; `image_size` only matters to loaders that
    resize. `hint` tells the user how to get the files and ends every file error.
    """

    loader: Callable[[Path | None, int], _RawData]
    augment: Augment
    needs_data_dir: bool
    hint: str


def _file_error(name: str, path: Path, problem: str, hint: str) -> DataError:
    return DataError(f"{name}: expected {path} ({problem}); {hint}")


def _as_raw(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    max_value: float = 255.0,
) -> _RawData:
    return _RawData(
        torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.uint8)),
        torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.uint8)),
        torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        num_classes,
        max_value,
    )


def _check_labels(name: str, path: Path, labels: np.ndarray, num_classes: int, hint: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        found = f"{labels.min()}..{labels.max()}"
        raise _file_error(name, path, f"labels outside 0..{num_classes - 1}: {found}", hint)


# ---------------------------------------------------------------------------------------------
# digits


def _load_digits(data_dir: Path | None, image_size: int) -> _RawData:
    """sklearn's 8x8 digits (values 0..16). They ship without a test split, so 20% of them,
    stratified and chosen with a fixed seed, are held out as the test set whatever --seed is."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    labels = digits.target
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=_FIXED_SEED
    )
    return _as_raw(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10, 16.0
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)

# The globals a CIFAR pickle may name: numpy's array reconstruction, under its numpy 1 and
# numpy 2 module names, and the bytes constructor of protocol 0-2 pickles written by Python 3.
# Anything else (e.g. os.system) is refused, so a tampered file cannot run code when loaded.
_PICKLE_GLOBALS = {
    "_codecs": {"encode"},
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array globals."""

    def find_class(self, module: str, name: str):
        if name not in _PICKLE_GLOBALS.get(module, ()):
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        # numpy 2 warns on the numpy.core names that old pickles (like CIFAR's) use.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _read_cifar_batch(
    name: str, path: Path, label_key: bytes, num_classes: int, hint: str
) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle as (N x 3 x 32 x 32 uint8 images, labels)."""
    if not path.is_file():
        raise _file_error(name, path, "file not found", hint)
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise _file_error(
            name, path, f"not a readable pickle: {type(e).__name__}: {e}", hint
        ) from e
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise _file_error(name, path, f"not a CIFAR batch: no b'data' and {label_key!r}", hint)
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _file_error(
            name, path, f"b'data' is {data.dtype} {data.shape}, not uint8 N x 3072", hint
        )
    if labels.shape != (len(data),):
        raise _file_error(name, path, f"{len(labels)} labels for {len(data)} images", hint)
    _check_labels(name, path, labels, num_classes, hint)
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_root(data_dir: Path, folder: str, first_file: str) -> Path:
    """data_dir/folder, or data_dir itself when it already is that folder."""
    if not (data_dir / folder).is_dir() and (data_dir / first_file).is_file():
        return data_dir
    return data_dir / folder


def _load_cifar10(data_dir: Path | None, image_size: int) -> _RawData:
    """CIFAR-10 'python version': data_batch_1..5 (50k) and test_batch (10k)."""
    spec = DATASETS["cifar10"]
    root = _cifar_root(data_dir, "cifar-10-batches-py", "data_batch_1")
    read = functools.partial(_read_cifar_batch, "cifar10", label_key=b"labels",
                             num_classes=10, hint=spec.hint)
    parts = [read(root / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read(root / "test_batch")
    return _as_raw(
        np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]),
        test_x, test_y, 10,
    )


def _load_cifar100(data_dir: Path | None, image_size: int) -> _RawData:
    """CIFAR-100 'python version': train (50k) and test (10k), fine labels (100 classes)."""
    spec = DATASETS["cifar100"]
    root = _cifar_root(data_dir, "cifar-100-python", "train")
    read = functools.partial(_read_cifar_batch, "cifar100", label_key=b"fine_labels",
                             num_classes=100, hint=spec.hint)
    train_x, train_y = read(root / "train")
    test_x, test_y = read(root / "test")
    return _as_raw(train_x, train_y, test_x, test_y, 100)


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (idx files)

_IDX_UBYTE = 0x08


def _find_idx(name: str, dirs: list[Path], stem: str, hint: str) -> Path:
    for d in dirs:
        for candidate in (d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    also = ", ".join(str(d) for d in dirs[1:])
    raise _file_error(name, dirs[0] / stem, f"file not found, nor .gz, nor in {also}", hint)


def _read_idx(name: str, path: Path, ndim: int, hint: str) -> np.ndarray:
    """An idx file of unsigned bytes with `ndim` dimensions, header validated.

    Header: two zero bytes, a type byte (0x08 = ubyte), a byte with the number of dimensions,
    then one big-endian uint32 per dimension, then the data.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise _file_error(name, path, f"cannot read: {type(e).__name__}: {e}", hint) from e
    expected_magic = (_IDX_UBYTE << 8) | ndim
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _file_error(name, path, f"{len(raw)} bytes, too short for an idx header", hint)
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise _file_error(
            name, path, f"bad idx magic number {magic:#010x}, expected {expected_magic:#010x}",
            hint,
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise _file_error(
            name, path, f"{len(raw) - header} data bytes, header {dims} says {size}", hint
        )
    # copied: torch cannot share numpy's read-only view of the file's bytes
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _load_mnist_like(
    name: str, raw_folder: str, data_dir: Path | None, image_size: int
) -> _RawData:
    """The four idx files, plain or .gz, in data_dir or data_dir/<raw_folder>/raw (the layout
    torchvision downloads to)."""
    hint = DATASETS[name].hint
    dirs = [data_dir, data_dir / raw_folder / "raw"]

    def read_pair(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images_path = _find_idx(name, dirs, f"{prefix}-images-idx3-ubyte", hint)
        labels_path = _find_idx(name, dirs, f"{prefix}-labels-idx1-ubyte", hint)
        images = _read_idx(name, images_path, 3, hint)
        labels = _read_idx(name, labels_path, 1, hint)
        if len(images) != len(labels):
            raise _file_error(
                name, labels_path, f"{len(labels)} labels for {len(images)} images", hint
            )
        _check_labels(name, labels_path, labels, 10, hint)
        return images[:, None], labels

    train_x, train_y = read_pair("train")
    test_x, test_y = read_pair("t10k")
    return _as_raw(train_x, train_y, test_x, test_y, 10)


# ---------------------------------------------------------------------------------------------
# image folders


def _load_folder(data_dir: Path | None, image_size: int) -> _RawData:
    """data_dir/train/<class>/* and data_dir/test/<class>/*, read with torchvision's
    ImageFolder as RGB and resized to image_size x image_size (aspect ratio is not kept), so
    images of any size can be mixed. torchvision is imported here, not at module level, so the
    rest of the package works without it."""
    hint = DATASETS["folder"].hint
    try:
        from torchvision import datasets, transforms
    except Exception as e:  # a broken install fails with more than ImportError
        raise DataError(
            f"the 'folder' data set needs torchvision: pip install 'nash[vision]' "
            f"({type(e).__name__}: {e})"
        ) from e
    transform = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.PILToTensor()]
    )

    def read(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        root = data_dir / split
        if not root.is_dir():
            raise _file_error("folder", root, "directory not found", hint)
        try:
            folder = datasets.ImageFolder(str(root), transform=transform)
            pairs = [folder[i] for i in range(len(folder))]
        except Exception as e:  # no class folders, no images, unreadable image, ...
            raise _file_error("folder", root, f"{type(e).__name__}: {e}", hint) from e
        images = np.stack([np.asarray(x) for x, _ in pairs])
        labels = np.array([y for _, y in pairs], dtype=np.int64)
        return images, labels, list(folder.classes)

    train_x, train_y, classes = read("train")
    test_x, test_y, test_classes = read("test")
    if test_classes != classes:
        raise _file_error(
            "folder", data_dir / "test",
            f"class folders {test_classes} differ from train's {classes}", hint,
        )
    return _as_raw(train_x, train_y, test_x, test_y, len(classes))


# ---------------------------------------------------------------------------------------------
# registry and loading

_CIFAR_AUGMENT = Augment(pad=4, flip=True)

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        _load_digits, Augment(pad=1), needs_data_dir=False,
        hint="it ships with scikit-learn; reinstall scikit-learn",
    ),
    "cifar10": DatasetSpec(
        _load_cifar10, _CIFAR_AUGMENT, needs_data_dir=True,
        hint="download CIFAR-10 'python version' and point --data-dir at the folder that "
        "holds cifar-10-batches-py",
    ),
    "cifar100": DatasetSpec(
        _load_cifar100, _CIFAR_AUGMENT, needs_data_dir=True,
        hint="download CIFAR-100 'python version' and point --data-dir at the folder that "
        "holds cifar-100-python",
    ),
    "mnist": DatasetSpec(
        functools.partial(_load_mnist_like, "mnist", "MNIST"), Augment(pad=2),
        needs_data_dir=True,
        hint="download the four MNIST idx files (plain or .gz) and point --data-dir at their "
        "folder",
    ),
    "fashion-mnist": DatasetSpec(
        functools.partial(_load_mnist_like, "fashion-mnist", "FashionMNIST"), Augment(pad=2),
        needs_data_dir=True,
        hint="download the four Fashion-MNIST idx files (plain or .gz) and point --data-dir "
        "at their folder",
    ),
    "folder": DatasetSpec(
        _load_folder, _CIFAR_AUGMENT, needs_data_dir=True,
        hint="point --data-dir at a folder with train/<class>/*.png|jpg and test/<class>/...",
    ),
}


def load_dataset(
    name: str = "digits",
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    subset: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int = 32,
) -> DataSplits:
    """Load data set `name` (a key of DATASETS) as normalised tensors on `device`.

    The validation set is carved out of the training set with a permutation seeded by `seed`:
    round(val_fraction * N) images (NASH holds out 5k of CIFAR-10's 50k: val_fraction 0.1).
    The test set is the data set's own, never touched by the search.

    `subset` makes quick runs possible: the training pool is first cut to a random `subset`
    images (seeded by `seed`) and then split into train/val; the test set is cut to `subset`
    images too, chosen with a fixed seed so that every run is tested on the same images.

    `image_size` is the side that the 'folder' data set resizes its images to; the other data
    sets keep their native size.

    Mean and std come from the train split only, so validation and test images never
    influence the preprocessing.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"{name}: val_fraction must be in [0, 1), got {val_fraction}")
    if subset is not None and subset < 1:
        raise DataError(f"{name}: subset must be a positive number of images, got {subset}")
    path = None
    if spec.needs_data_dir:
        if data_dir is None:
            raise DataError(f"{name}: --data-dir is required; {spec.hint}")
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise _file_error(name, path, "data directory not found", spec.hint)
    raw = spec.loader(path, image_size)

    generator = torch.Generator().manual_seed(seed)
    pool = torch.randperm(len(raw.train_x), generator=generator)[:subset]  # [:None] = all
    n_val = round(val_fraction * len(pool))
    if n_val >= len(pool):
        raise DataError(
            f"{name}: {len(pool)} training images leave none for training after a "
            f"{val_fraction} validation split"
        )
    val_idx, train_idx = pool[:n_val], pool[n_val:]
    fixed = torch.Generator().manual_seed(_FIXED_SEED)
    test_idx = torch.randperm(len(raw.test_x), generator=fixed)[:subset].sort().values

    device = torch.device(device)

    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.to(device).to(torch.float32).div_(raw.max_value)

    train_x = to_float(raw.train_x[train_idx])
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3), correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays as is
    shape = (1, -1, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return x.sub_(mean.view(shape)).div_(std.view(shape))

    return DataSplits(
        name=name,
        train_x=normalise(train_x),
        train_y=raw.train_y[train_idx].to(device),
        val_x=normalise(to_float(raw.train_x[val_idx])),
        val_y=raw.train_y[val_idx].to(device),
        test_x=normalise(to_float(raw.test_x[test_idx])),
        test_y=raw.test_y[test_idx].to(device),
        in_channels=raw.train_x.shape[1],
        num_classes=raw.num_classes,
        image_size=(raw.train_x.shape[2], raw.train_x.shape[3]),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        augment=spec.augment,
    )


# ---------------------------------------------------------------------------------------------
# batches and augmentation


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of a run's draws (epoch order, augmentation, mixup) for data on `device`.

    On a CPU: torch's CPU generator, so a CPU run's streams are what they always were (same
    seed, same climb). On a GPU: a generator on that GPU, seeded alike, so the draws happen
    there and no step waits for a host-to-device copy (a blocking copy waits for all queued
    GPU work). The two streams differ: a seed gives the same run on the same kind of device."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.Generator().manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    """generator.set_state(state) for a resumed run. A run resumed on another kind of device
    (its checkpoint made on a CPU, resumed on a GPU, or the other way) saved another kind of
    generator's state, which does not fit: the generator is then seeded from the saved state's
    bytes, so the resumed run's draws are still a function of its checkpoint."""
    try:
        generator.set_state(state)
    except RuntimeError:  # "RNG state is wrong size": a CPU generator's state is 5056 bytes, CUDA's 16
        digest = hashlib.blake2b(state.cpu().contiguous().numpy().tobytes(), digest_size=8).digest()
        generator.manual_seed(int.from_bytes(digest, "little") >> 1)


def _random_device(generator: torch.Generator | None) -> torch.device:
    """Random numbers are drawn where the generator lives, then moved to the data (a no-op for
    a generator on the data's device: `make_generator`)."""
    return generator.device if generator is not None else torch.device("cpu")


def augment_batch(
    x: torch.Tensor, aug: Augment, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly shift, flip and cut out a batch N x C x H x W, each image independently.

    Shift: the batch is zero-padded by `aug.pad` once and every image is cropped back at its
    own random offset with one advanced-indexing gather. Zero is the channel mean in
    normalised space, so the padding looks like an average border. Flip: a random half (each
    image with probability 1/2) is mirrored left-right. Cutout: a random `aug.cutout`-sided
    square, wholly inside the image, is set to zero. With nothing enabled `x` is returned as is.
    """
    n, c, h, w = x.shape
    if aug.cutout > min(h, w):
        raise ValueError(f"cutout {aug.cutout} does not fit in {h}x{w} images")
    rdev = _random_device(generator)
    if aug.pad > 0:
        p = aug.pad
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=rdev).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=rdev).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # n x h
        cols = dx[:, None] + torch.arange(w, device=x.device)  # n x w
        x = padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    if aug.flip:
        flip = torch.rand(n, generator=generator, device=rdev).to(x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if aug.cutout > 0:
        s = aug.cutout
        top = torch.randint(0, h - s + 1, (n,), generator=generator, device=rdev).to(x.device)
        left = torch.randint(0, w - s + 1, (n,), generator=generator, device=rdev).to(x.device)
        r = torch.arange(h, device=x.device)
        q = torch.arange(w, device=x.device)
        in_rows = (r >= top[:, None]) & (r < top[:, None] + s)  # n x h
        in_cols = (q >= left[:, None]) & (q < left[:, None] + s)  # n x w
        x = x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
    return x


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float | torch.Tensor]:
    """Mix the batch with a shuffled copy of itself (Zhang et al., mixup).

    Returns (lam * x + (1 - lam) * x[perm], y, y[perm], lam) with lam ~ Beta(alpha, alpha);
    train with lam * loss(out, y_a) + (1 - lam) * loss(out, y_b). alpha <= 0 turns mixing off
    (lam = 1). With a CPU generator (or none) lam is a float drawn with numpy seeded from
    `generator`, because torch.distributions' Beta takes no generator and runs must be
    reproducible; with a generator on a GPU it is a 0-dim tensor drawn there (`_device_beta`),
    as a float would make every step wait for the GPU.
    """
    rdev = _random_device(generator)
    perm = torch.randperm(len(x), generator=generator, device=rdev).to(x.device)
    if alpha <= 0:
        lam = 1.0
    elif rdev.type == "cpu":
        seed = int(torch.randint(2**62, (1,), generator=generator, device=rdev))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    else:
        lam = _device_beta(alpha, generator).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam


def _device_beta(alpha: float, generator: torch.Generator) -> torch.Tensor:
    """One Beta(alpha, alpha) draw as a 0-dim float32 tensor where `generator` lives, no host
    sync: the first coordinate of a Dirichlet(alpha, alpha) draw (torch's own Beta sampler is
    this, without a generator argument)."""
    concentration = torch.full((2,), float(alpha), device=generator.device)
    return torch._sample_dirichlet(concentration, generator=generator)[0]


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    aug: Augment | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch over (x, y) in batches of `batch_size`, on the tensors' own device.

    With `shuffle` one permutation is drawn per epoch (call again for the next epoch), so
    every sample is seen exactly once; the last short batch is dropped when `drop_last`.
    `aug`, if given, is applied to every batch with the same generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    n = len(x)
    order = None
    if shuffle:
        order = torch.randperm(n, generator=generator, device=_random_device(generator))
        order = order.to(x.device)
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        if drop_last and end - start < batch_size:
            break
        if order is None:
            xb, yb = x[start:end], y[start:end]
        else:
            idx = order[start:end]
            xb, yb = x[idx], y[idx]
        if aug is not None:
            xb = augment_batch(xb, aug, generator)
        yield xb, yb
