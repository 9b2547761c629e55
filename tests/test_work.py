"""`python -m kdrepro work`: the pending runs trained into one cache, each exactly once, by several workers at once,
on this machine or as a job array (submitit's local executor: real processes, the cluster's code path)."""

import subprocess
import sys
from collections import Counter

import pytest

from kdrepro import cli, cluster, work
from kdrepro.cache import Cache
from kdrepro.plan import claim, plan, state

# Hinton's smoke notebook trains 15 models: 16 runs, where kd and kd_T20 are one configuration and kd_omit_bias
# reads kd_omit's model, while the random-teacher control's teacher is a model of its own
HINTON_SMOKE_MODELS = 15

# a worker whose every training appends the trained arm's key digest to the file argv[1]; then `work` of argv[2:]
COUNTING_WORKER = """
import sys
from kdrepro import cli, experiment
from kdrepro.cache import key_digest

train_arm = experiment.train_arm

def counted(arm, *args, **kwargs):
    with open(sys.argv[1], "a") as log:
        log.write(key_digest(arm.key()) + "\\n")
    return train_arm(arm, *args, **kwargs)

experiment.train_arm = counted
cli.main(sys.argv[2:])
"""


def states(paper_id: str = "hinton_kd") -> Counter:
    cache = Cache()
    return Counter(state(entry, cache) for entry in plan([paper_id], "smoke", "cpu", cache))


def test_two_concurrent_workers_train_every_run_exactly_once(tiny_fashion_mnist):
    trainings = tiny_fashion_mnist / "trainings"
    command = ["work", "--profile", "smoke", "--papers", "hinton_kd", "--device", "cpu"]
    workers = [subprocess.Popen([sys.executable, "-c", COUNTING_WORKER, str(trainings), *command],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    trained = trainings.read_text().split()
    assert len(trained) == HINTON_SMOKE_MODELS and len(set(trained)) == HINTON_SMOKE_MODELS
    assert states() == {"cached": 16}


def test_local_workers_fill_the_cache_and_a_second_work_trains_nothing(tiny_fashion_mnist, capsys):
    cli.main(["work", "--profile", "smoke", "--papers", "hinton_kd", "--workers", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "worker 1 | started: " in out and "worker 2 | started: " in out and "FAILED" not in out
    assert states() == {"cached": 16}
    models = sorted((tiny_fashion_mnist / "cache" / "models").iterdir())
    assert len(models) == HINTON_SMOKE_MODELS
    cli.main(["work", "--profile", "smoke", "--papers", "hinton_kd", "--device", "cpu"])
    assert "work: 0 of 15 runs pending" in capsys.readouterr().out
    assert sorted((tiny_fashion_mnist / "cache" / "models").iterdir()) == models


def test_a_job_array_through_submitit_fills_the_cache(tiny_fashion_mnist, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "SCHEDULER", "local")  # the same array, as processes on this machine
    cli.main(["work", "--executor", "slurm", "--workers", "2", "--wait", "--profile", "smoke", "--papers",
              "hinton_kd"])
    out = capsys.readouterr().out
    assert "2 worker(s) submitted as job array" in out and "Resources(gpus=0, cpus=2, mem_gb=8, hours=0.5)" in out
    assert "worker 1 (job " in out and "worker 2 (job " in out and "FAILED" not in out
    assert states() == {"cached": 16}
    assert any((tiny_fashion_mnist / "cache" / "jobs").rglob("*_log.out"))


@pytest.mark.parametrize("lock", ["claim", "record"], ids=["claimed by a worker", "computed by a notebook"])
def test_a_worker_leaves_runs_held_elsewhere_and_waits_for_models_being_trained(tiny_fashion_mnist, lock):
    from test_plan import hold

    cache = Cache()
    teacher, student = plan(["hinton_kd"], "smoke", "cpu", cache)[:2]
    kd = next(entry for entry in plan(["hinton_kd"], "smoke", "cpu", cache) if entry.run.arm.name == "kd")
    holder = hold(claim(teacher, cache) if lock == "claim" else cache.lock(teacher.record))
    try:
        assert work.next_entry([teacher, student, kd], cache) == student
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    holder = hold(cache.lock(teacher.models[0]))   # the teacher's model is being trained by another worker
    try:
        assert work.next_entry([kd], cache) is None
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert work.next_entry([kd], cache) == kd


def test_a_failing_run_does_not_stop_the_others(tiny_fashion_mnist, monkeypatch, capsys):
    ran = []

    def run(self, entry):
        ran.append(entry.label)
        if entry.run.arm.name == "kd_T8":
            raise ArithmeticError("loss is nan")
    monkeypatch.setattr(work.Experiments, "run", run)
    assert work.work(["hinton_kd"], "smoke", "cpu") == ["hinton_kd kd_T8 seed 0"]
    assert len(ran) == 15 and "hinton_kd kd_T8 seed 0: FAILED: ArithmeticError: loss is nan" in capsys.readouterr().out


@pytest.mark.parametrize("visible, expected", [("3,5", ["3", "5", "3"]), ("2", [None] * 3), ("", [None] * 3)])
def test_each_local_worker_gets_a_gpu_of_its_own_when_there_are_several(monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert [work.gpu_of_worker(k).get("CUDA_VISIBLE_DEVICES") for k in range(3)] == expected


def test_workers_must_be_at_least_one():
    with pytest.raises(SystemExit, match="--workers must be at least 1, got 0"):
        cli.main(["work", "--profile", "smoke", "--workers", "0"])


def test_the_runs_listed_are_every_run_the_smoke_notebook_makes(isolated, monkeypatch, paper_id="hinton_kd"):
    """Once `work` has filled a fresh cache, executing the notebook trains and measures nothing: it writes no
    model and no record. (The real dataset, as under nbval: on tiny synthetic images some arms diverge.) `make
    test` checks every other notebook so: `work`, then the notebooks under nbval from its cache."""
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    cli.main(["work", "--profile", "smoke", "--papers", paper_id])
    cache = isolated / "cache"

    def entries():
        return sorted(path.relative_to(cache) for folder in ("models", "runs") for path in (cache / folder).iterdir())
    filled = entries()
    cli.main(["run", paper_id, "--profile", "smoke"])
    assert entries() == filled


def test_the_seconds_of_each_papers_runs_are_summed_from_the_workers_timings_since_a_time(isolated):
    import json

    from kdrepro.cache import Cache
    from kdrepro.work import seconds_by_paper, timings
    cache = Cache()
    cache.root.mkdir(parents=True, exist_ok=True)
    lines = [{"paper": "fsp", "arm": "teacher", "seed": 0, "seconds": 10.5, "finished": 100.0},   # before: left out
             {"paper": "fsp", "arm": "fsp", "seed": 0, "seconds": 2.0, "finished": 200.0},
             {"paper": "fsp", "arm": "fsp", "seed": 1, "seconds": 3.5, "finished": 201.0},
             {"paper": "dml", "arm": "dml_ab", "seed": 0, "seconds": 7.0, "finished": 202.0}]
    timings(cache).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert seconds_by_paper(cache, since=150.0) == {"fsp": 5.5, "dml": 7.0}
