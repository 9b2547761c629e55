"""Trained teachers and finished runs, saved once and reused by later runs and other notebooks.

An entry's key is everything that determines it (an arm's spec, the data's key, the device) plus a fingerprint of
the code that computes results, so a change to that code can never serve a stale teacher or result, and a change
to anything else (a departures text, a figure's colour, a table, the report) never makes anyone retrain. Files
are written atomically; an unreadable file is reported, deleted and recomputed, never crashed on.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from kdrepro.locks import held
from kdrepro.paths import REPO_ROOT, cache_dir
from kdrepro.results import atomic_write_bytes, atomic_write_text

# What cannot change a trained model or a metric: presentation (tables, figures, the report, the command line,
# the notebooks' execution), the verdicts and the pilot's sizing (judged from the records, never cached), where
# files live, and the paper modules, which only declare arms and measures (specs that key their entries as data)
# and present results; the code that trains and measures lives in the package's other modules.
NOT_COMPUTATION = ("cli.py", "report.py", "overview.py", "display.py", "results.py", "paths.py", "__main__.py",
                   "plots.py", "tables.py", "experiment.py", "experiments/", "locks.py", "plan.py", "work.py",
                   "cluster.py", "compare.py", "claims.py", "pilot.py", "render.py")


def computes_results(relative_path: str) -> bool:
    """Whether a package source (a path relative to kdrepro/) belongs to the code fingerprint."""
    return not any(relative_path == entry or relative_path.startswith(entry) and entry.endswith("/")
                   for entry in NOT_COMPUTATION)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The fingerprint of this checkout's package, read once per process: the code that runs."""
    return package_fingerprint(REPO_ROOT / "kdrepro")


def package_fingerprint(package: Path) -> str:
    """sha256 over a package's Python sources that compute results, each with its path inside the package."""
    digest = hashlib.sha256()
    sources = [p for p in package.rglob("*.py") if computes_results(p.relative_to(package).as_posix())]
    for path in sorted(sources):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps({"key": key, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Cache:
    """Entries computed once, whichever process (on whichever machine sharing the folder) asks first: an entry
    is computed under its lock (`lock`), and a process that finds it locked waits, then reads it."""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_dir()

    def model_path(self, name: str, key: dict[str, Any]) -> Path:
        return self.root / "models" / f"{_slug(name)}-{key_digest(key)}.pt"

    def record_path(self, name: str, key: dict[str, Any]) -> Path:
        return self.root / "runs" / f"{_slug(name)}-{key_digest(key)}.json"

    def lock(self, entry: Path) -> Path:
        """The lock file of an entry: held while the entry is computed."""
        return self.root / "locks" / f"{entry.parent.name}-{entry.name}.lock"

    def model(self, name: str, key: dict[str, Any], build: Callable[[], nn.Module],
              train: Callable[[nn.Module], None]) -> nn.Module:
        """The trained model for `key`: loaded (weights_only) if cached, else built, trained and saved."""
        path = self.model_path(name, key)
        with held(self.lock(path)):
            return self._load_or_train(path, build, train)

    def _load_or_train(self, path: Path, build: Callable[[], nn.Module],
                       train: Callable[[nn.Module], None]) -> nn.Module:
        model = build()
        if path.exists():
            try:
                model.load_state_dict(_finite_weights(torch.load(path, map_location="cpu", weights_only=True)))
                return model.eval()
            except Exception as error:  # any unreadable or mismatched file is retrained, whatever the cause
                problem = (str(error) if isinstance(error, UnusableEntryError)
                           else f"unreadable ({error.__class__.__name__}: {error})")
                warnings.warn(f"cached model {path} is {problem}; retraining")
                path.unlink()
                model = build()
        train(model)
        atomic_write_bytes(path, _serialise(model.state_dict()))
        return model.eval()

    def record(self, name: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The JSON-able result for `key`: read if cached, else computed and saved. Either way it is what the file
        reads back (keys in one order, lists for tuples), so nothing downstream depends on whether it was cached."""
        path = self.record_path(name, key)
        with held(self.lock(path)):
            return self._read_or_compute(path, compute)

    def _read_or_compute(self, path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if path.exists():
            try:
                return _non_empty_mapping(json.loads(path.read_text()))
            except (json.JSONDecodeError, UnicodeDecodeError, UnusableEntryError) as error:
                warnings.warn(f"cached result {path} cannot be used ({error}); recomputing")
                path.unlink()
        text = json.dumps(compute(), indent=1, sort_keys=True)
        atomic_write_text(path, text)
        return json.loads(text)


class UnusableEntryError(ValueError):
    """A cache file that reads but holds what no computation leaves: a record that is not a non-empty mapping
    (published, it would be a row of NaN), a model with non-finite weights."""


def _non_empty_mapping(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict) or not record:
        raise UnusableEntryError(f"it holds {json.dumps(record)[:60]}, not a non-empty mapping of results")
    return record


def _finite_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    bad = next((name for name, value in state.items() if value.is_floating_point() and not value.isfinite().all()),
               None)
    if bad is not None:
        raise UnusableEntryError(f"not usable: its weights hold NaN or infinite values ({bad!r} first)")
    return state


def _serialise(state_dict: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
