"""The conventional PyTorch offline-KD loop that `make bench` measures kdrepro's against.

A torchvision dataset (`FashionMNIST`, `ToTensor` + `Normalize`) read item by item through a `DataLoader`, and the
frozen teacher's forward pass at every step: the loop most KD code is written as. It uses the same loss
(`hinton_loss`) and optimiser (SGD with momentum, constant learning rate) as `fit` with a constant-schedule
`Recipe`, so that the two loops differ only in how they feed data and teacher targets
(tests/test_bench.py checks that their loss curves agree).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision import datasets, transforms

from kdrepro.data import Data, load_data, load_raw
from kdrepro.losses.response import hinton_loss
from kdrepro.seeds import derive

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision_root(source: Path, root: Path) -> Path:
    """`root` laid out as torchvision's FashionMNIST expects it, `<root>/FashionMNIST/raw/<name>` uncompressed
    (its `_check_exists` looks for the names without `.gz`), filled from `source` (e.g. Debian's gzipped files)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if (source / f"{name}.gz").is_file():
            with gzip.open(source / f"{name}.gz", "rb") as packed, open(raw / name, "wb") as unpacked:
                shutil.copyfileobj(packed, unpacked)
        elif (source / name).is_file():
            shutil.copyfile(source / name, raw / name)
        else:
            raise FileNotFoundError(f"{name}(.gz) not found in {source}; install Debian's dataset-fashion-mnist "
                                    "(sudo apt-get install dataset-fashion-mnist)")
    return root


def training_rows(total: int, train_size: int, val_size: int, seed: int = 0) -> Tensor:
    """The rows of the official training set that `load_data(train_size=..., val_size=..., seed=...)` trains on,
    in its order: the validation images come first in its seeded permutation, the training images next."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[val_size: val_size + train_size]


def pixel_statistics(images: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images' pixels on ToTensor's [0, 1] scale."""
    pixels = images.float() / 255
    return pixels.mean().item(), pixels.std().item()


def fashion_mnist(root: Path, rows: Tensor, statistics: tuple[float, float] | None = None) -> Dataset:
    """The official training images `rows` as torchvision serves them (PIL image -> ToTensor -> Normalize, item
    by item), normalised by `statistics` (mean, std), by default those of these images, computed the usual way
    before training."""
    dataset = datasets.FashionMNIST(root, train=True)
    mean, std = statistics or pixel_statistics(dataset.data[rows])
    dataset.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    return Subset(dataset, rows.tolist())


class Permutations(Sampler[int]):
    """A fresh permutation every epoch from one seeded generator: the order `kdrepro.data.batches` draws with the
    same seed. (RandomSampler draws a second, discarded permutation per epoch, so its later epochs differ.)"""

    def __init__(self, size: int, seed: int):
        self.size, self.generator = size, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=self.generator).tolist())


def loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """Batches in the main process: on two cores a worker process would take the core the model needs. The
    order is the stream `fit` draws its batches from at `seed` (`kdrepro.seeds`), so both loops see one order."""
    return DataLoader(dataset, batch_size=batch_size, sampler=Permutations(len(dataset), derive(seed, "order")),
                      num_workers=0)


def distil(student: nn.Module, teacher: nn.Module, batches: DataLoader, *, epochs: int, lr: float, temperature: float,
           hard_weight: float, momentum: float = 0.9, device: torch.device | str = "cpu") -> Tensor:
    """Offline KD, teacher in evaluation mode and run on every batch; the loss of every step, detached."""
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum)
    teacher.eval()
    student.train()
    losses = []
    for _ in range(epochs):
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                targets = teacher(x)
            loss = hinton_loss(student(x), targets, y, temperature, hard_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    student.eval()
    return torch.stack(losses)


def same_data(root: Path, train_size: int, val_size: int) -> tuple[Data, Dataset]:
    """kdrepro's training split (`load_data`, which must read `root`: set KDREPRO_DATA to it) and the torchvision
    dataset of the same images in the same order."""
    data = load_data("fashion_mnist", train_size=train_size, val_size=val_size)
    raw = load_raw("fashion_mnist")
    rows = training_rows(len(raw.y_train), train_size, val_size)
    pool = training_rows(len(raw.y_train), len(raw.y_train) - val_size, val_size)  # load_data normalises by these
    return data, fashion_mnist(root, rows, statistics=pixel_statistics(raw.x_train[pool]))
