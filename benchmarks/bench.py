"""`make bench`: the speed figures, printed and written to results/bench.md.

1. Offline KD training throughput: kdrepro's loop (`fit` on in-memory tensors, the teacher's logits computed
   once, their cost included) against the conventional PyTorch loop (benchmarks/conventional.py: torchvision's
   FashionMNIST through a DataLoader, the teacher at every step), for three teachers of one student. Same models,
   data, steps and optimiser, measured side by side in interleaved repeats; medians.
2. The `cpu` budgets: each notebook cold and the whole `make reproduce` cold (recorded by the last cold
   `make reproduce` in results/cpu/reproduce.json), and `make reproduce` warm (measured now).
3. Seq-KD decoding speed: greedy and beam search, teacher and student of the seqkd `cpu` profile.

Everything is measured on the CPU, and again on the GPU when there is one.
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar
from unittest import mock

import conventional
import torch
from torch import Tensor

from kdrepro import experiments
from kdrepro.cli import pending_runs
from kdrepro.data import DEBIAN_FASHION_MNIST, Split
from kdrepro.experiments import seqkd
from kdrepro.models import build, count_parameters
from kdrepro.paths import results_dir
from kdrepro.report import load_reproduce_record
from kdrepro.results import atomic_write_text, device_description, markdown_table
from kdrepro.objectives.response import ResponseKD
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.seq2seq import EOS, PAD, Seq2Seq, beam_search, greedy
from kdrepro.train import Recipe, fit

# CIFAR's resnets (16-16-32-64) of growing depth teach one student: the speed-up grows with the teacher's cost
TEACHERS = {f"resnet{depth}": {"family": "resnet", "depth": depth, "channels": (16, 16, 32, 64)}
            for depth in (20, 32, 56)}
STUDENT = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}  # resnet8 at half width
BATCH, STEPS_PER_EPOCH, EPOCHS, REPEATS = 128, 8, 10, 3
IMAGES, VAL_SIZE = BATCH * STEPS_PER_EPOCH, 5000
TEMPERATURE, HARD_WEIGHT, LR = 4.0, 0.1, 0.05
RECIPE = Recipe(epochs=EPOCHS, batch_size=BATCH, lr=LR, schedule="constant")  # the conventional loop's optimiser
BEAM = seqkd.PROFILES["cpu"].beam

Section = tuple[str, list[dict[str, object]], str]  # title, table rows, a note under the table
T = TypeVar("T")


def devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def device_name(device: torch.device) -> str:
    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


def timed(run: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Seconds `run` takes, waiting for the GPU's queued work to finish, and what it returned."""
    started = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


# --- 1. offline KD training throughput ----------------------------------------------------------------------------

def kdrepro_loop(train: Split, teacher, student, device: torch.device) -> float:
    """Train with the teacher's logits computed once (the offline scheme's `Teacher`); the seconds they took."""
    offline = Teacher(teacher, train.x)
    seconds, _ = timed(offline.split_outputs, device)
    fit(student, ResponseKD(TEMPERATURE, HARD_WEIGHT), train, RECIPE, seed=0, teacher=offline, progress_seconds=None)
    return seconds


def conventional_loop(dataset, teacher, student, device: torch.device) -> None:
    """Train with the teacher run on every batch read through the DataLoader."""
    conventional.distil(student, teacher, conventional.loader(dataset, BATCH, seed=0), epochs=EPOCHS, lr=LR,
                        temperature=TEMPERATURE, hard_weight=HARD_WEIGHT, device=device)


