"""Datasets as in-memory tensors, explicit train/validation/test splits, and a seeded batch iterator.

Every dataset here fits in memory, so a batch is an index into a tensor: no DataLoader, no worker processes,
no per-item Python on the hot path. The validation split is carved out of the official training set; the
official test set is only ever evaluated, never used to choose anything.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdrepro.paths import REPO_ROOT
from kdrepro.seeds import generator

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_VARIABLE = "KDREPRO_DOWNLOAD"
DOWNLOAD_HINT = ("set KDREPRO_DOWNLOAD=1 (or pass download=True) to let torchvision download it on a machine with "
                 "internet; the `paper` profiles do")

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# MD5 of each file of the official CIFAR archives once extracted, as torchvision 0.29.1 checks them
# (torchvision/datasets/cifar.py; the archives themselves: cifar-10-python.tar.gz c58f30108f718f92721af3b95e74349a,
# cifar-100-python.tar.gz eb9058c3a382ffc7106e4002c42a8d85). A CIFAR file is a pickle, and unpickling runs whatever
# code the file names, so a file is unpickled only when its MD5 is the published one.
CIFAR_MD5 = {
    "cifar-10-batches-py": {"data_batch_1": "c99cafc152244af753f735de768cd75f",
                            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                            "data_batch_4": "634d18415352ddfa80567beed471001a",
                            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                            "test_batch": "40351d587109b95175f43aff81a1287e",
                            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
    "cifar-100-python": {"train": "16019d7e3df5f24257cddd939b257f8d",
                         "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                         "meta": "7973b15100ade9c7d40fb424638fde48"},
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk; the message says how to get them."""


class DataFileError(ValueError):
    """A data file is damaged, in another format or inconsistent with its partner; the message names the file
    (and the line of a text file) and says what to do."""


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
    """Normalised float images in three explicit splits; where a profile trains on a subset of the official
    training set, also the `pool` each run draws its training images from (`for_seed`)."""

    name: str
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    pool: Split | None = None   # the training images a subset is drawn from (validation excluded); None: no draw

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def key(self) -> dict:
        """What identifies the data in a cache key: the dataset, the split sizes and the image size (a model
        trained on 14x14 images is not one trained on 28x28; a record measured on 1,000 test images is not one
        measured on all of them)."""
        key = {"dataset": self.name, "train_size": len(self.train), "val_size": len(self.val),
               "test_size": len(self.test), "image_size": self.input_shape[-1]}
        return key if self.pool is None else {**key, "drawn_from": len(self.pool)}

    def for_seed(self, seed: int) -> Data:
        """The data run `seed` trains on: `len(train)` training images drawn from the pool by the seed's own
        stream, so that seeds vary the draw and a verdict generalises over draws, not one draw. Every arm at a
        seed gets the same draw (arms stay paired); validation and test never change. Without a pool, as it is."""
        if self.pool is None:
            return self
        order = torch.randperm(len(self.pool), generator=generator(seed, "training subset"))
        return replace(self, train=self.pool.subset(order[:len(self.train)].to(self.pool.y.device)), pool=None)

    def to(self, device: torch.device | str) -> Data:
        """All three splits on `device` (the datasets here fit in a GPU's memory too)."""
        def move(split: Split) -> Split:
            return Split(split.x.to(device), split.y.to(device))
        return replace(self, train=move(self.train), val=move(self.val), test=move(self.test),
                       pool=None if self.pool is None else move(self.pool))

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
        return replace(self, train=resize(self.train), val=resize(self.val), test=resize(self.test),
                       pool=None if self.pool is None else resize(self.pool))


class Batch(NamedTuple):
    x: Tensor
    y: Tensor
    index: Tensor  # rows of the training split, so per-example targets (e.g. cached teacher logits) line up


def data_root() -> Path:
    """Where user-provided and downloaded datasets live (KDREPRO_DATA overrides)."""
    return Path(os.environ.get("KDREPRO_DATA", REPO_ROOT / "data"))


_SOURCES: dict[str, str] = {}


def note_source(name: str, where: str) -> None:
    """Say which copy of a dataset this process reads (once), and keep it for the results' provenance."""
    if _SOURCES.get(name) != where:
        print(f"{name}: reading {where}")
    _SOURCES[name] = where


