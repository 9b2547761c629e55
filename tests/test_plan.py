"""`python -m kdrepro plan`: every run of a paper with its key and state, teachers first, without training."""

import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from kdrepro import cli
from kdrepro.cache import Cache
from kdrepro.experiment import Experiment
from kdrepro.experiments import hinton_kd
from kdrepro.plan import entries, plan, state, trained_before

# Hinton's smoke notebook: 16 runs; kd and kd_T20 are one configuration (T = 20), so 15 records
HINTON_SMOKE_RUNS, HINTON_SMOKE_RECORDS = 16, 15


def hold(lock) -> subprocess.Popen:
    """Another process holding the lock file `lock` (as a worker training that entry does)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from kdrepro.locks import held\nwith held(Path(sys.argv[1])):\n"
                               "    print('locked', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_the_plan_lists_every_run_of_the_notebook_teachers_first_and_trains_nothing(tiny_fashion_mnist):
    located = plan(["hinton_kd"], "smoke", "cpu")
    labels = [entry.label for entry in located]
    assert len(located) == HINTON_SMOKE_RUNS and len({e.record for e in located}) == HINTON_SMOKE_RECORDS
    # the four students on hard labels need no teacher; the 11 distilled ones come after their teacher (the
    # random-teacher control's is the teacher's network untrained)
    assert labels[:5] == ["hinton_kd teacher seed 0", "hinton_kd student seed 0", "hinton_kd small_student seed 0",
                          "hinton_kd scratch_omit seed 0", "hinton_kd hard_small seed 0"]
    assert [entry.depth for entry in located] == [0] * 5 + [1] * 11
    assert all(entry.models[0] == located[0].models[0]                              # the teacher's model first
               for entry in located[5:] if entry.run.arm.name != "kd_random")
    assert {state(entry, Cache()) for entry in located} == {"pending"}
    assert not (tiny_fashion_mnist / "cache" / "models").exists()
    assert not (tiny_fashion_mnist / "cache" / "runs").exists()


def test_an_arm_comes_after_its_teacher_and_after_the_arm_it_starts_from_with_that_arms_teacher():
    arms = hinton_kd.arms(hinton_kd.PROFILES["smoke"])
    checkpoint = arms["kd"]
    fine_tuned = replace(arms["student"], name="fine_tuned", start=checkpoint)
    assert [arm.name for arm in trained_before(fine_tuned)] == ["teacher", "kd"]
    taught = replace(fine_tuned, teacher=arms["teacher"])
    assert [arm.name for arm in trained_before(taught)] == ["teacher", "teacher", "kd"]


def test_a_run_the_notebook_makes_fills_the_entries_the_plan_names(tiny_fashion_mnist):
    cache = Cache()
    teacher, student, *_ = plan(["hinton_kd"], "smoke", "cpu", cache)
    kd = next(entry for entry in plan(["hinton_kd"], "smoke", "cpu", cache) if entry.run.arm.name == "kd")
    exp = Experiment(hinton_kd, "smoke", "cpu")
    exp.run(kd.run.arm, hinton_kd.load(exp.protocol), kd.run.measure)     # as the notebook's cell does
    assert kd.record.exists() and all(model.exists() for model in kd.models)
    assert teacher.models == kd.models[:1]                                # the teacher trained on the way
    assert [state(entry, cache) for entry in (kd, teacher, student)] == ["cached", "pending", "pending"]


def test_a_run_whose_lock_another_process_holds_is_running_with_its_holder(tiny_fashion_mnist):
    cache = Cache()
    teacher = plan(["hinton_kd"], "smoke", "cpu", cache)[0]
    holder = hold(cache.lock(teacher.record))
    try:
        assert state(teacher, cache) == f"running (pid {holder.pid} on {socket.gethostname()})"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert state(teacher, cache) == "pending"                 # the lock of a killed worker is free


def test_keys_depend_on_the_device_and_a_gpu_plan_needs_no_gpu(tiny_fashion_mnist):
    cpu = entries("hinton_kd", "smoke", "cpu", Cache())
    cuda = entries("hinton_kd", "smoke", "cuda", Cache())
    assert [e.label for e in cpu] == [e.label for e in cuda]
    assert not {e.digest for e in cpu} & {e.digest for e in cuda}


def test_the_plan_command_prints_each_run_with_its_key_and_state_then_the_counts(tiny_fashion_mnist, capsys):
    cli.main(["plan", "--profile", "smoke", "--papers", "hinton_kd", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    teacher = plan(["hinton_kd"], "smoke", "cpu")[0]
    assert any(line.startswith("hinton_kd teacher seed 0") and line.endswith(f"{teacher.digest}  pending")
               for line in lines)
    assert lines[-1].startswith(f"plan: {HINTON_SMOKE_RUNS} runs ({HINTON_SMOKE_RECORDS} distinct) on profile "
                                "'smoke', device cpu")
    assert f"0 cached, 0 running, {HINTON_SMOKE_RUNS} pending" in lines[-1]


def test_a_model_the_notebook_only_draws_is_listed_by_its_model(tiny_fashion_mnist, capsys):
    stage1 = next(entry for entry in plan(["fsp"], "smoke", "cpu") if entry.run.arm.name == "fsp_stage1")
    assert stage1.run.measure is None and stage1.record == stage1.models[-1] and stage1.record.suffix == ".pt"
    assert stage1.models[0] != stage1.record                  # after its teacher's model
    cli.main(["plan", "--profile", "smoke", "--papers", "fsp", "--device", "cpu"])
    assert any(line.startswith("fsp fsp_stage1 seed 0") and "model only" in line
               for line in capsys.readouterr().out.splitlines())


def test_a_missing_dataset_stops_the_plan_with_what_to_do(data_dir, isolated):
    with pytest.raises(SystemExit, match=r"error: Fashion-MNIST not found \(looked in .*\)\. Install Debian's package"):
        cli.main(["plan", "--profile", "smoke", "--papers", "hinton_kd"])
