import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kdrepro import cli, experiments, render
from kdrepro.cache import Cache
from kdrepro.plan import plan, state
from kdrepro.results import publish_directory


def test_list_names_every_paper_and_its_profiles(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "hinton_kd" in out and "01_hinton_kd.ipynb" in out and "smoke, cpu, paper" in out


def test_an_unknown_paper_lists_the_valid_ones():
    with pytest.raises(SystemExit, match="unknown paper 'hinton'; choose from hinton_kd"):
        cli.main(["run", "hinton"])


def test_an_unknown_profile_lists_the_valid_ones():
    with pytest.raises(SystemExit, match="unknown profile 'gpu' for hinton_kd; choose one of smoke, cpu, paper"):
        cli.main(["reproduce", "--profile", "gpu"])


PAPER_OF_NOTEBOOK = {paper.notebook: paper.id for paper in experiments.PAPERS.values()}


def fake_papermill(monkeypatch, calls, raises=None):
    """papermill as far as the runner sees it: the executed copy written, the paper's results published as
    Experiment.save does (unless `raises` says what the notebook of a paper raises instead); no run trained
    before (a notebook that trains nothing needs none)."""
    import papermill
    monkeypatch.setattr(cli, "train_runs", lambda paper_ids, profile, jobs: None)

    def execute_notebook(source, output, parameters, **kwargs):
        paper_id = PAPER_OF_NOTEBOOK[Path(source).name]
        calls.append(parameters["profile"])
        output.write_text("{}")
        if raises and paper_id in raises:
            raise raises[paper_id]
        publish_directory(output.parent / paper_id, lambda folder: None)
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_reproduce_skips_papers_already_done_and_resumes_after_an_interruption(isolated, monkeypatch, capsys):
    calls = []
    fake_papermill(monkeypatch, calls, raises={"attention_transfer": KeyboardInterrupt()})
    with pytest.raises(SystemExit) as interrupted:
        cli.main(["reproduce", "--profile", "smoke"])
    assert interrupted.value.code == 130
    assert "interrupted: rerun to resume" in capsys.readouterr().err
    assert not cli.executed_notebook("attention_transfer", "smoke").exists()  # no half-written result

    fake_papermill(monkeypatch, calls)
    cli.main(["reproduce", "--profile", "smoke"])
    assert all(cli.executed_notebook(paper_id, "smoke").exists() for paper_id in experiments.PAPERS)
    cli.main(["reproduce", "--profile", "smoke"])
    papers = len(experiments.PAPERS)
    # hinton_kd and fitnets, then attention_transfer interrupted; the rerun resumed there; the third skipped all
    assert calls == ["smoke"] * (3 + papers - 2)
    out = capsys.readouterr().out
    assert "already done" in out and "claims reproduced; summary in" in out
    cli.main(["reproduce", "--profile", "smoke", "--force"])
    assert len(calls) == 3 + 2 * papers - 2


def test_committed_results_alone_do_not_count_as_done(isolated, monkeypatch, capsys):
    for paper_id in experiments.PAPERS:  # a fresh clone: every executed notebook committed, the cache empty
        cli.executed_notebook(paper_id, "smoke").parent.mkdir(parents=True)
        cli.executed_notebook(paper_id, "smoke").write_text("{}")
    calls = []
    fake_papermill(monkeypatch, calls)
    cli.main(["reproduce", "--profile", "smoke"])
    assert len(calls) == len(experiments.PAPERS) and "already done" not in capsys.readouterr().out
    cli.main(["reproduce", "--profile", "smoke"])
    assert len(calls) == len(experiments.PAPERS)
    assert capsys.readouterr().out.count("already done") == len(experiments.PAPERS)


def test_the_done_marker_records_what_determines_the_results(isolated, monkeypatch):
    fake_papermill(monkeypatch, [])
    cli.main(["run", "rkd", "--profile", "smoke"])
    [marker] = (isolated / "cache" / "done").iterdir()
    notebook = (cli.notebooks_dir() / "05_rkd.ipynb").read_bytes()
    assert json.loads(marker.read_text()) == {
        "paper": "rkd", "profile": "smoke", "results": str(isolated / "results" / "smoke" / "rkd"),
        "notebook_sha256": hashlib.sha256(notebook).hexdigest(), "package_sha256": cli.package_sha256()}


def test_a_changed_notebook_or_package_or_an_emptied_cache_reruns_the_papers(isolated, monkeypatch):
    calls = []
    fake_papermill(monkeypatch, calls)
    reproduce = ["reproduce", "--profile", "smoke", "--papers", "hinton_kd,rkd"]
    cli.main(reproduce)
    notebooks = isolated / "notebooks"
    shutil.copytree(cli.notebooks_dir(), notebooks)
    monkeypatch.setattr(cli, "notebooks_dir", lambda: notebooks)
    cli.main(reproduce)
    assert len(calls) == 2                           # the same notebooks, byte for byte: both done
    with open(notebooks / "05_rkd.ipynb", "a") as notebook:
        notebook.write("\n")
    cli.main(reproduce)
    assert len(calls) == 3                           # rkd's notebook changed
    monkeypatch.setattr(cli, "package_sha256", lambda: "another package")
    cli.main(reproduce)
    assert len(calls) == 5
    shutil.rmtree(isolated / "cache")
    cli.main(reproduce)
    assert len(calls) == 7


def test_the_package_hash_follows_every_file_but_not_bytecode(tmp_path):
    package = tmp_path / "kdrepro"
    (package / "__pycache__").mkdir(parents=True)
    (package / "train.py").write_text("epochs = 1\n")
    (package / "departures.md").write_text("none\n")
    before = cli.package_sha256(package)
    (package / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    assert cli.package_sha256(package) == before
    (package / "departures.md").write_text("one\n")
    assert cli.package_sha256(package) != before
    (package / "departures.md").write_text("none\n")
    (package / "departures.md").rename(package / "notes.md")   # the same bytes under another name
    assert cli.package_sha256(package) != before


@pytest.mark.parametrize("committed", [False, True], ids=["no results yet", "committed results"])
def test_a_notebook_that_publishes_nothing_is_an_error(isolated, monkeypatch, committed):
    import papermill
    if committed:
        cli.executed_notebook("hinton_kd", "smoke").parent.mkdir(parents=True)
    monkeypatch.setattr(papermill, "execute_notebook", lambda source, output, **kwargs: output.write_text("{}"))
    with pytest.raises(SystemExit, match="error: 01_hinton_kd.ipynb finished without publishing results"):
        cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert not cli.executed_notebook("hinton_kd", "smoke").exists()


def test_the_profile_variable_is_restored_after_a_run(isolated, monkeypatch):
    calls = []
    fake_papermill(monkeypatch, calls)
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert calls == ["smoke"] and "KDREPRO_PROFILE" not in os.environ


def execution_error():
    import papermill
    return papermill.PapermillExecutionError(3, 3, "load()", "DatasetNotFoundError",
                                             "Fashion-MNIST not found; apt-get install dataset-fashion-mnist", [])


def test_a_failing_notebook_names_the_error_and_keeps_the_executed_copy(isolated, monkeypatch):
    fake_papermill(monkeypatch, [], raises={"hinton_kd": execution_error()})
    with pytest.raises(SystemExit, match="failed in cell 3: DatasetNotFoundError: Fashion-MNIST not found") as error:
        cli.main(["run", "hinton_kd", "--profile", "smoke"])
    kept = str(error.value).rsplit(" ", 1)[-1]
    assert kept == str(isolated / "results" / "smoke" / ".hinton_kd.partial.ipynb")
    assert (isolated / "results" / "smoke" / ".hinton_kd.partial.ipynb").exists()
    assert not cli.executed_notebook("hinton_kd", "smoke").exists()


def test_failing_papers_do_not_stop_the_others_and_the_summary_is_built(isolated, monkeypatch, capsys):
    calls = []
    fake_papermill(monkeypatch, calls, raises={"fitnets": execution_error(), "rkd": RuntimeError("Kernel died")})
    with pytest.raises(SystemExit, match=r"^error: fitnets, rkd failed \(see their output above\)"):
        cli.main(["reproduce", "--profile", "smoke"])
    assert len(calls) == len(experiments.PAPERS)
    done = {paper_id for paper_id in experiments.PAPERS if cli.is_done(paper_id, "smoke")}
    assert done == set(experiments.PAPERS) - {"fitnets", "rkd"}
    out = capsys.readouterr().out
    assert f"[2/{len(experiments.PAPERS)}] fitnets: FAILED: 02_fitnets.ipynb failed in cell 3: DatasetNotFoundError" \
        in out
    assert f"[5/{len(experiments.PAPERS)}] rkd: FAILED: RuntimeError: Kernel died" in out
    assert "claims reproduced; summary in" in out and (isolated / "results" / "smoke" / "README.md").exists()


def test_run_executes_the_notebook_headless_and_keeps_it_beside_its_results(isolated, short_results, monkeypatch,
                                                                            capfd):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert "Kernel is running over TCP" not in capfd.readouterr().err  # it talks to the kernel over Unix sockets
    folder = short_results / "smoke" / "hinton_kd"
    executed = json.loads((folder / "notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"profile": "smoke"}
    published = {p.name for p in folder.iterdir()}
    assert {"README.md", "claims.json", "provenance.json", "table.csv", "runs.csv"} <= published
    assert all(v["verdict"] == "not evaluated" for v in json.loads((folder / "claims.json").read_text()))
    assert cli.is_done("hinton_kd", "smoke") and not (folder.parent / ".hinton_kd.kernel").exists()


def test_parallel_reproduce_runs_papers_at_once_prefixes_their_output_and_reports_failures(isolated, monkeypatch,
                                                                                            capsys):

    def paper_command(paper_id, profile):
        folder = isolated / "results" / profile / paper_id
        code = (f"import os, pathlib, sys, time; print('threads', os.environ['OMP_NUM_THREADS'], flush=True); "
                f"time.sleep(0.5); folder = pathlib.Path({str(folder)!r}); folder.mkdir(parents=True); "
                f"(folder / 'notebook.ipynb').write_text('{{}}'); sys.exit(3 if {paper_id!r} == 'fsp' else 0)")
        return [sys.executable, "-c", code]
    monkeypatch.setattr(cli, "paper_command", paper_command)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    with pytest.raises(SystemExit, match="error: fsp failed"):
        cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd,fsp,dml", "--jobs", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert "hinton_kd | threads 2" in lines and "fsp       | threads 2" in lines   # 4 cores / 2 jobs
    assert "fsp       | FAILED (exit status 3)" in " ".join(lines)
    first_done = next(i for i, line in enumerate(lines) if "| done in" in line or "| FAILED" in line)
    assert sum("| started" in line for line in lines[:first_done]) == 2            # two ran at once
    assert cli.executed_notebook("dml", "smoke").exists()                           # the others still finished
    assert cli.is_done("dml", "smoke") and not cli.is_done("fsp", "smoke")          # marked done when published
    assert any("claims reproduced; summary in" in line for line in lines)


def test_a_notebook_process_of_a_parallel_reproduce_imports_no_torch():
    # it only runs papermill; torch, pandas and scipy would cost it seconds that the notebook's kernel pays again
    command = cli.paper_command("hinton_kd", "smoke")
    assert command[1:3] == ["-m", "kdrepro.render"]
    check = "import sys, kdrepro.render; print(sorted({'torch', 'pandas', 'scipy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout == "[]\n"


def test_a_render_process_imports_papermill_without_the_grammar_that_took_most_of_its_start_up():
    check = ("import sys, kdrepro.render; kdrepro.render.import_papermill(); import nbformat.validator; "
             "import jsonschema; print(sys.modules['rfc3987_syntax'], jsonschema.validate({}, {'type': 'object'}))")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout == "None None\n"


def test_jobs_must_be_positive():
    with pytest.raises(SystemExit, match="--jobs must be at least 1, got 0"):
        cli.main(["reproduce", "--profile", "smoke", "--jobs", "0"])


def test_a_paper_named_twice_runs_once(isolated, monkeypatch):
    calls = []
    fake_papermill(monkeypatch, calls)
    cli.main(["reproduce", "--profile", "smoke", "--papers", "rkd,rkd"])
    assert calls == ["smoke"]
    assert cli.parse_papers("rkd, hinton_kd,rkd") == ["rkd", "hinton_kd"]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--profile", "smoke", "--papers", ","], "error: ',' names no paper; give comma-separated ids"),
    (["reproduce", "--profile", "smoke", "--papers", ""], "error: '' names no paper"),
    (["report", "--profile", "nonsense"], "error: unknown profile 'nonsense' for hinton_kd; choose one of smoke"),
])
def test_a_command_that_names_nothing_valid_stops_before_writing_anything(isolated, argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)
    assert not (isolated / "results").exists() and not (isolated / "cache").exists()


def test_a_paper_running_elsewhere_is_named_with_its_pid_and_left_alone(isolated, monkeypatch, capsys):
    calls = []
    fake_papermill(monkeypatch, calls)
    with render.results_lock("rkd", "smoke"):  # another run's lock: a second open file, as another process has
        with pytest.raises(SystemExit, match=f"error: rkd is already running \\(pid {os.getpid()} on .*\\) on profile"):
            cli.main(["run", "rkd", "--profile", "smoke"])
        with pytest.raises(SystemExit, match="error: rkd failed"):
            cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd,rkd"])
    assert calls == ["smoke"]                                      # hinton_kd's; rkd's notebook never started
    assert f"[2/2] rkd: FAILED: rkd is already running (pid {os.getpid()} on " in capsys.readouterr().out
    cli.main(["run", "rkd", "--profile", "smoke"])
    assert calls == ["smoke", "smoke"]


def test_the_lock_of_a_killed_run_does_not_block_the_next(isolated, monkeypatch):
    lock = isolated / "results" / "smoke" / ".rkd.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; lock = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(lock, fcntl.LOCK_EX); lock.write(str(os.getpid())); lock.flush(); "
                               "print('locked', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    fake_papermill(monkeypatch, [])
    with pytest.raises(SystemExit, match=f"already running \\(pid {holder.pid}\\)"):
        cli.main(["run", "rkd", "--profile", "smoke"])
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    cli.main(["run", "rkd", "--profile", "smoke"])
    assert cli.is_done("rkd", "smoke") and lock.read_text() == f"{os.getpid()} {socket.gethostname()}"


def test_the_kernel_talks_over_sockets_in_the_run_folder_unless_its_path_is_too_long(tmp_path):
    short = render.local_kernel(tmp_path / ".rkd.kernel")["KernelManager"]
    assert short == {"connection_file": str(tmp_path / ".rkd.kernel" / "kernel.json"), "transport": "ipc",
                     "ip": str(tmp_path / ".rkd.kernel" / "ipc")}
    deep = Path("/") / ("d" * 90) / ".rkd.kernel"                  # 110 bytes to ipc-5: beyond macOS's 103
    assert render.local_kernel(deep)["KernelManager"] == {"connection_file": str(deep / "kernel.json")}  # TCP


def test_reproduce_trains_the_papers_runs_before_it_renders_their_notebooks(tiny_fashion_mnist, monkeypatch):
    import papermill
    seen = []

    def execute_notebook(source, output, parameters, **kwargs):   # the notebook sees the cache as it is then
        cache = Cache()
        seen.append({state(entry, cache) for entry in plan(["hinton_kd"], "smoke", "cpu", cache)})
        output.write_text("{}")
        publish_directory(output.parent / "hinton_kd", lambda folder: None)
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.setenv("KDREPRO_DEVICE", "cpu")
    cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd", "--jobs", "2"])
    assert seen == [{"cached"}]
    # from a warm cache, no worker is started
    monkeypatch.setattr(cli, "work_in_processes", lambda *args: pytest.fail("a worker started with nothing to do"))
    cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd", "--jobs", "2", "--force"])
    assert seen == [{"cached"}] * 2


def test_a_reproduce_records_its_time_and_each_papers_runs_and_render_seconds(isolated):
    import json

    from kdrepro.cache import Cache
    from kdrepro.cli import record_reproduce
    from kdrepro.work import timings
    Cache().root.mkdir(parents=True)
    timings(Cache()).write_text(json.dumps({"paper": "fsp", "arm": "fsp", "seed": 0, "seconds": 4.25,
                                            "finished": 1e12}) + "\n")
    (isolated / "results" / "cpu" / "fsp").mkdir(parents=True)
    (isolated / "results" / "cpu" / "fsp" / "provenance.json").write_text(json.dumps({"wall_seconds": 12.5}))
    record_reproduce("cpu", ["fsp", "dml"], jobs=2, wall=99.0, since=1e11, cold=True)
    record = json.loads((isolated / "results" / "cpu" / "reproduce.json").read_text())
    assert record["papers"] == {"fsp": {"runs_seconds": 4.2, "render_seconds": 12.5},
                                "dml": {"runs_seconds": 0.0, "render_seconds": None}}
    assert record["cold"] and not record["every_paper"] and record["wall_seconds"] == 99.0 and record["jobs"] == 2


def test_the_listed_runs_are_located_once_per_package_then_read_from_the_cache(tiny_fashion_mnist, monkeypatch):
    monkeypatch.setenv("KDREPRO_DEVICE", "cpu")
    located = []

    def counted_plan(*args):
        located.append(args)
        return plan(*args)
    monkeypatch.setattr(cli, "plan", counted_plan)
    records = cli.listed_records("hinton_kd", "smoke")
    assert records == [entry.record for entry in plan(["hinton_kd"], "smoke", "cpu")] and len(located) == 1
    assert cli.listed_records("hinton_kd", "smoke") == records and len(located) == 1     # read from the cache
    assert cli.pending_runs(["hinton_kd"], "smoke") == (len(set(records)), len(set(records)))
    monkeypatch.setattr(cli, "package_sha256", lambda: "another package")
    assert cli.listed_records("hinton_kd", "smoke") == records and len(located) == 2     # located again


def test_a_reproduce_judges_again_only_the_papers_its_notebooks_did_not_judge(isolated, monkeypatch):
    from kdrepro import report
    judged_again = []
    monkeypatch.setattr(report, "rejudge", lambda profile, paper_id: judged_again.append(paper_id))
    fake_papermill(monkeypatch, [], raises={"fsp": execution_error()})
    with pytest.raises(SystemExit, match="fsp failed"):
        cli.main(["reproduce", "--profile", "smoke", "--papers", "hinton_kd,fsp"])
    assert sorted(judged_again) == sorted(set(experiments.PAPERS) - {"hinton_kd"})


def test_a_notebooks_kernel_is_stopped_at_once_when_its_last_cell_has_run(isolated, monkeypatch):
    import papermill
    asked = {}

    def execute_notebook(source, output, parameters, **kwargs):
        asked.update(kwargs)
        output.write_text("{}")
        publish_directory(output.parent / "fsp", lambda folder: None)
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    cli.main(["run", "fsp", "--profile", "smoke"])
    assert asked["shutdown_kernel"] == "immediate"


def test_the_summary_reads_this_reproduces_record_whose_wall_time_then_includes_it(isolated, monkeypatch):
    fake_papermill(monkeypatch, [])
    record = isolated / "results" / "smoke" / "reproduce.json"
    seen = []

    def build_summary(profile, judged):
        seen.append(json.loads(record.read_text()))
        return record
    monkeypatch.setattr(cli, "build_summary", build_summary)
    cli.main(["reproduce", "--profile", "smoke", "--papers", "fsp"])
    assert list(seen[0]["papers"]) == ["fsp"]
    assert json.loads(record.read_text())["wall_seconds"] >= seen[0]["wall_seconds"]