def sources_read() -> dict[str, str]:
    """Every dataset this process has read, and from where."""
    return dict(_SOURCES)


# --- file formats -------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped): magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    raw = _read_maybe_gzipped(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFileError(f"{path} is not an unsigned-byte IDX file (magic bytes {raw[:4].hex()}); replace it with "
                            "the published file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=min(4 + 4 * ndim, len(raw)))
    if data.size != int(np.prod(dims)):
        raise DataFileError(f"{path} is truncated: header says {dims}, found {data.size} bytes of data; replace it "
                            "with the published file")
    return data.reshape(dims).copy()  # frombuffer is read-only; torch wants a writable array


def _read_maybe_gzipped(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # truncated, not gzip at all, damaged inside
        raise DataFileError(f"{path} is not a complete gzip file ({error.__class__.__name__}: {error}); the copy is "
                            "damaged or was cut short: replace it with the published file") from None


def text_lines(path: Path, error: type[DataFileError] = DataFileError) -> list[str]:
    r"""A UTF-8 text file's lines: a leading byte-order mark dropped, split on "\n" alone ("\r\n" too), as `wc -l`
    counts them. str.splitlines would also split on U+2028, U+0085 and form feeds, which web-crawled text holds
    inside its lines. Bytes that are not UTF-8 raise `error`, naming the file and the line."""
    raw = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = raw.count(b"\n", 0, bad.start) + 1
        raise error(f"{path}, line {line}: byte 0x{raw[bad.start]:02x} is not UTF-8; convert the file to UTF-8 "
                    "(iconv -f <its encoding> -t UTF-8)") from None
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_verified_pickle(path: Path, md5: str) -> Any:
    """Unpickle a file whose MD5 is `md5`, the published file's; any other file is refused before it is unpickled,
    since unpickling can run code."""
    raw = path.read_bytes()
    found = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if found != md5:
        raise DataFileError(f"{path} is not the published file (MD5 {found}, expected {md5}, the checksum "
                            "torchvision verifies); it was not unpickled, since unpickling can run code. Replace it "
                            "with the file from the official archive, or let torchvision download it "
                            "(KDREPRO_DOWNLOAD=1) into an empty folder")
    return pickle.loads(raw, encoding="bytes")


def read_cifar_batches(files: list[Path], label_key: bytes, md5: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR python-pickle batches (the layout torchvision downloads): rows of 3072 bytes, R then G then B.
    `md5` maps each file's name to its published checksum (`read_verified_pickle`)."""
    images, labels = [], []
    for file in files:
        batch = read_verified_pickle(file, md5[file.name])
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_files(name: str, directories: list[Path]) -> list[Path] | None:
    """The four IDX files of the first folder that holds any; None when none does. A folder with only some of
    them is an error, not passed over: a half-copied dataset must not make another copy be read in silence."""
    for directory in directories:
        found = {stem: _find_idx(directory, stem) for stem in IDX_STEMS}
        if all(found.values()):
            return list(found.values())
        if any(found.values()):
            missing = ", ".join(f"{stem}(.gz)" for stem, file in found.items() if file is None)
            raise DatasetNotFoundError(f"{directory} holds only some of {name}'s four IDX files; missing: {missing}. "
                                       f"Copy the missing file there, or move the others out of {directory} so "
                                       "that another copy is read")
    return None


def _read_mnist_format(name: str, files: list[Path], classes: tuple[str, ...]) -> RawData:
    """The four IDX files (`IDX_STEMS`' order) as a dataset, each labels file checked against its images."""
    note_source(name, f"{files[0].parent} (Debian's dataset-fashion-mnist)" if files[0].parent == DEBIAN_FASHION_MNIST
                else str(files[0].parent))
    arrays = [read_idx(f) for f in files]
    for images, labels in ((0, 1), (2, 3)):
        _check_idx_pair(files[images], arrays[images], files[labels], arrays[labels], len(classes))
    x_train, y_train, x_test, y_test = arrays
    return RawData(name, _images(x_train[:, None]), _labels(y_train), _images(x_test[:, None]), _labels(y_test),
                   classes)


def _check_idx_pair(images_path: Path, images: np.ndarray, labels_path: Path, labels: np.ndarray,
                    num_classes: int) -> None:
    """Images (N, H, W) and as many labels, each a class index."""
    if images.ndim != 3 or labels.ndim != 1:
        raise DataFileError(f"{images_path} holds an array of shape {images.shape} and {labels_path} one of shape "
                            f"{labels.shape}; expected images (N, H, W) and labels (N,): replace them with the "
                            "published files")
    if len(images) != len(labels):
        raise DataFileError(f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} "
                            "images; one of them is cut short or from another copy: replace both with the published "
                            "files")
    if labels.size and labels.max() >= num_classes:
        raise DataFileError(f"{labels_path} holds the label {labels.max()}, beyond the {num_classes} classes; "
                            "replace it with the published file")


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
    files = _idx_files("Fashion-MNIST", searched)
    if files is None and download:
        import torchvision
        torchvision.datasets.FashionMNIST(root, train=True, download=True)  # fetches the test files too
        files = _idx_files("Fashion-MNIST", searched)
    if files is None:
        raise _missing("Fashion-MNIST", searched,
                       "Install Debian's package (sudo apt-get install dataset-fashion-mnist), put the four IDX "
                       f"files in $KDREPRO_DATA/fashion-mnist, or {DOWNLOAD_HINT}.")
    return _read_mnist_format("fashion_mnist", files, FASHION_MNIST_CLASSES)


def _mnist(download: bool) -> RawData:
    root = data_root()
    searched = [root / "mnist", root / "MNIST" / "raw", root]
    digits = tuple(str(d) for d in range(10))
    files = _idx_files("MNIST", searched)
    if files is None and download:
        import torchvision
        torchvision.datasets.MNIST(root, train=True, download=True)
        files = _idx_files("MNIST", searched)
    if files is None:
        raise _missing("MNIST", searched, f"Put the four IDX files in $KDREPRO_DATA/mnist, or {DOWNLOAD_HINT}.")
    return _read_mnist_format("mnist", files, digits)


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
    md5 = CIFAR_MD5[folder]
    x_train, y_train = read_cifar_batches(paths[:len(train_files)], label_key, md5)
    x_test, y_test = read_cifar_batches(paths[len(train_files):-1], label_key, md5)
    classes = tuple(c.decode() for c in read_verified_pickle(paths[-1], md5[paths[-1].name])[meta[1]])
    note_source("cifar100" if classes_100 else "cifar10", f"{directory} (MD5 of every file verified)")
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
    note_source("digits", "scikit-learn's bundled copy")
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
    """Split the official training set into validation (`val_size` images, a seeded permutation's first) and the
    rest; train on `train_size` of the rest, drawn per run seed from that pool (`Data.for_seed`), or on all of it;
    normalise every split by the pool's per-channel mean and std (the same whatever a seed draws); then resize
    every image to `image_size` pixels square (`Data.resized`; None: as published)."""
    raw = load_raw(name, download)
    available = len(raw.y_train) - val_size
    if val_size < 0 or available <= 0:
        raise ValueError(f"val_size={val_size} leaves no training images ({name} has {len(raw.y_train)})")
    if train_size is not None and not 0 < train_size <= available:
        raise ValueError(f"train_size={train_size} must be in 1..{available} for {name} with val_size={val_size}")
    order = torch.randperm(len(raw.y_train), generator=torch.Generator().manual_seed(seed))
    val_index, pool_index = order[:val_size], order[val_size:]
    pool_x = raw.x_train[pool_index].float()
    mean, std = channel_statistics(pool_x)

    def normalise(x: Tensor) -> Tensor:
        return ((x.float() - mean) / std).contiguous()

    pool = Split(normalise(pool_x), raw.y_train[pool_index])
    drawn = train_size is not None and train_size < available
    data = Data(name, pool.subset(torch.arange(train_size)) if drawn else pool,
                Split(normalise(raw.x_train[val_index]), raw.y_train[val_index]),
                Split(normalise(raw.x_test), raw.y_test), raw.classes, pool=pool if drawn else None)
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