def throughput_on(device: torch.device, train: Split, dataset, teacher_config: dict) -> dict[str, list[float]]:
    """Seconds of each loop per repeat, and of kdrepro's teacher logits, the loops interleaved (their order
    alternated) so that a change in the machine's load touches both; each repeat trains a copy of one student."""
    with seeded(0, "init"):
        teacher, student = build(teacher_config, 10, 1).to(device), build(STUDENT, 10, 1).to(device)
    train = Split(train.x.to(device), train.y.to(device))
    loops = {"kdrepro": lambda: kdrepro_loop(train, teacher, copy.deepcopy(student), device),
             "conventional": lambda: conventional_loop(dataset, teacher, copy.deepcopy(student), device)}
    seconds: dict[str, list[float]] = {"kdrepro": [], "conventional": [], "teacher logits": []}
    for repeat in range(REPEATS):
        for name in (list(loops) if repeat % 2 == 0 else list(loops)[::-1]):
            total, teacher_seconds = timed(loops[name], device)
            seconds[name].append(total)
            if name == "kdrepro":
                seconds["teacher logits"].append(teacher_seconds)
        print(f"  repeat {repeat + 1}: kdrepro {seconds['kdrepro'][-1]:.2f} s, "
              f"conventional {seconds['conventional'][-1]:.2f} s", file=sys.stderr)
    return seconds


def throughput_row(device: torch.device, teacher: str, seconds: dict[str, list[float]]) -> dict[str, object]:
    """One pair's medians on one device. The bound is the speed-up with the teacher's logits free: kdrepro saves
    the data pipeline and the teacher's forward passes, but its student steps cost what the conventional loop's do."""
    median = {name: statistics.median(runs) for name, runs in seconds.items()}
    return {"device": device_name(device), "teacher -> student": f"{teacher} -> resnet8",
            "teacher parameters": f"{count_parameters(build(TEACHERS[teacher], 10, 1)):,}",
            "conventional (images/s)": f"{EPOCHS * IMAGES / median['conventional']:,.0f}",
            "kdrepro (images/s)": f"{EPOCHS * IMAGES / median['kdrepro']:,.0f}",
            "of which teacher logits (s)": f"{median['teacher logits']:.2f}",
            "speed-up": f"**{median['conventional'] / median['kdrepro']:.2f}x**",
            "bound": f"{median['conventional'] / (median['kdrepro'] - median['teacher logits']):.2f}x"}


def throughput() -> Section:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = conventional.torchvision_root(DEBIAN_FASHION_MNIST, Path(scratch))
        with mock.patch.dict(os.environ, {"KDREPRO_DATA": str(root)}):  # kdrepro reads the very same files
            data, dataset = conventional.same_data(root, IMAGES, VAL_SIZE)
            for device in devices():
                for teacher, config in TEACHERS.items():
                    print(f"training throughput on {device_name(device)}, {teacher} -> resnet8...", file=sys.stderr)
                    rows.append(throughput_row(device, teacher, throughput_on(device, data.train, dataset, config)))
    title = (f"Offline KD training throughput: CIFAR resnets (16-16-32-64) teaching resnet8 (8-8-16-32, "
             f"{count_parameters(build(STUDENT, 10, 1)):,} parameters), Fashion-MNIST 28x28, {EPOCHS} epochs of "
             f"{STEPS_PER_EPOCH} steps of {BATCH} images, median of {REPEATS}")
    note = (f"Both loops train the same initial student on the same {IMAGES:,} training images (kdrepro's "
            "`load_data` split), normalised by the mean and std of every training image outside the validation "
            f"split, with SGD (momentum 0.9, constant lr {LR}) on Hinton's loss (T = {TEMPERATURE:g}, hard-label weight {HARD_WEIGHT}); tests/test_bench.py "
            "checks that they compute the same loss at every step. The conventional loop reads each image through "
            "torchvision (PIL -> ToTensor -> Normalize) and a DataLoader in the main process (num_workers=0: on two "
            "cores a worker process would take the core the model computes on) and runs the teacher at every step; "
            "kdrepro's `fit` indexes tensors in memory, and its time includes the teacher's logits for every "
            "training image, computed once. The weights are untrained: the cost does not depend on them. The "
            "student's own steps cost the same in both loops, so the speed-up cannot pass the bound (the "
            "conventional loop's time over kdrepro's without the teacher's logits). It grows with the teacher's "
            "cost relative to the student's training step, which is why three teachers are measured.")
    return title, rows, note


# --- 2. notebook wall times -----------------------------------------------------------------------------------------

