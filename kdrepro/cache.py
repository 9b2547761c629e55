"""Trained teachers and finished runs, saved once and reused by later runs and other notebooks.

An entry's key is everything that determines it (the configuration passed in) plus a fingerprint of the
package's source, so a change to the code can never serve a stale teacher or result. Files are written
atomically; an unreadable file is reported, deleted and recomputed, never crashed on.
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

from kdrepro.paths import REPO_ROOT, cache_dir
from kdrepro.results import atomic_write_bytes, atomic_write_text

# Modules that only present or locate results: editing them cannot change a trained model or a metric.
PRESENTATION_MODULES = {"cli.py", "report.py", "display.py", "results.py", "paths.py", "__main__.py",
                        "plots.py"}


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the package's Python sources that compute results, read once per process: the code that runs."""
    digest = hashlib.sha256()
    package = REPO_ROOT / "kdrepro"
    sources = [p for p in package.rglob("*.py") if p.relative_to(package).as_posix() not in PRESENTATION_MODULES]
    for path in sorted(sources):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps({"key": key, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Cache:
    def __init__(self, root: Path | None = None):
        self.root = root or cache_dir()

    def model(self, name: str, key: dict[str, Any], build: Callable[[], nn.Module],
              train: Callable[[nn.Module], None]) -> nn.Module:
        """The trained model for `key`: loaded (weights_only) if cached, else built, trained and saved."""
        path = self.root / "models" / f"{_slug(name)}-{key_digest(key)}.pt"
        model = build()
        if path.exists():
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                return model.eval()
            except Exception as error:  # any unreadable or mismatched file is retrained, whatever the cause
                warnings.warn(f"cached model {path} is unreadable ({error.__class__.__name__}: {error}); retraining")
                path.unlink()
                model = build()
        train(model)
        atomic_write_bytes(path, _serialise(model.state_dict()))
        return model.eval()

    def record(self, name: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The JSON-able result for `key`: read if cached, else computed and saved."""
        path = self.root / "runs" / f"{_slug(name)}-{key_digest(key)}.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                warnings.warn(f"cached result {path} is unreadable ({error}); recomputing")
                path.unlink()
        result = compute()
        atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True))
        return result


def _serialise(state_dict: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
