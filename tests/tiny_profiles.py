"""Shrink a `paper` profile to seconds on tiny dataset files: the same code path, fewer images and epochs."""

from dataclasses import replace

from conftest import write_cifar

from kdrepro.experiments.vision import Pair


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
    monkeypatch.setitem(module.PROFILES, "paper", tiny)
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    return tiny