# The `cpu` budgets (issue 15), in seconds on two cores: each notebook from a cold cache, the whole `make reproduce`
# cold, and warm (every notebook rendered again from a full cache). Seq-KD and on-policy decode with beams: a minute more.
NOTEBOOK_BUDGET = {"seqkd": 480, "on_policy": 480}
DEFAULT_NOTEBOOK_BUDGET, COLD_BUDGET, WARM_BUDGET = 420, 1800, 60


def alone_on_two_cores(paper: dict[str, float | None]) -> float | None:
    """A notebook's cold time on its own, two workers training its runs (one thread each), then its render."""
    if paper["render_seconds"] is None:
        return None
    return paper["runs_seconds"] / 2 + paper["render_seconds"]


def budget_row(what: str, seconds: float | None, budget: float, how: str) -> dict[str, object]:
    within = "not measured" if seconds is None else ("yes" if seconds <= budget else "**no**")
    return {"what": what, "seconds": "" if seconds is None else f"{seconds:.0f}", "budget (s)": budget,
            "within": within, "how": how}


WARM_REPEATS = 3


def warm_reproduce_seconds() -> float | None:
    """Every notebook rendered again from the warm cache, into a temporary results folder (`reproduce --force
    --jobs 2`), the median of WARM_REPEATS; None when the cache does not hold every listed run (a warm time needs
    a warm cache)."""
    papers = list(experiments.PAPERS)
    if pending_runs(papers, "cpu")[0]:
        return None
    seconds = []
    for _ in range(WARM_REPEATS):
        with tempfile.TemporaryDirectory(prefix="kdrepro-warm-") as folder:
            environment = {**os.environ, "KDREPRO_RESULTS": folder}
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kdrepro", "reproduce", "--profile", "cpu", "--force", "--jobs",
                            "2"], env=environment, check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def budgets() -> Section:
    record = load_reproduce_record("cpu")
    rows = []
    for paper in experiments.PAPERS.values():
        times = record["papers"].get(paper.id)
        seconds = None if times is None or not record["cold"] else alone_on_two_cores(times)
        rows.append(budget_row(paper.notebook, seconds, NOTEBOOK_BUDGET.get(paper.id, DEFAULT_NOTEBOOK_BUDGET),
                               "cold: its runs' seconds / 2 workers + its render"))
    cold = record.get("wall_seconds") if record["cold"] and record["every_paper"] else None
    rows.append(budget_row("`make reproduce`, cold", cold, COLD_BUDGET, f"measured ({record.get('finished', '')})"))
    rows.append(budget_row("`make reproduce`, warm", warm_reproduce_seconds(), WARM_BUDGET,
                           f"measured now, median of {WARM_REPEATS}"))
    note = ("From results/cpu/reproduce.json, which a `make reproduce` that trained every run (a cold cache) writes: "
            "its wall time, and per paper the seconds its runs took in the workers (one torch thread each) and its "
            "notebook's render time. A notebook's cold time alone is estimated from them as two workers would "
            "share its runs. Machines of this kind differ by about 30%: a budget met with less headroom than that "
            "may be missed on a slower one. The last section says how this machine's speed compares with that of "
            "the machine of the first committed results.")
    return "Budgets of the `cpu` profile, on two cores", rows, note


# --- 3. Seq-KD decoding speed ---------------------------------------------------------------------------------------

class WithoutEnd(Seq2Seq):
    """A Seq2Seq that never produces EOS: every output is `max_len` words whatever the weights, so the decoding
    cost measured does not hinge on when an (untrained) model happens to stop."""

    def step(self, previous: Tensor, state, encoded):
        log_probs, state = super().step(previous, state, encoded)
        return log_probs.index_fill(1, torch.tensor([EOS], device=log_probs.device), float("-inf")), state


def seqkd_models(data, protocol: seqkd.Protocol, device: torch.device) -> dict[str, Seq2Seq]:
    """Untrained teacher and student of the seqkd experiment's architectures (as SeqKD._build makes them)."""
    models = {}
    for role, (layers, hidden), embedding, dropout in (
            ("teacher", protocol.teacher, protocol.teacher_embedding, protocol.dropout),
            ("student", protocol.student, protocol.student_embedding, 0.0)):
        with seeded(0, "init", role):
            models[f"{role} {layers}x{hidden}"] = WithoutEnd(len(data.source_vocab), len(data.target_vocab), layers,
                                                             hidden, embedding, dropout).to(device)
    return models


