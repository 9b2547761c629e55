"""The runner as users meet it: several processes at once, a Ctrl-C, a killed run. Each test starts real processes
(with the notebooks faked where a real one adds nothing), in the temporary results and cache of `isolated`."""

import os
import signal
import subprocess
import sys
import time

import pytest

from kdrepro import cli
from kdrepro.processes import Processes

# papermill replaced by a notebook that publishes rkd's results as Experiment.save does, holding its staging folder
# open until the file named by argv[1] exists; then the command line of argv[2:]
HOLDING_NOTEBOOK = """
import pathlib, sys, time
import papermill
from kdrepro import cli
from kdrepro.results import publish_directory

def execute_notebook(source, output, parameters, **kwargs):
    output.write_text("{}")
    def write(folder):
        (folder / "figures").mkdir()
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.05)
        (folder / "figures" / "tsne.png").write_bytes(b"png")
    publish_directory(output.parent / "rkd", write)

papermill.execute_notebook = execute_notebook
cli.train_runs = lambda paper_ids, profile, jobs: None   # a notebook that trains nothing needs no run trained
cli.main(sys.argv[2:])
"""

# reproduce --jobs 2 of three papers whose processes sleep until a Ctrl-C, then leave a file named after their
# paper in the folder argv[1]
SLEEPING_PAPERS = """
import signal, sys
from kdrepro import cli

SLEEPER = ("import pathlib, sys, time\\n"
           "try:\\n    print('working', flush=True)\\n    time.sleep(60)\\n"
           "except KeyboardInterrupt:\\n    pathlib.Path(sys.argv[1]).write_text('interrupted')\\n    sys.exit(130)")
cli.paper_command = lambda paper_id, profile: [sys.executable, "-c", SLEEPER, f"{sys.argv[1]}/{paper_id}"]
cli.train_runs = lambda paper_ids, profile, jobs: None
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if this test's was ignored
cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd,fsp,dml", "--jobs", "2"])
"""


def python(script: str, *args: object, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], text=True, **popen)


def first_to_end(processes: list[subprocess.Popen], timeout: float) -> subprocess.Popen:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                return process
        time.sleep(0.05)
    raise AssertionError(f"none of {len(processes)} processes ended in {timeout} s")


def test_two_reproduces_of_one_paper_publish_it_once_and_the_second_names_the_first(isolated):
    release = isolated / "release"
    command = ["reproduce", "--profile", "smoke", "--papers", "rkd"]
    runs = [python(HOLDING_NOTEBOOK, release, *command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)]
    try:
        second = first_to_end(runs, timeout=120)   # the first holds rkd's staging folder until released
        [first] = [run for run in runs if run is not second]
        out = second.communicate()[0]
        assert second.returncode == 1 and "error: rkd failed" in out
        assert f"rkd: FAILED: rkd is already running (pid {first.pid} on " in out and "on profile 'smoke'" in out
        release.touch()
        assert first.wait(timeout=60) == 0
    finally:
        for run in runs:
            run.kill()
            run.wait()
            run.stdout.close()
    assert (isolated / "results" / "smoke" / "rkd" / "figures" / "tsne.png").read_bytes() == b"png"
    assert len(list((isolated / "cache" / "done").glob("rkd-smoke-*.json"))) == 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_running_papers_at_once_and_starts_no_more(isolated, stop):
    reproduce = python(SLEEPING_PAPERS, isolated, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        working = 0
        while working < 2:                          # both running papers are inside their notebooks
            line = reproduce.stdout.readline()
            assert line, "reproduce ended before its papers started"
            working += line.endswith("| working\n")
        interrupted = time.monotonic()
        reproduce.send_signal(stop)                 # to reproduce alone: its papers run in sessions of their own
        out, err = reproduce.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        reproduce.kill()
    assert reproduce.returncode == 130 and "interrupted: rerun to resume" in err
    assert took < 5                                 # not the 60 s the papers would sleep
    assert (isolated / "hinton_kd").read_text() == "interrupted" == (isolated / "fsp").read_text()
    assert not (isolated / "dml").exists() and "dml" not in out
    assert not (isolated / "results" / "smoke" / "README.md").exists()     # no summary of a stopped run


def test_a_paper_that_ignores_ctrl_c_is_killed_after_the_grace_period():
    processes = Processes()
    stubborn = processes.start([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, "
                                "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"], dict(os.environ))
    assert stubborn.stdout.readline() == "ready\n"
    began = time.monotonic()
    processes.interrupt(grace_seconds=0.5)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL and time.monotonic() - began < 5
    stubborn.stdout.close()
    assert processes.start([sys.executable, "-c", "pass"], dict(os.environ)) is None  # no more once interrupted


def publish_nothing_new(source, output, **kwargs):
    """papermill for a notebook that publishes an empty results folder."""
    output.write_text("{}")
    (output.parent / "hinton_kd").mkdir()


def test_a_killed_run_leaves_its_kernel_files_in_its_own_folder_and_the_next_run_removes_them(isolated,
                                                                                            short_results,
                                                                                            monkeypatch):
    temporary = isolated / "tmp"                    # the system's temporary folder, as the run sees it
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    kernel = short_results / "smoke" / ".hinton_kd.kernel"
    run = subprocess.Popen([sys.executable, "-m", "kdrepro", "run", "hinton_kd", "--profile", "smoke"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (kernel / "ipc-5").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (kernel / "kernel.json").exists(), "the kernel never started"
    finally:
        run.kill()
        run.wait()
    assert list(temporary.iterdir()) == []          # no connection file or socket outside the run's folder

    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", publish_nothing_new)
    cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert not kernel.exists()
