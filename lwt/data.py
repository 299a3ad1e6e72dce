"""Datasets as in-memory uint8 tensors, with fast batched loaders.

MNIST, Fashion-MNIST and CIFAR-10 are read from their standard files (IDX for the
MNISTs, python pickle batches for CIFAR-10) under the data root; ``rotmnist`` is MNIST
with every image turned by its own random angle (derived, see :func:`rotate`):

    data root = $LWT_DATA_DIR, else <repo>/data
    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    FashionMNIST/raw/...                 (same names)
    cifar-10-batches-py/{data_batch_1..5, test_batch}

Missing files are downloaded with torchvision's downloader when ``download=True``.
Everything stays in memory (CIFAR-10 is 150 MB as uint8); a batch is normalised and,
for CIFAR training, augmented (random crop with 4-pixel zero padding + horizontal
flip) on whole tensors, which is far faster on 2 cores than per-sample PIL transforms.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ._lookup import lookup

REPO_ROOT = Path(__file__).resolve().parents[1]
# A source checkout (editable install) has the project's pyproject.toml above lwt/.
SOURCE_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()

# Per-channel mean/std of the training sets on [0, 1] pixels.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "rotmnist": ((0.1307,), (0.3081,)),  # MNIST's: a rotation keeps the digit's pixels
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
COUNTS = {
    "mnist": (60000, 10000),
    "rotmnist": (12000, 10000),  # MNIST-rot's training size (Larochelle et al. 2007)
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
}
SHAPES = {
    "mnist": (1, 28, 28),
    "rotmnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_IDX_DIRS = {"mnist": "MNIST", "rotmnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_ROTATION_SEEDS = {True: 1, False: 0}  # rotmnist's angles: one fixed draw per split
_CIFAR_DIR = "cifar-10-batches-py"


def data_root() -> Path:
    """The data root: ``$LWT_DATA_DIR`` if set, else ``<repo>/data`` in a source
    checkout, else ``~/.cache/lwt/data`` (``$XDG_CACHE_HOME/lwt/data``) for an
    installed package."""
    if "LWT_DATA_DIR" in os.environ:
        return Path(os.environ["LWT_DATA_DIR"])
    if SOURCE_CHECKOUT:
        return REPO_ROOT / "data"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "lwt" / "data"


@dataclass
class ImageData:
    """A labelled image set kept in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8 pixels.
        labels: ``(N,)`` int64 class indices in ``[0, 10)``.
        name: dataset name (a key of ``STATS``).
    """

    images: Tensor
    labels: Tensor
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mean(self) -> tuple[float, ...]:
        return STATS[self.name][0]

    @property
    def std(self) -> tuple[float, ...]:
        return STATS[self.name][1]

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 ``(N, C, H, W)`` -> float32 ``(x / 255 - mean) / std``."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std


# ----------------------------------------------------------------------------- files
def _idx_files(train: bool) -> tuple[str, str]:
    split = "train" if train else "t10k"
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (magic 2049 = labels, 2051 = images), plain or ``.gz``."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    raw = (
        gzip.decompress(path.read_bytes())
        if path.suffix == ".gz"
        else path.read_bytes()
    )
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in (2049, 2051):
        raise ValueError(f"{path}: bad IDX magic {magic} (expected 2049 or 2051)")
    ndim = magic - 2048
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: holds {len(raw) - offset} bytes, header says {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy array reconstruction (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: CIFAR batches hold only arrays"
            )
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (needs 'data' and 'labels')")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: data has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch["labels"], dtype=np.int64)


def expected_files(name: str, train: bool) -> list[str]:
    """Relative paths (under the data root) that ``load_dataset`` reads."""
    _check_name(name)
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        return [f"{_CIFAR_DIR}/{f}" for f in files]
    return [f"{_IDX_DIRS[name]}/raw/{f}" for f in _idx_files(train)]


def _present(root: Path, rel: str) -> bool:
    return (root / rel).exists() or (root / (rel + ".gz")).exists()


def _download(name: str, root: Path) -> None:
    """Fetch missing files with torchvision's downloaders (checksummed archives)."""
    from torchvision import datasets

    cls = {
        "mnist": datasets.MNIST,
        "rotmnist": datasets.MNIST,
        "fashion_mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
    }[name]
    cls(str(root), train=True, download=True)


def _check_name(name: str) -> None:
    lookup(STATS, name, "dataset name")


