"""`make gpu-check` at tiny sizes on the CPU: the smoke notebook, the paper code path on synthetic files in the
dataset's own format, and the KD loop's images per second, as a GPU machine runs them."""

import os
import subprocess
import sys

from kdrepro.arms import Arm, Net, Stage
from kdrepro.experiment import Run
from kdrepro.measures import AttentionDistance
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy
from kdrepro.paths import REPO_ROOT
from kdrepro.train import Recipe

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the check's script sits in benchmarks/, not in a package
from gpu_check import brief, brief_run  # noqa: E402

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"


def test_the_check_runs_on_the_cpu_at_tiny_sizes(isolated):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--papers", "hinton_kd"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "1. smoke notebooks on cpu: all done" in done.stdout
    # Hinton's paper profile at its first seed: teacher, 2 students, kd and its random-teacher control; the 300-unit
    # student's 2 temperatures and the 30-unit student's 6; the omitted class's 3 arms and the 3% set's 2; the
    # random teacher itself
    assert any(line.startswith("hinton_kd: paper code path, 22 runs of one epoch of 64 images") for line in lines)
    assert "2. paper code paths: all done" in done.stdout
    speeds = [line.split()[-4] for line in lines if "images/s" in line]
    assert len(speeds) == 3 and all(float(s.replace(",", "")) > 0 for s in speeds)
    assert not (isolated / "results").exists()          # everything it wrote was in its temporary folder


def test_the_check_says_how_to_run_it_without_a_gpu():
    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=no_gpu)
    assert done.returncode == 1 and "PyTorch sees no CUDA GPU here; `--device cpu --tiny`" in done.stderr


def test_a_brief_arm_keeps_its_networks_and_objectives_for_one_epoch_a_stage():
    teacher = Arm("teacher", Net("resnet20", "teacher"), CrossEntropy(), Recipe(epochs=240, milestones=(150, 180)))
    adam = Recipe(epochs=50, optimizer="adam", lr=1e-3)
    student = Arm("fitnet", Net("resnet8"), (Stage(CrossEntropy(), 50, recipe=adam), Stage(ResponseKD(4.0, 0.1), 20),
                                             Stage(ResponseKD(4.0, 0.1), 220)), Recipe(epochs=240), teacher)
    short = brief(student)
    assert [stage.epochs for stage in short.objective] == [1, 1, 1] and short.recipe.epochs == 2
    assert short.objective[0].recipe == Recipe(epochs=1, optimizer="adam", lr=1e-3)
    assert short.teacher.recipe == Recipe(epochs=1) and short.net == student.net
    assert [stage.objective for stage in short.objective] == [stage.objective for stage in student.objective]
    run = brief_run(Run(student, AttentionDistance((("block1", "block1"),), teacher)))
    assert run.arm == short and run.measure.teacher.recipe.epochs == 1
