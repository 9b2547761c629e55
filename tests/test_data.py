import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_cifar, write_idx, write_mnist_format
from PIL import Image
from tiny_profiles import cub_colour, write_cub

from kdrepro.cub import load_cub, load_cub_raw
from kdrepro.data import (
    CIFAR_MD5,
    Data,
    DataFileError,
    DatasetNotFoundError,
    Split,
    batches,
    load_data,
    load_raw,
    read_idx,
    read_verified_pickle,
)
from kdrepro.results import provenance


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_returns_the_written_array(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array, gz)
    path = tmp_path / ("a-idx3-ubyte.gz" if gz else "a-idx3-ubyte")
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_reader_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad")


def test_idx_reader_rejects_a_truncated_file(tmp_path):
    write_idx(tmp_path / "t", np.zeros((10, 5), dtype=np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "t")


@pytest.mark.parametrize("folder", ["fashion-mnist", "FashionMNIST/raw"])
def test_fashion_mnist_is_read_from_kdrepro_data(data_dir, folder):
    write_mnist_format(data_dir / folder, n_train=50, n_test=20, gz=True)
    raw = load_raw("fashion_mnist")
    assert raw.x_train.shape == (50, 1, 28, 28) and raw.x_train.dtype == torch.uint8
    assert raw.y_test.tolist() == [i % 10 for i in range(20)]
    assert raw.classes[3] == "Dress"


def test_missing_fashion_mnist_says_how_to_get_it(data_dir):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_raw("fashion_mnist")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="fashion_mnist, mnist, cifar10, cifar100, digits"):
        load_raw("imagenet")


def fake_torchvision_download(monkeypatch, dataset: str, write) -> list:
    """Replace a torchvision downloader by one that writes the files it would fetch; record its calls."""
    import torchvision
    calls = []

    def downloader(root, train, download):
        calls.append(download)
        write(Path(root))
    monkeypatch.setattr(torchvision.datasets, dataset, downloader)
    return calls


def test_mnist_is_downloaded_through_torchvision_when_missing_and_asked_for(data_dir, monkeypatch):
    calls = fake_torchvision_download(monkeypatch, "MNIST",
                                      lambda root: write_mnist_format(root / "MNIST" / "raw", n_train=30, n_test=10))
    raw = load_raw("mnist", download=True)
    assert calls == [True] and raw.x_train.shape == (30, 1, 28, 28) and len(raw.y_test) == 10
    load_raw("mnist", download=True)
    assert calls == [True]  # in memory now


def test_files_on_disk_are_used_without_downloading(data_dir, monkeypatch):
    calls = fake_torchvision_download(monkeypatch, "FashionMNIST", lambda root: None)
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10)
    assert len(load_raw("fashion_mnist", download=True).y_train) == 20 and calls == []


def test_kdrepro_download_variable_allows_the_download(data_dir, monkeypatch):
    calls = fake_torchvision_download(monkeypatch, "CIFAR10",
                                      lambda root: write_cifar(root / "cifar-10-batches-py", 10, n_per_batch=4))
    with pytest.raises(DatasetNotFoundError, match="KDREPRO_DOWNLOAD=1"):
        load_raw("cifar10")
    monkeypatch.setenv("KDREPRO_DOWNLOAD", "1")
    assert load_raw("cifar10").x_train.shape == (20, 3, 32, 32) and calls == [True]


@pytest.mark.parametrize("classes, folder", [(10, "cifar-10-batches-py"), (100, "cifar-100-python")])
def test_cifar_reader_reads_the_pickle_layout(data_dir, classes, folder):
    write_cifar(data_dir / folder, classes, n_per_batch=20)
    raw = load_raw(f"cifar{classes}")
    assert raw.x_train.shape == (100, 3, 32, 32) and raw.x_test.shape == (20, 3, 32, 32)
    assert len(raw.classes) == classes
    assert raw.y_train.tolist()[:12] == [i % classes for i in range(12)]