def load_dataset(
    name: str,
    train: bool = True,
    root: str | Path | None = None,
    subset: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageData:
    """Load a whole split into memory as uint8 tensors.

    Args:
        name: ``"mnist"``, ``"rotmnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
            ``"rotmnist"``: each MNIST image rotated by an angle drawn uniformly
            from [0°, 360°) with a fixed seed per split (the same set every time);
            training: the first 12,000 MNIST training images, as in MNIST-rot.
        train: training split if True, else test split.
        root: data root; defaults to :func:`data_root`.
        subset: keep a seeded random subset of this many images (quick runs).
        seed: seed of the subset draw.
        download: fetch missing files from the internet with torchvision.

    Returns:
        The split as :class:`ImageData`, validated for count, shape and label range.

    Raises:
        ValueError: unknown name, bad ``subset``, or malformed files.
        FileNotFoundError: files missing and not downloadable (names the files).
    """
    _check_name(name)
    root = Path(root) if root is not None else data_root()
    files = expected_files(name, train)
    missing = [f for f in files if not _present(root, f)]
    if missing and download:
        try:
            _download(name, root)
        except Exception as exc:  # offline, proxy, disk...: report what is needed
            warnings.warn(f"lwt.data: download of {name} failed: {exc}", stacklevel=2)
        missing = [f for f in files if not _present(root, f)]
    if missing:
        raise FileNotFoundError(
            f"{name} files missing under {root}: {missing}. Put the standard files "
            f"there, or set LWT_DATA_DIR to a folder that has them "
            f"(download={download})."
        )
    if name == "cifar10":
        parts = [_read_cifar_batch(root / f) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    else:
        images = _read_idx(root / files[0])[:, None]  # (N, 1, 28, 28)
        labels = _read_idx(root / files[1]).astype(np.int64)
    data = ImageData(
        torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), name
    )
    if name == "rotmnist":
        _validate(ImageData(data.images, data.labels, "mnist"), train)
        n = COUNTS[name][0 if train else 1]
        g = torch.Generator().manual_seed(_ROTATION_SEEDS[train])
        angles = torch.rand(n, generator=g) * 360
        data = ImageData(rotate(data.images[:n], angles), data.labels[:n], name)
    _validate(data, train)
    return _draw_subset(data, subset, seed)


def _draw_subset(data: ImageData, subset: int | None, seed: int) -> ImageData:
    """A seeded random ``subset`` of ``data`` (all of it when None or not smaller)."""
    if subset is not None and subset <= 0:
        raise ValueError(f"subset must be a positive number of images, got {subset}")
    if subset is None or subset >= len(data):
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return ImageData(data.images[idx[:subset]], data.labels[idx[:subset]], data.name)


def _validate(data: ImageData, train: bool) -> None:
    n_expected = COUNTS[data.name][0 if train else 1]
    if len(data) != n_expected or data.images.shape[0] != n_expected:
        raise ValueError(
            f"{data.name}: {data.images.shape[0]} images and {len(data)} "
            f"labels, expected {n_expected} of each"
        )
    if tuple(data.images.shape[1:]) != SHAPES[data.name]:
        raise ValueError(
            f"{data.name}: image shape {tuple(data.images.shape[1:])}, "
            f"expected {SHAPES[data.name]}"
        )
    if data.labels.min() < 0 or data.labels.max() > 9:
        raise ValueError(f"{data.name}: labels outside [0, 9]")


def rotate(images: Tensor, degrees: Tensor | float) -> Tensor:
    """Rotate uint8 ``(N, C, H, W)`` images counter-clockwise about their centres by
    ``degrees`` (one angle, or one per image): bilinear, zero fill, rounded back to
    uint8. Deterministic; for multiples of 90° prefer the exact ``torch.rot90``."""
    n = len(images)
    theta = torch.as_tensor(degrees, dtype=torch.float64).expand(n).deg2rad()
    cos, sin = theta.cos(), theta.sin()
    # grid_sample's affine maps output to input coordinates (y down): the inverse
    # rotation, so the content turns counter-clockwise on screen
    affine = torch.stack(
        [
            torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
            torch.stack([sin, cos, torch.zeros_like(cos)], 1),
        ],
        1,
    ).float()
    grid = F.affine_grid(affine, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, "bilinear", "zeros", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------- loader
def augment_crop_flip(
    images: Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> Tensor:
    """Random crop after zero padding, and random horizontal flip, on a whole batch.

    The crop is a random translation by up to ``pad`` pixels in each direction (Hinton
    et al.'s "jitter" of MNIST digits with ``pad=2, flip=False``: a mirrored digit is
    another symbol).

    Args:
        images: ``(N, C, H, W)`` batch (any dtype).
        generator: source of randomness (seeded for reproducibility).
        pad: zero padding on each side before cropping back to ``H x W``.
        flip: also flip half of the images left-right.

    Returns:
        ``(N, C, H, W)`` augmented batch, same dtype.
    """
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]
    out = padded[batch, chans, rows, cols]  # (N, C, H, W)
    if not flip:
        return out
    flips = torch.rand(n, generator=generator) < 0.5
    return torch.where(flips[:, None, None, None], out.flip(3), out)


class BatchLoader:
    """Iterates ``(x, y)`` float batches over an :class:`ImageData`.

    Reproducible: epoch ``e`` of a loader with seed ``s`` always draws the same order
    and augmentations, whatever ran before. ``epoch`` counts complete passes: a pass
    stopped early (a few calibration batches) leaves it as it was, so the next pass
    draws the same epoch again.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        pad: int = 4,
        flip: bool = True,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0 pixels, got {pad}")
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.augment, self.seed, self.drop_last = augment, seed, drop_last
        self.pad, self.flip = pad, flip
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.data.images[idx]
            if self.augment:
                images = augment_crop_flip(images, g, self.pad, self.flip)
            yield self.data.normalize(images), self.data.labels[idx]
        self.epoch += 1  # a complete pass only


VALIDATION_SEED = 20261205  # the validation images are the same for every run


def split_validation(data: ImageData, n: int) -> tuple[ImageData, ImageData]:
    """``(rest, validation)``: ``n`` training images held out for choices (bits,
    ranks, rates, epochs...), drawn by a fixed seed (:data:`VALIDATION_SEED`), so
    every run, whatever its own seed, chooses on the same images and never looks
    at the test set."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < len(data):
        raise ValueError(f"validation must be an int in [1, {len(data) - 1}], "
                         f"got {n!r}")  # fmt: skip
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(
        VALIDATION_SEED))  # fmt: skip
    keep, held = idx[n:].sort().values, idx[:n].sort().values
    return (ImageData(data.images[keep], data.labels[keep], data.name),
            ImageData(data.images[held], data.labels[held], data.name))  # fmt: skip


def get_loaders(
    name: str,
    batch_size: int = 128,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    augment: bool | None = None,
    root: str | Path | None = None,
    shift: int | None = None,
    validation: int | None = None,
) -> tuple[BatchLoader, ...]:
    """Training and test loaders for a dataset (and a validation loader).

    Args:
        name: dataset name (see :func:`load_dataset`).
        batch_size: images per batch (the test loader uses 4x this).
        subset: size of a seeded training subset (None: all).
        test_subset: size of a seeded test subset (None: the full test set).
        seed: seed of subsets, shuffling and augmentation.
        augment: crop+flip augmentation of training batches; default on for CIFAR-10.
        shift: instead, random translations of up to ``shift`` pixels, no flips
            (Hinton et al.'s MNIST jitter is ``shift=2``).
        root: data root (default :func:`data_root`).
        validation: hold out this many training images (:func:`split_validation`:
            the same images for every seed) before ``subset`` is drawn from the rest.

    Returns:
        ``(train_loader, test_loader)``, or with ``validation``
        ``(train_loader, validation_loader, test_loader)``; training is shuffled,
        validation (not augmented) and test are in file order.
    """
    if augment is False and shift is not None:
        raise ValueError(f"augment=False with shift={shift}: shift is an augmentation "
                         "(leave augment at None, or pass True)")  # fmt: skip
    augment = (name == "cifar10") if augment is None else augment
    moves = {} if shift is None else {"pad": shift, "flip": False}
    augment = augment or shift is not None
    test = load_dataset(name, False, root, test_subset, seed)
    if validation is None:
        train = load_dataset(name, True, root, subset, seed)
    else:
        train, held = split_validation(load_dataset(name, True, root), validation)
        train = _draw_subset(train, subset, seed)
    loaders = (
        BatchLoader(
            train, batch_size, shuffle=True, augment=augment, seed=seed, **moves
        ),
        BatchLoader(test, 4 * batch_size),
    )
    if validation is None:
        return loaders
    return loaders[0], BatchLoader(held, 4 * batch_size), loaders[1]


# The datasets the course reads (rotmnist is derived from MNIST: nothing to fetch).
COURSE_DATASETS = ("mnist", "cifar10")


def fetch(
    root: str | Path | None = None, names: tuple[str, ...] = COURSE_DATASETS
) -> dict[str, int]:
    """Download the course's datasets once and validate them.

    torchvision's checksummed downloaders fetch what is missing under ``root``; then
    both splits of each dataset are loaded and validated. An instructor runs it on one
    connected machine and copies the folder to offline laptops (``LWT_DATA_DIR``).
    Files already present are not downloaded again.

    Args:
        root: the data folder (default :func:`data_root`).
        names: the datasets (default MNIST and CIFAR-10).

    Returns:
        ``{dataset: bytes on disk}`` of each dataset's folder.

    Raises:
        FileNotFoundError: a dataset is missing and could not be downloaded.
    """
    root = Path(root) if root is not None else data_root()
    root.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in names:
        for train in (True, False):
            load_dataset(name, train, root, download=True)  # validates counts/shapes
        folder = root / expected_files(name, False)[0].split("/")[0]
        sizes[name] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return sizes


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m lwt.data", description=fetch.__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and validate the course's datasets")
    f.add_argument(
        "--root", type=Path, help="data folder (default: $LWT_DATA_DIR or data/)"
    )
    args = p.parse_args(argv)
    root = args.root or data_root()
    try:
        sizes = fetch(root)
    except (FileNotFoundError, ValueError) as exc:  # missing, or a bad download
        print(f"lwt.data fetch: {exc}")
        return 1
    for name, size in sizes.items():
        print(f"{name:8s} ok  {size / 1e6:7.1f} MB")
    print(
        f"{'total':8s}     {sum(sizes.values()) / 1e6:7.1f} MB in {root}; "
        "copy this folder to "
        f"offline machines and set LWT_DATA_DIR to it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
