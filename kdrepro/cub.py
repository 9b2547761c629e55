"""CUB-200-2011 (Wah et al. 2011): 11,788 photographs of 200 bird species, read from the official archive's layout.

Deep metric learning splits it by species, not by the official train_test_split.txt (a classification split):
species 1-100 (5,864 images) train the embedding and species 101-200 (5,924 images) measure Recall@K, on classes
the network never saw (Song et al. 2016's protocol, which Park et al. 2019 follow, section 4.1; the authors' code
takes the first 100 class folders). torchvision has no downloader for CUB, so nothing here downloads.

Images are decoded once with PIL, squashed to size x size (the authors' code resizes to 256 x 256, ignoring the
aspect ratio, then crops 224 x 224) and kept in memory as uint8 tensors, like every other dataset of the package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kdrepro.data import (
    Data,
    DataFileError,
    DatasetNotFoundError,
    RawData,
    Split,
    channel_statistics,
    data_root,
    note_source,
    text_lines,
)

FOLDER = "CUB_200_2011"  # what CUB_200_2011.tgz extracts to
ARCHIVE_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
INDEX_FILES = ("images.txt", "image_class_labels.txt", "classes.txt")
TRAIN_CLASS_IDS = range(1, 101)  # species 1-100 train; 101-200 are held out
DEFAULT_SIZE = 128  # 11,788 images of 3 x 128 x 128 bytes: 580 MB in memory (the paper's 224 crops: 1.8 GB)


def cub_folder(directory: str | Path | None = None) -> Path:
    """The folder that holds images.txt: `directory` itself or its CUB_200_2011 subfolder, or, without a
    directory, $KDREPRO_DATA/CUB_200_2011."""
    searched = [data_root() / FOLDER] if directory is None else [Path(directory), Path(directory) / FOLDER]
    for folder in searched:
        if all((folder / name).is_file() for name in INDEX_FILES) and (folder / "images").is_dir():
            return folder
    target = data_root() if directory is None else Path(directory)
    places = ", ".join(str(p) for p in searched)
    raise DatasetNotFoundError(
        f"CUB-200-2011 not found (looked in {places} for images.txt, image_class_labels.txt, classes.txt and "
        f"images/). torchvision cannot download it: download CUB_200_2011.tgz from {ARCHIVE_URL} and extract it "
        f"under {target} (tar -xzf CUB_200_2011.tgz -C {target}), or set KDREPRO_DATA to the folder that holds "
        f"{FOLDER}.")


def read_index(path: Path) -> dict[int, str]:
    """One of CUB's index files: a line '<id> <value>' per image or class, ids counting from 1."""
    return {key: value for key, (_, value) in _numbered_entries(path).items()}


def read_labels(path: Path, num_classes: int) -> dict[int, int]:
    """image_class_labels.txt: each image's class id, a whole number in 1..num_classes."""
    labels = {}
    for image, (number, value) in _numbered_entries(path).items():
        if not (_is_number(value) and 1 <= int(value) <= num_classes):
            raise DataFileError(f"{path}, line {number}: image {image} has the class {value!r}, not a class id in "
                                f"1..{num_classes} (classes.txt); restore the file from CUB_200_2011.tgz")
        labels[image] = int(value)
    return labels


def _numbered_entries(path: Path) -> dict[int, tuple[int, str]]:
    """id -> (line number, value) of each line '<id> <value>'; an id given twice is an error, not a lost entry."""
    entries: dict[int, tuple[int, str]] = {}
    for number, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not _is_number(key) or not value.strip():
            raise DataFileError(f"{path}, line {number}: expected '<id> <value>', got {line!r}")
        if int(key) in entries:
            raise DataFileError(f"{path}, line {number}: id {int(key)} is already on line {entries[int(key)][0]}; "
                                "each id is listed once: restore the file from CUB_200_2011.tgz")
        entries[int(key)] = number, value.strip()
    return entries


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone accepts '²', which int() refuses


def species_name(folder_name: str) -> str:
    """'001.Black_footed_Albatross' -> 'Black footed Albatross'."""
    return folder_name.split(".", 1)[-1].replace("_", " ")


def read_image(path: Path, size: int) -> np.ndarray:
    """An image as uint8 (3, size, size), RGB (CUB holds a few greyscale photographs), resized bilinearly with
    PIL's antialiasing, as torchvision's Resize does."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1)


def load_cub_raw(size: int = DEFAULT_SIZE, directory: str | Path | None = None) -> RawData:
    """CUB-200-2011 split by species: "train" holds the images of species 1-100, "test" those of species
    101-200, in images.txt's order; label = class id - 1, so `classes[label]` names the species."""
    if size < 1:
        raise ValueError(f"image size must be at least 1 pixel, got {size}")
    return _read_cub(str(cub_folder(directory)), size)


@lru_cache(maxsize=2)  # decoding 11,788 JPEGs takes a minute; a notebook asks again when a cell re-runs
def _read_cub(folder: str, size: int) -> RawData:
    root = Path(folder)
    paths, names = read_index(root / "images.txt"), read_index(root / "classes.txt")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DataFileError(f"{root / 'classes.txt'} should number the classes 1..{len(names)}")
    labels = read_labels(root / "image_class_labels.txt", len(names))
    unlabelled = sorted(set(paths) - set(labels))
    if unlabelled:
        raise DataFileError(f"{root / 'image_class_labels.txt'} gives no class for images {unlabelled[:5]}")
    note_source("cub200", str(root))
    images = sorted(paths)
    train = [i for i in images if labels[i] in TRAIN_CLASS_IDS]
    test = [i for i in images if labels[i] not in TRAIN_CLASS_IDS]
    if not train or not test:
        raise DataFileError(f"{root / 'images.txt'} lists {len(train)} images of species 1-100 and {len(test)} of "
                         "species 101-200; metric learning needs both")

    def read(ids: list[int]) -> tuple[Tensor, Tensor]:
        pixels = np.stack([read_image(root / "images" / paths[i], size) for i in ids])
        return torch.from_numpy(pixels), torch.tensor([labels[i] - 1 for i in ids], dtype=torch.int64)

    classes = tuple(species_name(names[c]) for c in range(1, len(names) + 1))
    return RawData("cub200", *read(train), *read(test), classes)


def load_cub(size: int = DEFAULT_SIZE, directory: str | Path | None = None) -> Data:
    """CUB-200-2011 for metric learning, as float images normalised by the training species' per-channel mean and
    std (as `load_data` normalises every dataset). No validation split: nothing is chosen on one, the last epoch
    is reported."""
    raw = load_cub_raw(size, directory)
    train, test = raw.x_train.float(), raw.x_test.float()
    mean, std = channel_statistics(train)
    for images in (train, test):  # in place: at 224 pixels each split is 3.5 GB of floats
        images.sub_(mean).div_(std)
    return Data(raw.name, Split(train, raw.y_train), Split(train[:0], raw.y_train[:0]), Split(test, raw.y_test),
                raw.classes)