def test_cifar_channels_are_read_red_then_green_then_blue(data_dir):
    write_cifar(data_dir / "cifar-10-batches-py", 10, n_per_batch=2)
    import pickle
    with open(data_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        row = pickle.load(f)[b"data"][0]
    raw = load_raw("cifar10")
    assert raw.x_train[0, 0, 0, :5].tolist() == row[:5].tolist()          # red plane first
    assert raw.x_train[0, 1, 0, :5].tolist() == row[1024:1029].tolist()   # then green


def test_missing_cifar_says_how_to_get_it(data_dir):
    with pytest.raises(DatasetNotFoundError, match="Unpack the python version of CIFAR-100 into .*KDREPRO_DOWNLOAD=1"):
        load_raw("cifar100")


def test_splits_are_disjoint_sized_and_normalised_by_the_pool_of_training_images(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=30)
    data = load_data("fashion_mnist", train_size=60, val_size=20, seed=3)
    assert (len(data.train), len(data.val), len(data.test), len(data.pool)) == (60, 20, 30, 80)
    assert data.pool.x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.pool.x.std().item() == pytest.approx(1.0, abs=1e-3)
    for split in (data.train, data.pool, data.for_seed(5).train):
        same_image = (split.x.flatten(1)[:, None] == data.val.x.flatten(1)[None]).all(dim=-1)
        assert not same_image.any()


def test_each_seed_draws_its_own_training_subset_from_the_pool_and_every_arm_at_a_seed_the_same(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=30)
    data = load_data("fashion_mnist", train_size=30, val_size=20)

    def rows(seed: int) -> set[tuple[float, ...]]:  # the drawn images, as rows of the pool
        return {tuple(x.flatten().tolist()) for x in data.for_seed(seed).train.x}

    pool = {tuple(x.flatten().tolist()) for x in data.pool.x}
    assert len(rows(0)) == 30 and rows(0) <= pool
    assert rows(0) == rows(0) and rows(0) != rows(1)
    drawn = data.for_seed(1)
    assert drawn.pool is None and drawn.val is data.val and drawn.test is data.test
    assert drawn.for_seed(2) is drawn  # a drawn subset is not drawn again


def test_a_profile_that_trains_on_every_image_draws_nothing(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=30)
    for train_size in (None, 80):
        data = load_data("fashion_mnist", train_size=train_size, val_size=20)
        assert data.pool is None and data.for_seed(3) is data and len(data.train) == 80


def test_same_seed_gives_the_same_split_and_another_seed_another(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=10)
    a, b, c = (load_data("fashion_mnist", val_size=20, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)


@pytest.mark.parametrize("train_size, val_size", [(0, 10), (95, 10), (10, 100), (10, -1)])
def test_impossible_split_sizes_are_rejected(data_dir, train_size, val_size):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=10)
    with pytest.raises(ValueError):
        load_data("fashion_mnist", train_size=train_size, val_size=val_size)


def test_batches_cover_every_row_once_in_a_seeded_order():
    from kdrepro.data import Split
    split = Split(torch.arange(10.0)[:, None], torch.arange(10))
    first = list(batches(split, 4, torch.Generator().manual_seed(0)))
    again = list(batches(split, 4, torch.Generator().manual_seed(0)))
    assert [len(b.y) for b in first] == [4, 4, 2]
    assert sorted(torch.cat([b.index for b in first]).tolist()) == list(range(10))
    assert all(torch.equal(b.x[:, 0].long(), b.index) for b in first)  # index points at the rows it carries
    assert all(torch.equal(x.index, y.index) for x, y in zip(first, again))


def test_digits_need_no_download(data_dir):
    pytest.importorskip("sklearn")
    raw = load_raw("digits")
    assert raw.x_train.shape[1:] == (1, 8, 8) and len(raw.y_train) + len(raw.y_test) == 1797


def test_resized_images_are_the_means_of_pixel_blocks():
    split = Split(torch.arange(16.0).view(1, 1, 4, 4), torch.tensor([0]))
    small = Data("toy", split, split, split, ("a",)).resized(2)
    assert small.test.x.view(2, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert small.input_shape == (1, 2, 2)


def test_load_data_resizes_every_split_after_normalising(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=30)
    full, small = (load_data("fashion_mnist", val_size=20, image_size=size) for size in (None, 14))
    assert small.input_shape == (1, 14, 14) and full.input_shape == (1, 28, 28)
    for name in ("train", "val", "test"):  # each small pixel is the mean of a normalised 2x2 block
        blocks = getattr(full, name).x.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2))
        assert torch.allclose(getattr(small, name).x, blocks, atol=1e-6)


