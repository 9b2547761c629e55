"""The repository's promises: pinned versions agree, source notebooks carry no outputs, CI runs the README's test."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def pins_in_pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    return dict(r.split("==") for r in requirements)


def pins_in_environment() -> dict[str, str]:
    return dict(re.findall(r"^\s*- ([A-Za-z0-9_.-]+)==([^\s]+)\s*$", (ROOT / "environment.yml").read_text(), re.M))


def test_every_dependency_is_pinned_to_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", r) for r in requirements), requirements


def test_environment_yml_declares_the_same_versions_as_pyproject():
    assert pins_in_environment() == pins_in_pyproject()
    assert pins_in_pyproject()["torch"] == "2.14.1" and pins_in_pyproject()["torchvision"] == "0.29.1"
    assert re.search(r"^\s*- python=3\.11\s*$", (ROOT / "environment.yml").read_text(), re.M)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_carry_no_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{notebook.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_has_one_parameters_cell_of_literals(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for line in "".join(tagged[0]["source"]).splitlines():
        code = line.split("#")[0].strip()
        if code:
            name, value = (part.strip() for part in code.split("=", 1))
            assert name.isidentifier() and re.fullmatch(r"""(["'][^"']*["']|-?[0-9.]+|True|False|None)""", value)


def test_there_is_a_notebook_for_every_registered_paper():
    from kdrepro.experiments import PAPERS
    assert {p.notebook for p in PAPERS.values()} <= {n.name for n in NOTEBOOKS}


def test_ci_runs_the_test_command_named_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
