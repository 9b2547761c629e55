"""`make bench`: the speed figures, printed and written to results/bench.md.

1. Offline KD training throughput, kdrepro's loop (in-memory tensors, teacher logits computed once) against a
   conventional PyTorch loop (a torchvision dataset through a DataLoader, the teacher's forward at every step):
   same models, data and steps, measured side by side, median of repeats.
2. Each notebook's wall time: the `cpu` profile from its last `make reproduce` (provenance), the `smoke`
   profile measured now through papermill.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdrepro import experiments
from kdrepro.data import load_data, load_raw
from kdrepro.losses.response import hinton_loss
from kdrepro.models import mlp
from kdrepro.paths import notebooks_dir, results_dir
from kdrepro.results import atomic_write_text, device_description, markdown_table
from kdrepro.schemes import ResponseDistillation, teacher_logits
from kdrepro.train import Recipe, fit

EPOCHS, STEPS_PER_EPOCH, BATCH, REPEATS = 3, 50, 128, 3
IMAGES = STEPS_PER_EPOCH * BATCH


def kdrepro_loop(data, teacher, student) -> float:
    """Images per second of `fit` with the teacher's logits computed once (their cost included)."""
    train = data.train.subset(torch.arange(IMAGES))
    started = time.perf_counter()
    targets = teacher_logits(teacher, train.x)
    fit(student, ResponseDistillation(targets, 4.0, 0.1), train, Recipe(epochs=EPOCHS, batch_size=BATCH, lr=0.05),
        seed=0, progress_seconds=None)
    return EPOCHS * IMAGES / (time.perf_counter() - started)


def conventional_loop(raw, teacher, student) -> float:
    """Images per second of the usual loop: per-item dataset access, a DataLoader, the teacher at every step."""
    from torch.utils.data import DataLoader, Dataset

    class Images(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return IMAGES

        def __getitem__(self, i):
            return (self.x[i].float() / 255 - 0.286) / 0.353, self.y[i]

    loader = DataLoader(Images(raw.x_train, raw.y_train), batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    teacher.eval()
    started = time.perf_counter()
    for _ in range(EPOCHS):
        for x, y in loader:
            with torch.no_grad():
                t = teacher(x)
            loss = hinton_loss(student(x), t, y, 4.0, 0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return EPOCHS * IMAGES / (time.perf_counter() - started)


def throughput() -> list[dict[str, object]]:
    data, raw = load_data("fashion_mnist", val_size=5000), load_raw("fashion_mnist")
    teacher = mlp(data.input_shape, (800, 800), 10).eval()
    ours, theirs = [], []
    for _ in range(REPEATS):
        ours.append(kdrepro_loop(data, teacher, mlp(data.input_shape, (300, 300), 10)))
        theirs.append(conventional_loop(raw, teacher, mlp(data.input_shape, (300, 300), 10)))
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return [{"loop": "conventional (DataLoader, teacher every step)", "images/s (median)": f"{theirs_median:,.0f}",
             "ratio": "1.00"},
            {"loop": "kdrepro (tensors in memory, teacher logits once)", "images/s (median)": f"{ours_median:,.0f}",
             "ratio": f"{ours_median / theirs_median:.2f}"}]


def notebook_times() -> list[dict[str, object]]:
    import papermill
    rows = []
    for paper in experiments.PAPERS.values():
        provenance = results_dir() / "cpu" / paper.id / "provenance.json"
        cpu = f"{json.loads(provenance.read_text())['wall_seconds']:.0f} s" if provenance.exists() else "not run"
        os.environ["KDREPRO_PROFILE"] = "smoke"
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            papermill.execute_notebook(notebooks_dir() / paper.notebook, Path(scratch) / "out.ipynb",
                                       parameters={"profile": "smoke"}, kernel_name="python3", progress_bar=False,
                                       cwd=notebooks_dir())
        rows.append({"notebook": paper.notebook, "cpu profile (last reproduce)": cpu,
                     "smoke profile (now, kernel start included)": f"{time.perf_counter() - started:.0f} s"})
    return rows


def main() -> None:
    sections = [("Offline KD training throughput (MLP 2x800 -> 2x300, Fashion-MNIST, "
                 f"{EPOCHS} epochs of {STEPS_PER_EPOCH} steps of {BATCH}, median of {REPEATS})", throughput()),
                ("Notebook wall time", notebook_times())]
    text = f"# kdrepro benchmarks\n\n{device_description()}, {torch.get_num_threads()} torch threads.\n\n"
    text += "\n".join(f"## {title}\n\n{markdown_table(rows)}" for title, rows in sections)
    print(text)
    atomic_write_text(results_dir() / "bench.md", text)
    print(f"written to {results_dir() / 'bench.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