def test_the_cache_key_names_the_dataset_every_split_size_and_the_image_size(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=100, n_test=30)
    full, small = (load_data("fashion_mnist", train_size=60, val_size=20, image_size=size) for size in (None, 14))
    assert full.key() == {"dataset": "fashion_mnist", "train_size": 60, "val_size": 20, "test_size": 30,
                          "image_size": 28, "drawn_from": 80}
    assert small.key() == {**full.key(), "image_size": 14}
    assert full.first_test(10).key() == {**full.key(), "test_size": 10}  # a record measured on fewer test images


def test_first_test_keeps_the_first_test_images_only():
    split = Split(torch.arange(5.0).view(5, 1, 1, 1), torch.arange(5))
    data = Data("toy", split, split, split, ("a",))
    assert data.first_test(2).test.y.tolist() == [0, 1] and len(data.first_test(2).train) == 5
    assert data.first_test(None) is data and len(data.first_test(9).test) == 5


# --- CUB-200-2011 ---------------------------------------------------------------------------------------------

def colours(image_ids) -> torch.Tensor:
    return torch.tensor([cub_colour(i) for i in image_ids])


def test_cub_trains_on_species_1_to_100_and_holds_out_101_to_200(data_dir):
    write_cub(data_dir, class_ids=(101, 1, 2, 102), per_class=3)  # a held-out species first in images.txt
    raw = load_cub_raw(size=8)
    assert raw.name == "cub200" and raw.x_train.dtype == torch.uint8
    assert raw.x_train.shape == (6, 3, 8, 8) and raw.x_test.shape == (6, 3, 8, 8)  # from 20x12 ... 28x16 photos
    assert raw.y_train.tolist() == [0, 0, 0, 1, 1, 1] and raw.y_test.tolist() == [100] * 3 + [101] * 3
    # image ids 1-3 are species 101, 4-6 species 1, 7-9 species 2, 10-12 species 102; uniform colours, RGB order,
    # up to JPEG's rounding
    assert (raw.x_train[:, :, 4, 4].int() - colours(range(4, 10))).abs().max() <= 2
    assert (raw.x_test[:, :, 4, 4].int() - colours([1, 2, 3, 10, 11, 12])).abs().max() <= 2
    assert len(raw.classes) == 200 and raw.classes[0] == "Bird 1" and raw.classes[101] == "Bird 102"


def test_cub_greyscale_photographs_become_three_equal_channels(data_dir):
    write_cub(data_dir, per_class=3)
    Image.new("L", (30, 20), 77).save(data_dir / "CUB_200_2011" / "images" / "001.Bird_1" / "Bird_1_0000.jpg")
    first = load_cub_raw(size=4).x_train[0].int()
    assert (first - 77).abs().max() <= 2 and first.shape == (3, 4, 4)


def test_cub_is_normalised_by_the_training_species_alone(data_dir):
    write_cub(data_dir, per_class=3)
    data = load_cub(size=4)
    # uniform images: per channel, the training pixels are the 6 training colours, 16 pixels each
    train = colours(range(1, 7)).double().repeat_interleave(16, dim=0)
    raw = load_cub_raw(size=4)
    mean, std = raw.x_train.double().mean(dim=(0, 2, 3)), raw.x_train.double().std(dim=(0, 2, 3))
    assert (mean - train.mean(dim=0)).abs().max() < 2.5  # the written colours, up to JPEG's rounding
    expected = (raw.x_test[:, :, 0, 0].double() - mean) / std
    torch.testing.assert_close(data.test.x[:, :, 0, 0].double(), expected, rtol=0, atol=1e-4)
    assert data.train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (len(data.train), len(data.val), len(data.test)) == (6, 0, 6) and data.num_classes == 200


@pytest.mark.parametrize("inside", [False, True])
def test_cub_is_read_from_an_explicit_directory(tmp_path, data_dir, inside):
    write_cub(tmp_path / "birds", per_class=3)
    directory = tmp_path / "birds" / "CUB_200_2011" if inside else tmp_path / "birds"
    assert load_cub_raw(size=4, directory=directory).y_test.tolist() == [100] * 3 + [101] * 3


def test_missing_cub_says_where_it_looked_and_how_to_get_it(data_dir):
    with pytest.raises(DatasetNotFoundError, match="download CUB_200_2011.tgz") as error:
        load_cub_raw(size=4)
    assert str(data_dir / "CUB_200_2011") in str(error.value) and "vision.caltech.edu" in str(error.value)
    assert list(data_dir.iterdir()) == []  # nothing was downloaded


