"""The `cpu` protocol's numbers do not depend on how many threads the launcher gave torch: `Experiment` sets the
profile's count. Checked on a workload whose weights differ between 1 and 2 threads without the pin (a
Hinton-sized MLP, one epoch), launched as two processes the way `run` and `reproduce` launch them."""

import os
import subprocess
import sys

import pytest

from kdrepro.paths import REPO_ROOT

TRAIN = """
import hashlib, sys, torch
if sys.argv[1] == "cpu":  # what every notebook and worker does first: its Experiment, in the profile it runs
    from kdrepro.experiment import Experiment
    from kdrepro.experiments import hinton_kd
    Experiment(hinton_kd, "cpu")
from kdrepro.arms import Net
from kdrepro.data import Data, Split
from kdrepro.objectives.task import CrossEntropy
from kdrepro.train import Recipe, fit
g = torch.Generator().manual_seed(0)
split = Split(torch.randn(500, 1, 28, 28, generator=g), torch.randint(0, 10, (500,), generator=g))
model = Net({"family": "mlp", "hidden": [800, 800]}).build(0, Data("t", split, split, split, tuple("abcdefghij")))
fit(model, CrossEntropy(), split, Recipe(epochs=1, lr=0.05), seed=0, progress_seconds=None)
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest())
"""


def weights_digest(threads: int, profile: str, **variables: str) -> str:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **variables}
    done = subprocess.run([sys.executable, "-c", TRAIN, profile], env=environment, cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def test_the_cpu_profile_trains_the_same_weights_whether_launched_with_one_thread_or_two():
    one = weights_digest(1, "cpu")
    assert weights_digest(2, "none") != one   # without the pin, this workload differs between 1 and 2 threads
    assert weights_digest(2, "cpu") == one


def test_kdrepro_threads_reruns_the_cpu_profile_at_another_count():
    assert weights_digest(1, "cpu", KDREPRO_THREADS="2") == weights_digest(2, "none")


def test_a_thread_count_that_is_not_a_positive_number_is_refused_by_name(monkeypatch):
    from kdrepro.experiment import profile_threads
    monkeypatch.setenv("KDREPRO_THREADS", "two")
    with pytest.raises(ValueError, match="KDREPRO_THREADS='two': give a positive number of torch threads"):
        profile_threads("cpu")
    monkeypatch.setenv("KDREPRO_THREADS", "3")
    assert profile_threads("cpu") == 3 and profile_threads("smoke") == 3
    monkeypatch.delenv("KDREPRO_THREADS")
    assert profile_threads("cpu") == 1 and profile_threads("smoke") is None
