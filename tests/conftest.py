"""Small dataset files written in the published formats, so the readers are tested without any download."""

import copy
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kdrepro.processes import thread_environment

# pytest-xdist starts a worker process per core, and torch would start a thread per core in each: the cores are
# oversubscribed and OpenMP's waiting threads slow every test many times over (BAN's paper-profile test: 12 s alone,
# 174 s beside another worker). Each worker, and every process its tests start, gets its share of the cores.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    WORKER_THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.update(thread_environment(WORKER_THREADS))
    torch.set_num_threads(WORKER_THREADS)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, big-endian int32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist_format(folder: Path, n_train: int = 120, n_test: int = 40, gz: bool = False, seed: int = 0) -> None:
    """Four IDX files of 28x28 images whose mean brightness encodes the label (so a model can learn them)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28)) + (labels * 20)[:, None, None]
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)


def write_cifar(folder: Path, classes: int, n_per_batch: int = 20) -> None:
    """The python-pickle layout of CIFAR-10 (five data batches, test_batch, batches.meta) or CIFAR-100, each file's
    MD5 put in place of the published one (in the copy of `data.CIFAR_MD5` that `data_dir` installs)."""
    from kdrepro import data
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, label_key: bytes) -> dict:
        labels = [int(i % classes) for i in range(n)]
        return {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), label_key: labels}

    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)
        data.CIFAR_MD5[folder.name][name] = hashlib.md5((folder / name).read_bytes()).hexdigest()

    if classes == 10:
        for i in range(1, 6):
            dump(f"data_batch_{i}", batch(n_per_batch, b"labels"))
        dump("test_batch", batch(n_per_batch, b"labels"))
        dump("batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    else:
        dump("train", batch(5 * n_per_batch, b"fine_labels"))
        dump("test", batch(n_per_batch, b"fine_labels"))
        dump("meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)]})


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty KDREPRO_DATA folder, the in-process dataset cache cleared around the test, and a copy of the CIFAR
    checksums that `write_cifar` may change."""
    from kdrepro import data
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("KDREPRO_DATA", str(folder))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.setattr(data, "CIFAR_MD5", copy.deepcopy(data.CIFAR_MD5))
    data._load_raw_cached.cache_clear()
    yield folder
    data._load_raw_cached.cache_clear()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Results and cache in a temporary folder: tests never touch the repository's own."""
    monkeypatch.setenv("KDREPRO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("KDREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def short_results(monkeypatch):
    """Results in a folder with a short path, for tests of a notebook's kernel: its Unix sockets live beside the
    results, a socket's path holds at most 107 characters, and pytest-xdist's temporary folders are longer."""
    folder = Path(tempfile.mkdtemp(prefix="kdr-"))
    monkeypatch.setenv("KDREPRO_RESULTS", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def torch_threads():
    """A test that makes a `cpu` Experiment pins torch's threads for its whole process (pytest-xdist runs many
    tests in one): every test starts with the count the process began with."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_fashion_mnist(data_dir, isolated):
    """Fashion-MNIST's four IDX files, small (1,600 training and 200 test images, enough for every `smoke` profile),
    which the processes a test starts read too ($KDREPRO_DATA); results and cache in the temporary folder."""
    write_mnist_format(data_dir / "fashion-mnist", n_train=1600, n_test=200)
    return isolated