def test_cub_without_held_out_species_is_refused(data_dir):
    write_cub(data_dir, class_ids=(1, 2), per_class=3)
    with pytest.raises(ValueError, match="6 images of species 1-100 and 0 of species 101-200"):
        load_cub_raw(size=4)


# --- damaged or incomplete data files ---------------------------------------------------------------------------

def test_a_truncated_gzip_file_is_named(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10, gz=True)
    labels = data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])  # cut inside the compressed stream
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte.gz is not a complete gzip file \(EOFError"):
        load_raw("fashion_mnist")


def test_a_garbage_gzip_file_is_named(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10, gz=True)
    (data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte.gz is not a complete gzip file "
                                            r"\(BadGzipFile.*replace it"):
        load_raw("fashion_mnist")


def test_a_labels_file_shorter_than_its_images_is_refused(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10)
    write_idx(data_dir / "fashion-mnist" / "train-labels-idx1-ubyte", np.arange(19) % 10)
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte holds 19 labels but .*train-images-idx3-ubyte "
                                            "holds 20 images"):
        load_raw("fashion_mnist")


def test_a_label_beyond_the_classes_is_refused(data_dir):
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10)
    write_idx(data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte", np.full(10, 10))
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte holds the label 10, beyond the 10 classes"):
        load_raw("fashion_mnist")


def test_a_folder_with_three_of_the_four_files_names_the_missing_one_and_reads_no_other_copy(data_dir, monkeypatch,
                                                                                             tmp_path):
    write_mnist_format(tmp_path / "debian", n_train=20, n_test=10)  # a complete copy later in the search order
    monkeypatch.setattr("kdrepro.data.DEBIAN_FASHION_MNIST", tmp_path / "debian")
    write_mnist_format(data_dir / "fashion-mnist", n_train=20, n_test=10)
    (data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"fashion-mnist holds only some of Fashion-MNIST's four IDX files; "
                                                   r"missing: t10k-images-idx3-ubyte\(.gz\)"):
        load_raw("fashion_mnist")
    assert len(list((data_dir / "fashion-mnist").iterdir())) == 3  # the user's files are left as they were


def test_the_copy_read_is_said_and_kept_for_the_provenance(data_dir, monkeypatch, tmp_path, capsys):
    write_mnist_format(tmp_path / "debian", n_train=20, n_test=10)
    monkeypatch.setattr("kdrepro.data.DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr("kdrepro.data._SOURCES", {})
    load_raw("fashion_mnist")
    where = f"{tmp_path / 'debian'} (Debian's dataset-fashion-mnist)"
    assert capsys.readouterr().out == f"fashion_mnist: reading {where}\n"
    assert provenance("cpu", [0], 1.0)["data"] == {"fashion_mnist": where}


def crafted_pickle(marker: Path) -> bytes:
    """A pickle that, once loaded, creates the folder `marker`: what a hostile 'CIFAR batch' could do."""
    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)
    return pickle.dumps({b"data": Payload(), b"labels": [0]})


def test_a_cifar_file_that_is_not_the_published_one_is_never_unpickled(data_dir, tmp_path):
    write_cifar(data_dir / "cifar-10-batches-py", 10, n_per_batch=2)
    marker = tmp_path / "code-ran"
    (data_dir / "cifar-10-batches-py" / "data_batch_3").write_bytes(crafted_pickle(marker))
    with pytest.raises(DataFileError, match=r"data_batch_3 is not the published file \(MD5 [0-9a-f]{32}, expected "
                                            r"[0-9a-f]{32}.*it was not unpickled"):
        load_raw("cifar10")
    assert not marker.exists()


def test_cifar_files_are_checked_against_torchvisions_published_md5():
    import torchvision.datasets as tv
    for dataset in (tv.CIFAR10, tv.CIFAR100):
        published = dict(dataset.train_list + dataset.test_list) | {dataset.meta["filename"]: dataset.meta["md5"]}
        assert CIFAR_MD5[dataset.base_folder] == published


def test_a_verified_pickle_is_read_and_any_other_refused(tmp_path):
    (tmp_path / "batch").write_bytes(pickle.dumps({b"labels": [3]}))
    assert read_verified_pickle(tmp_path / "batch", hashlib.md5(pickle.dumps({b"labels": [3]})).hexdigest()) == \
        {b"labels": [3]}
    with pytest.raises(DataFileError, match="not the published file"):
        read_verified_pickle(tmp_path / "batch", "0" * 32)
