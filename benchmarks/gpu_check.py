"""`make gpu-check`: what a GPU machine must do before it is trusted with the `paper` profiles, in minutes, with
no download.

1. Every notebook's `smoke` profile on the device: `python -m kdrepro reproduce --profile smoke` (its runs trained
   by workers first, then every notebook rendered), into a temporary results folder and cache.
2. Each paper's `paper` code path for a few steps: its `paper` profile's datasets written small, in each dataset's
   own format (MNIST's IDX files, CIFAR's pickles, CUB's folder, a corpus), and every run of its notebook at the
   first seed trained for one epoch (one per stage) of a few batches and measured: the paper's networks,
   objectives, measures and, with KDREPRO_BF16=1 on a GPU, bf16 autocast and channels-last. (A
   few steps: longer training on random images can leave a network's features all zero, which RKD refuses.)
3. The KD loop's images per second (`fit` with `ResponseKD`, the teacher's logits computed once) for a CIFAR
   benchmark pair, in float32, with bf16 autocast, and with channels-last too.

`--device cpu --tiny` runs the same on the CPU at tiny sizes, in seconds (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the writers of tiny dataset files the tests use

from conftest import write_cifar, write_mnist_format  # noqa: E402
from tiny_profiles import write_corpus, write_cub  # noqa: E402

from kdrepro import data as kdrepro_data  # noqa: E402
from kdrepro import experiments  # noqa: E402
from kdrepro.arms import Arm  # noqa: E402
from kdrepro.data import Data, Split  # noqa: E402
from kdrepro.experiment import Experiment, Run, profile_variable  # noqa: E402
from kdrepro.measures import Ensemble, TeacherMeasure  # noqa: E402
from kdrepro.models import build  # noqa: E402
from kdrepro.objectives.response import ResponseKD  # noqa: E402
from kdrepro.plan import datasets, has_runs  # noqa: E402
from kdrepro.schemes import Teacher  # noqa: E402
from kdrepro.seeds import seeded  # noqa: E402
from kdrepro.train import Recipe, fit  # noqa: E402
from kdrepro.work import execute  # noqa: E402

@dataclass(frozen=True)
class Sizes:
    train: int          # training images of each paper's datasets (the files hold 5,000 more, for validation)
    kd_pair: tuple[str, str]   # teacher, student
    image: int          # the KD loop's images are image x image, RGB
    batch: int
    steps: int          # timed steps per epoch


SIZES = {
    "full": Sizes(256, ("resnet32x4", "resnet8x4"), 32, 128, 40),
    "tiny": Sizes(64, ("resnet14", "resnet8"), 16, 16, 2),
}


# --- 1. the smoke notebooks ---------------------------------------------------------------------------------------

def smoke_notebooks(paper_ids: list[str], device: str, folder: Path) -> bool:
    """`reproduce --profile smoke` of the papers on `device`, in `folder`; whether every notebook succeeded."""
    environment = {**os.environ, "KDREPRO_DEVICE": device, "KDREPRO_RESULTS": str(folder / "results"),
                   "KDREPRO_CACHE": str(folder / "cache")}
    jobs = max(1, min(4, os.cpu_count() or 1, len(paper_ids)))
    command = [sys.executable, "-m", "kdrepro", "reproduce", "--profile", "smoke", "--papers", ",".join(paper_ids),
               "--jobs", str(jobs)]
    return subprocess.run(command, env=environment, cwd=REPO_ROOT).returncode == 0


# --- 2. each paper's paper code path ------------------------------------------------------------------------------

def write_paper_datasets(root: Path, train: int) -> None:
    """MNIST, CIFAR-10 and CIFAR-100 with 5,000 + `train` training images, CUB-200-2011 (16 species of 10 photos,
    8 of them never trained on) and a WMT-like corpus, each in its own format under `root` ($KDREPRO_DATA)."""
    images = 5000 + train
    write_mnist_format(root / "mnist", n_train=images, n_test=max(100, train))
    per_batch = math.ceil(images / 5)   # CIFAR's training set is five batches (one file for CIFAR-100)
    write_cifar(root / "cifar-10-batches-py", 10, per_batch)
    write_cifar(root / "cifar-100-python", 100, per_batch)
    write_cub(root, class_ids=tuple(range(1, 9)) + tuple(range(101, 109)), per_class=10)
    write_corpus(root / "wmt14_en_de")


def few_rows(data: Data, train: int) -> Data:
    """Only the first `train` training images of `data` (a dataset of another kind as it is)."""
    if not isinstance(data, Data):
        return data
    return replace(data, train=data.train.subset(torch.arange(min(train, len(data.train)), device=data.train.y.device)),
                   pool=None)


def brief_recipe(recipe: Recipe, epochs: int = 1) -> Recipe:
    return replace(recipe, epochs=epochs, milestones=())


def brief(arm: Arm) -> Arm:
    """`arm` (and its teachers) for one epoch, or one per stage: the same networks, objectives and data."""
    if not isinstance(arm.objective, tuple):
        objective, epochs = arm.objective, 1
    else:
        objective = tuple(replace(stage, epochs=1, recipe=None if stage.recipe is None else brief_recipe(stage.recipe))
                          for stage in arm.objective)
        epochs = max(1, sum(stage.recipe is None for stage in arm.objective))
    return replace(arm, objective=objective, recipe=brief_recipe(arm.recipe, epochs),
                   teacher=None if arm.teacher is None else brief(arm.teacher))


def brief_run(run: Run) -> Run:
    """The run of the brief arm; a measure that reads other arms (a teacher, an ensemble's members) reads them
    brief."""
    measure = run.measure
    if isinstance(measure, TeacherMeasure):
        measure = replace(measure, teacher=brief(measure.teacher))
    elif isinstance(measure, Ensemble):
        measure = replace(measure, others=tuple(brief(other) for other in measure.others))
    return replace(run, arm=brief(run.arm), measure=measure)


def paper_code_path(paper_id: str, device: str, train: int) -> int:
    """Every run of the paper's notebook at its first seed, brief, on `train` images of the `paper` profile's
    datasets; how many ran."""
    module = experiments.module(paper_id)
    with profile_variable("paper"):
        exp = Experiment(module, "paper", device)
        data = {name: few_rows(dataset, train).to(exp.device) for name, dataset in
                datasets(module, exp.protocol).items()}
        first: list[Run] = []
        for run in module.runs(exp.protocol):   # a shared arm (one teacher) is listed at every seed: once here
            if run.arm.seed == exp.protocol.seeds[0] and run not in first:
                first.append(run)
        for run in first:
            execute(exp, brief_run(run), data[run.data])
    return len(first)


def paper_code_paths(paper_ids: list[str], device: str, folder: Path, train: int) -> list[str]:
    """Each paper's paper code path on synthetic files, its data and cache in `folder`; the papers that failed."""
    os.environ.update(KDREPRO_DATA=str(folder / "data"), KDREPRO_CACHE=str(folder / "cache"))
    kdrepro_data._load_raw_cached.cache_clear()  # another KDREPRO_DATA now
    write_paper_datasets(folder / "data", train)
    failed = []
    for paper_id in paper_ids:
        if not has_runs(paper_id):
            print(f"{paper_id}: paper code path not checked: its runs are not listed (no runs(P))", flush=True)
            continue
        began = time.perf_counter()
        try:
            runs = paper_code_path(paper_id, device, train)
        except Exception as error:  # one paper's failure must not hide the others'
            print(f"{paper_id}: paper code path FAILED: {error.__class__.__name__}: {error}", flush=True)
            failed.append(paper_id)
        else:
            print(f"{paper_id}: paper code path, {runs} runs of one epoch of {train} images: "
                  f"{time.perf_counter() - began:.0f} s", flush=True)
    return failed


# --- 3. the KD loop's images per second ---------------------------------------------------------------------------

def images_per_second(sizes: Sizes, recipe: Recipe, device: torch.device) -> float:
    """Images per second of `fit` with ResponseKD (T = 4) from the offline teacher, the teacher's logits included;
    after one epoch of warm-up (cuDNN's choices, autocast's caches)."""
    n = sizes.batch * sizes.steps
    g = torch.Generator().manual_seed(0)
    train = Split(torch.randn(n, 3, sizes.image, sizes.image, generator=g).to(device),
                  torch.randint(0, 100, (n,), generator=g).to(device))

    def network(architecture, name: str) -> torch.nn.Module:
        with seeded(0, "init", name):
            return build(architecture, 100, 3, (3, sizes.image, sizes.image)).to(device)

    teacher, student = network(sizes.kd_pair[0], "teacher").eval(), network(sizes.kd_pair[1], "student")
    objective, recipe = ResponseKD(4.0, 0.1), replace(recipe, epochs=1, batch_size=sizes.batch)
    fit(student, objective, train, recipe, seed=0, teacher=Teacher(teacher, train.x), progress_seconds=None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    fit(student, objective, train, recipe, seed=1, teacher=Teacher(teacher, train.x), progress_seconds=None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - began)


def throughput(sizes: Sizes, device: torch.device) -> None:
    base = Recipe(epochs=1)
    print(f"KD loop, {sizes.kd_pair[0]} -> {sizes.kd_pair[1]}, {sizes.image}x{sizes.image} RGB, batch {sizes.batch}, "
          f"{sizes.steps} steps, on {device}:")
    float32 = images_per_second(sizes, base, device)
    for label, recipe in (("float32", base), ("bf16 autocast", replace(base, bf16=True)),
                          ("bf16 autocast + channels-last", replace(base, bf16=True, channels_last=True))):
        speed = float32 if recipe == base else images_per_second(sizes, recipe, device)
        print(f"  {label:<30} {speed:10,.0f} images/s  ({speed / float32:.2f}x float32)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--papers", help="comma-separated paper ids (default: all)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for a CPU in seconds")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: PyTorch sees no CUDA GPU here; `--device cpu --tiny` runs the check on the CPU")
    paper_ids = args.papers.split(",") if args.papers else list(experiments.PAPERS)
    sizes = SIZES["tiny" if args.tiny else "full"]
    began = time.perf_counter()
    print(f"gpu-check on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, papers {', '.join(paper_ids)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kdrepro-gpu-check-") as folder:
        notebooks_ok = smoke_notebooks(paper_ids, device.type, Path(folder) / "smoke")
        print(f"1. smoke notebooks on {device}: {'all done' if notebooks_ok else 'FAILED (see above)'}; "
              f"{time.perf_counter() - began:.0f} s so far", flush=True)
        failed = paper_code_paths(paper_ids, device.type, Path(folder) / "paper", sizes.train)
        print(f"2. paper code paths: {'all done' if not failed else 'FAILED: ' + ', '.join(failed)}; "
              f"{time.perf_counter() - began:.0f} s so far", flush=True)
    throughput(sizes, device)
    print(f"gpu-check: {time.perf_counter() - began:.0f} s", flush=True)
    if not notebooks_ok or failed:
        raise SystemExit("error: the check failed (see above)")


if __name__ == "__main__":
    main()