def decode(model: Seq2Seq, sources: Tensor, beam: int, max_len: int) -> int:
    """Target words produced for every source (the best hypothesis of a beam), as SeqKD.translate decodes."""
    tokens = greedy(model, sources, max_len) if beam == 1 else beam_search(model, sources, beam, max_len)[0][:, 0]
    return int((tokens != PAD).sum())


# The same decoding on the machine of the first committed `cpu` results (AMD EPYC, 2 cores, 2 torch threads;
# results/bench.md at commit 897f87f), whose cold `make reproduce` took 1,288 s: the models, sources and decoding
# code are unchanged since, so the ratio says how this machine's speed compares with that one's.
REFERENCE_SPEEDS = {"teacher 2x128": (103_550, 27_711), "student 1x48": (326_977, 85_800)}  # greedy, beam 5


def against_reference(name: str, greedy_speed: float, beam_speed: float) -> str:
    reference = REFERENCE_SPEEDS.get(name)
    if reference is None:
        return ""
    return f"{greedy_speed / reference[0]:.2f}x / {beam_speed / reference[1]:.2f}x"


def decoding_on(device: torch.device, data, protocol: seqkd.Protocol) -> list[dict[str, object]]:
    """Each model decoding greedily and with the profile's beam, in turn, REPEATS times; median speeds."""
    sources = data.corpus.sources(data.corpus.test).to(device)
    models = seqkd_models(data, protocol, device)
    speeds: dict[tuple[str, int], list[float]] = {(name, beam): [] for name in models for beam in (1, BEAM)}
    for _ in range(REPEATS):
        for name, beam in speeds:
            seconds, words = timed(lambda: decode(models[name], sources, beam, protocol.max_len), device)
            speeds[name, beam].append(words / seconds)
    rows = []
    for name, model in models.items():
        fast, slow = statistics.median(speeds[name, 1]), statistics.median(speeds[name, BEAM])
        rows.append({"device": device_name(device), "model": name, "parameters": f"{count_parameters(model):,}",
                     "greedy (tokens/s)": f"{fast:,.0f}", f"beam {BEAM} (tokens/s)": f"{slow:,.0f}",
                     f"greedy / beam {BEAM}": f"{fast / slow:.1f}x",
                     "against the reference machine (greedy / beam)":
                         against_reference(name, fast, slow) if device.type == "cpu" else ""})
    return rows


def decoding() -> Section:
    protocol = seqkd.PROFILES["cpu"]
    data = seqkd.load(protocol)
    rows = []
    for device in devices():
        print(f"decoding speed on {device_name(device)}...", file=sys.stderr)
        rows += decoding_on(device, data, protocol)
    title = (f"Seq-KD decoding speed: target tokens per second, the seqkd `cpu` profile's {len(data.corpus.test)} "
             f"test sources in one batch, median of {REPEATS}")
    note = ("Untrained models of the profile's architectures and vocabularies, with the end of sentence forbidden so "
            f"that every output is {protocol.max_len} words (the profile's cap): the cost of a decoding step does not "
            "depend on the weights, only the number of steps does. Beam search counts the words of its best "
            "hypothesis, as the notebook's speed column does. The last column divides this machine's speeds by "
            "those of the machine of the first committed `cpu` results (AMD EPYC, 2 cores; results/bench.md at "
            "commit 897f87f), whose cold `make reproduce` took 1,288 s: below 1, this machine is the slower.")
    return title, rows, note


def main() -> None:
    started = time.perf_counter()
    sections = [throughput(), budgets(), decoding()]
    text = f"# kdrepro benchmarks\n\n{device_description()}, {torch.get_num_threads()} torch threads.\n\n"
    text += "\n".join(f"## {title}\n\n{markdown_table(rows)}\n{note}\n" for title, rows, note in sections)
    print(text)
    atomic_write_text(results_dir() / "bench.md", text)
    print(f"written to {results_dir() / 'bench.md'} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
