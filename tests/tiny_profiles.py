"""Shrink a `paper` profile to seconds on tiny dataset files: the same code path, fewer images and epochs."""

from dataclasses import replace
from pathlib import Path

from conftest import write_cifar
from PIL import Image

from kdrepro.experiments.vision import Pair


def use_paper_profile(monkeypatch, module, tiny):
    """`tiny` as `module`'s `paper` profile for one test, whatever $KDREPRO_PROFILE says (nbval's runs set it to
    smoke, and an experiment obeys it over the profile it is given)."""
    monkeypatch.setitem(module.PROFILES, "paper", tiny)
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    return tiny


def tiny_pair(pair: Pair, epochs: int = 1) -> Pair:
    def short(recipe):
        return replace(recipe, epochs=epochs, schedule="cosine", milestones=())
    return replace(pair, train_size=40, val_size=10, image_size=8, teacher_recipe=short(pair.teacher_recipe),
                   student_recipe=short(pair.student_recipe))


def use_tiny_cifar_profile(monkeypatch, data_dir, module, epochs: int = 1, **changes):
    """Tiny CIFAR-10 and CIFAR-100 files, and `module`'s paper profile shrunk to them: two seeds, 40 images."""
    write_cifar(data_dir / "cifar-10-batches-py", 10)
    write_cifar(data_dir / "cifar-100-python", 100)
    paper = module.PROFILES["paper"]
    tiny = replace(paper, seeds=(0, 1), pair=tiny_pair(paper.pair, epochs),
                   benchmark=tuple((tiny_pair(pair), extra) for pair, extra in paper.benchmark), **changes)
    return use_paper_profile(monkeypatch, module, tiny)


def cub_colour(image_id: int) -> tuple[int, int, int]:
    """The uniform colour of tiny CUB image `image_id`: every image its own, so a test can tell them apart."""
    return (image_id * 7) % 256, (100 + image_id * 3) % 256, 255 - image_id


def write_cub(root: Path, class_ids=(1, 2, 101, 102), per_class: int = 3) -> list[int]:
    """A tiny CUB_200_2011 folder under `root`: classes.txt names all 200 species, `per_class` uniform-colour JPEGs
    of each of `class_ids` (sizes vary, as the photographs'), listed in images.txt and image_class_labels.txt.
    Returns each image's class id, in images.txt's order."""
    folder = root / "CUB_200_2011"
    (folder / "images").mkdir(parents=True)
    (folder / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in range(1, 201)))
    images, labels = [], []
    for c in class_ids:
        (folder / "images" / f"{c:03d}.Bird_{c}").mkdir()
        for k in range(per_class):
            image_id = len(images) + 1
            path = f"{c:03d}.Bird_{c}/Bird_{c}_{k:04d}.jpg"
            Image.new("RGB", (20 + 4 * k, 12 + 2 * k), cub_colour(image_id)).save(folder / "images" / path,
                                                                                  quality=95)
            images.append(f"{image_id} {path}\n")
            labels.append(c)
    (folder / "images.txt").write_text("".join(images))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(labels, start=1)))
    return labels


def write_corpus(folder: Path, train: int = 48, val: int = 6, test: int = 10) -> None:
    """A WMT-like corpus folder (train/dev/test, .en and .de, one sentence a line) of the generated task's pairs."""
    from kdrepro.translation import generate
    corpus = generate(seed=3, train_size=train, val_size=val, test_size=test, references=1)
    folder.mkdir(parents=True)
    for split, part in (("train", corpus.train), ("dev", corpus.val), ("test", corpus.test)):
        for language, sentences in (("en", part.sources), ("de", part.targets)):
            (folder / f"{split}.{language}").write_text("".join(" ".join(s) + "\n" for s in sentences))
