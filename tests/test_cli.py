from pathlib import Path

import pytest

from kdrepro import cli, experiments


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


def fake_papermill(monkeypatch, calls, fail=False):
    import papermill

    papers = {paper.notebook: paper.id for paper in experiments.PAPERS.values()}

    def execute_notebook(source, output, parameters, **kwargs):
        calls.append(parameters["profile"])
        output.write_text("{}")
        (output.parent / papers[Path(source).name]).mkdir(exist_ok=True)  # what Experiment.save publishes
        if fail:
            raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_reproduce_skips_papers_already_done_and_resumes_after_an_interruption(isolated, monkeypatch, capsys):
    calls = []
    fake_papermill(monkeypatch, calls, fail=True)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["reproduce", "--profile", "smoke"])
    assert not cli.executed_notebook("hinton_kd", "smoke").exists()  # no half-written marker

    fake_papermill(monkeypatch, calls)
    cli.main(["reproduce", "--profile", "smoke"])
    assert all(cli.executed_notebook(paper_id, "smoke").exists() for paper_id in experiments.PAPERS)
    cli.main(["reproduce", "--profile", "smoke"])
    papers = len(experiments.PAPERS)
    assert calls == ["smoke"] * (1 + papers)     # the interrupted one, then each paper once; the rerun skips all
    out = capsys.readouterr().out
    assert "already done" in out and "claims reproduced; summary in" in out
    cli.main(["reproduce", "--profile", "smoke", "--force"])
    assert len(calls) == 1 + 2 * papers


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
    import hashlib
    import json
    [marker] = (isolated / "cache" / "done").iterdir()
    notebook = (cli.notebooks_dir() / "05_rkd.ipynb").read_bytes()
    assert json.loads(marker.read_text()) == {
        "paper": "rkd", "profile": "smoke", "results": str(isolated / "results" / "smoke" / "rkd"),
        "notebook_sha256": hashlib.sha256(notebook).hexdigest(), "package_sha256": cli.package_sha256()}


def test_a_changed_notebook_or_package_or_an_emptied_cache_reruns_the_papers(isolated, monkeypatch):
    import shutil
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


def test_a_notebook_that_publishes_nothing_is_an_error(isolated, monkeypatch):
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", lambda source, output, **kwargs: output.write_text("{}"))
    with pytest.raises(RuntimeError, match="without publishing results"):
        cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert not cli.executed_notebook("hinton_kd", "smoke").exists()


def test_the_profile_variable_is_restored_after_a_run(isolated, monkeypatch):
    calls = []
    fake_papermill(monkeypatch, calls)
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    cli.main(["run", "hinton_kd", "--profile", "smoke"])
    import os
    assert calls == ["smoke"] and "KDREPRO_PROFILE" not in os.environ


def test_a_failing_notebook_names_the_error_and_keeps_the_executed_copy(isolated, monkeypatch):
    import papermill

    def execute_notebook(source, output, **kwargs):
        output.write_text("{}")
        raise papermill.PapermillExecutionError(3, 3, "load()", "DatasetNotFoundError",
                                                "Fashion-MNIST not found; apt-get install dataset-fashion-mnist", [])
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    with pytest.raises(SystemExit, match="failed in cell 3: DatasetNotFoundError: Fashion-MNIST not found") as error:
        cli.main(["reproduce", "--profile", "smoke"])
    kept = str(error.value).rsplit(" ", 1)[-1]
    assert kept == str(isolated / "results" / "smoke" / ".hinton_kd.partial.ipynb")
    assert (isolated / "results" / "smoke" / ".hinton_kd.partial.ipynb").exists()
    assert not cli.executed_notebook("hinton_kd", "smoke").exists()


def test_run_executes_the_notebook_headless_and_keeps_it_beside_its_results(isolated, monkeypatch, capfd):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    cli.main(["run", "hinton_kd", "--profile", "smoke"])
    assert "Kernel is running over TCP" not in capfd.readouterr().err  # it talks to the kernel over Unix sockets
    folder = isolated / "results" / "smoke" / "hinton_kd"
    import json
    executed = json.loads((folder / "notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"profile": "smoke"}
    published = {p.name for p in folder.iterdir()}
    assert {"README.md", "claims.json", "provenance.json", "table.csv", "runs.csv"} <= published
    assert all(v["verdict"] == "not evaluated" for v in json.loads((folder / "claims.json").read_text()))


def test_parallel_reproduce_runs_papers_at_once_prefixes_their_output_and_reports_failures(isolated, monkeypatch,
                                                                                            capsys):
    import os
    import sys

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
    assert any("claims reproduced; summary in" in line for line in lines)


def test_jobs_must_be_positive():
    with pytest.raises(SystemExit, match="--jobs must be at least 1, got 0"):
        cli.main(["reproduce", "--profile", "smoke", "--jobs", "0"])
