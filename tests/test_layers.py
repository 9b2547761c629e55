"""Layers point one way: the modules that train and measure never import the paper registry, the paper modules
or the presentation code (report, overview, tables, figures, display, command line)."""

import ast

import pytest

from kdrepro.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "kdrepro"
UPPER = ("kdrepro.experiments", "kdrepro.report", "kdrepro.overview", "kdrepro.tables", "kdrepro.plots",
         "kdrepro.display", "kdrepro.cli", "kdrepro.experiment")
RUNTIME = ["arms.py", "cache.py", "seeds.py", "train.py", "schemes.py", "measures.py", "data.py", "taps.py",
           "augment.py", "paper.py", *(p.relative_to(PACKAGE).as_posix() for folder in ("losses", "objectives", "models")
                                       for p in (PACKAGE / folder).glob("*.py"))]


def imported(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("module", RUNTIME)
def test_runtime_modules_never_import_the_registry_or_presentation(module):
    upward = {name for name in imported(PACKAGE / module) if name.startswith(UPPER)}
    assert not upward, f"kdrepro/{module} imports {sorted(upward)}"


def test_the_experiment_bookkeeping_does_not_import_the_registry():
    assert not {name for name in imported(PACKAGE / "experiment.py") if name.startswith("kdrepro.experiments")}
