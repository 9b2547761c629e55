"""Datasets as in-memory tensors, explicit train/validation/test splits, and a seeded batch iterator.

Every dataset here fits in memory, so a batch is an index into a tensor: no DataLoader, no worker processes,
no per-item Python on the hot path. The validation split is carved out of the official training set; the
official test set is only ever evaluated, never used to choose anything.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdrepro.paths import REPO_ROOT

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_VARIABLE = "KDREPRO_DOWNLOAD"
DOWNLOAD_HINT = ("set KDREPRO_DOWNLOAD=1 (or pass download=True) to let torchvision download it on a machine with "
                 "internet; the `paper` profiles do")

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk; the message says how to get them."""


@dataclass(frozen=True)
class RawData:
    """A dataset as published: uint8 images (N, C, H, W) and int64 labels, official train and test sets."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: Tensor) -> Split:
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Data:
    """Normalised float images in three explicit splits."""

    name: str
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def key(self) -> dict:
        """What identifies the training images in a cache key: the dataset, the split sizes and the image size
        (a model trained on 14x14 images is not one trained on 28x28)."""
        return {"dataset": self.name, "train_size": len(self.train), "val_size": len(self.val),
                "image_size": self.input_shape[-1]}

    def to(self, device: torch.device | str) -> Data:
        """All three splits on `device` (the datasets here fit in a GPU's memory too)."""
        def move(split: Split) -> Split:
            return Split(split.x.to(device), split.y.to(device))
        return replace(self, train=move(self.train), val=move(self.val), test=move(self.test))

    def first_test(self, size: int | None) -> Data:
        """Only the first `size` test images (None: all of them): smoke runs, whose seconds of training an
        evaluation on the whole test set would outweigh."""
        if size is None:
            return self
        return replace(self, test=self.test.subset(torch.arange(min(size, len(self.test)))))

    def resized(self, size: int) -> Data:
        """Every image resized to size x size by area averaging (28 -> 14: each pixel the mean of a 2x2 block):
        the same task at a quarter of a convolutional network's cost."""
        if size < 1:
            raise ValueError(f"image size must be at least 1 pixel, got {size}")

        def resize(split: Split) -> Split:
            return Split(F.interpolate(split.x, size=(size, size), mode="area"), split.y)
        return replace(self, train=resize(self.train), val=resize(self.val), test=resize(self.test))


class Batch(NamedTuple):
    x: Tensor
    y: Tensor
    index: Tensor  # rows of the training split, so per-example targets (e.g. cached teacher logits) line up


def data_root() -> Path:
    """Where user-provided and downloaded datasets live (KDREPRO_DATA overrides)."""
    return Path(os.environ.get("KDREPRO_DATA", REPO_ROOT / "data"))


# --- file formats -------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped): magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims).copy()  # frombuffer is read-only; torch wants a writable array


def read_cifar_batches(files: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR python-pickle batches (the layout torchvision downloads): rows of 3072 bytes, R then G then B."""
    images, labels = [], []
    for file in files:
        with open(file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_mnist_format(name: str, directories: list[Path], classes: tuple[str, ...]) -> RawData | None:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for directory in directories:
        files = [_find_idx(directory, stem) for stem in stems]
        if all(files):
            x_train, y_train, x_test, y_test = (read_idx(f) for f in files)
            return RawData(name, _images(x_train[:, None]), _labels(y_train),
                           _images(x_test[:, None]), _labels(y_test), classes)
    return None


def _images(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))


def _labels(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.int64))


# --- the datasets ---------------------------------------------------------------------------------------------

def _missing(name: str, searched: list[Path], how: str) -> DatasetNotFoundError:
    places = ", ".join(str(p) for p in searched)
    return DatasetNotFoundError(f"{name} not found (looked in {places}). {how}")


def _fashion_mnist(download: bool) -> RawData:
    root = data_root()
    searched = [root / "fashion-mnist", root / "FashionMNIST" / "raw", root, DEBIAN_FASHION_MNIST]
    raw = _read_mnist_format("fashion_mnist", searched, FASHION_MNIST_CLASSES)
    if raw is None and download:
        import torchvision
        torchvision.datasets.FashionMNIST(root, train=True, download=True)  # fetches the test files too
        raw = _read_mnist_format("fashion_mnist", searched, FASHION_MNIST_CLASSES)
    if raw is None:
        raise _missing("Fashion-MNIST", searched,
                       "Install Debian's package (sudo apt-get install dataset-fashion-mnist), put the four IDX "
                       f"files in $KDREPRO_DATA/fashion-mnist, or {DOWNLOAD_HINT}.")
    return raw


def _mnist(download: bool) -> RawData:
    root = data_root()
    searched = [root / "mnist", root / "MNIST" / "raw", root]
    digits = tuple(str(d) for d in range(10))
    raw = _read_mnist_format("mnist", searched, digits)
    if raw is None and download:
        import torchvision
        torchvision.datasets.MNIST(root, train=True, download=True)
        raw = _read_mnist_format("mnist", searched, digits)
    if raw is None:
        raise _missing("MNIST", searched, f"Put the four IDX files in $KDREPRO_DATA/mnist, or {DOWNLOAD_HINT}.")
    return raw


def _cifar(download: bool, classes_100: bool) -> RawData:
    import torchvision
    root = data_root()
    folder, dataset = (("cifar-100-python", torchvision.datasets.CIFAR100) if classes_100
                       else ("cifar-10-batches-py", torchvision.datasets.CIFAR10))
    directory = root / folder
    if classes_100:
        train_files, test_files, label_key, meta = ["train"], ["test"], b"fine_labels", ("meta", b"fine_label_names")
    else:
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key, meta = ["test_batch"], b"labels", ("batches.meta", b"label_names")
    paths = [directory / f for f in train_files + test_files + [meta[0]]]
    if not all(p.is_file() for p in paths) and download:
        dataset(root, train=True, download=True)  # the archive holds the test batch too
    if not all(p.is_file() for p in paths):
        name = "CIFAR-100" if classes_100 else "CIFAR-10"
        raise _missing(name, [directory], f"Unpack the python version of {name} into {directory}, or {DOWNLOAD_HINT}.")
    x_train, y_train = read_cifar_batches(paths[:len(train_files)], label_key)
    x_test, y_test = read_cifar_batches(paths[len(train_files):-1], label_key)
    with open(paths[-1], "rb") as f:
        classes = tuple(c.decode() for c in pickle.load(f, encoding="bytes")[meta[1]])
    return RawData("cifar100" if classes_100 else "cifar10", _images(x_train), _labels(y_train),
                   _images(x_test), _labels(y_test), classes)


def _digits(download: bool) -> RawData:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16): no download, no official test split,
    so a fixed quarter (seed 0) is set aside as the test set."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[: len(order) // 4], order[len(order) // 4:]
    return RawData("digits", _images(images[train]), _labels(digits.target[train]),
                   _images(images[test]), _labels(digits.target[test]), tuple(str(d) for d in range(10)))


LOADERS = {
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "cifar10": lambda download: _cifar(download, classes_100=False),
    "cifar100": lambda download: _cifar(download, classes_100=True),
    "digits": _digits,
}


def load_raw(name: str, download: bool = False) -> RawData:
    """A dataset from disk; downloaded first through torchvision when it is missing and `download` or
    $KDREPRO_DOWNLOAD=1 allows it."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    download = download or os.environ.get(DOWNLOAD_VARIABLE) == "1"
    return _load_raw_cached(name, download, str(data_root()))


@lru_cache(maxsize=4)
def _load_raw_cached(name: str, download: bool, root: str) -> RawData:
    return LOADERS[name](download)


def channel_statistics(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of float images (N, C, H, W), shaped (1, C, 1, 1) to normalise with; the std is
    floored so that a constant channel does not divide by zero."""
    return images.mean(dim=(0, 2, 3), keepdim=True), images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)


def load_data(name: str, *, train_size: int | None = None, val_size: int = 5000, seed: int = 0,
              download: bool = False, image_size: int | None = None) -> Data:
    """Split the official training set into validation (`val_size` images) and training (`train_size`, or all
    the rest) with a seeded permutation; normalise every split by the training split's per-channel mean and std;
    then resize every image to `image_size` pixels square (`Data.resized`; None: as published)."""
    raw = load_raw(name, download)
    available = len(raw.y_train) - val_size
    if val_size < 0 or available <= 0:
        raise ValueError(f"val_size={val_size} leaves no training images ({name} has {len(raw.y_train)})")
    if train_size is not None and not 0 < train_size <= available:
        raise ValueError(f"train_size={train_size} must be in 1..{available} for {name} with val_size={val_size}")
    order = torch.randperm(len(raw.y_train), generator=torch.Generator().manual_seed(seed))
    val_index, train_index = order[:val_size], order[val_size: val_size + (train_size or available)]
    train_x = raw.x_train[train_index].float()
    mean, std = channel_statistics(train_x)

    def normalise(x: Tensor) -> Tensor:
        return ((x.float() - mean) / std).contiguous()

    data = Data(name, Split(normalise(train_x), raw.y_train[train_index]),
                Split(normalise(raw.x_train[val_index]), raw.y_train[val_index]),
                Split(normalise(raw.x_test), raw.y_test), raw.classes)
    return data if image_size is None else data.resized(image_size)


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True) -> Iterator[Batch]:
    """Yield mini-batches of a split; with `shuffle`, the order is a permutation drawn from `generator`.
    The last batch may be smaller."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start: start + batch_size]
        yield Batch(split.x[index], split.y[index], index)
