"""Where kdrepro reads and writes: resolved from the repository root, never from the caller's directory.

papermill runs a kernel in the caller's directory and nbval in the notebook's, so every path the package
uses starts here. Environment variables move each place elsewhere.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """Committed results: `results/<profile>/<paper>/` (KDREPRO_RESULTS overrides)."""
    return Path(os.environ.get("KDREPRO_RESULTS", REPO_ROOT / "results"))


def cache_dir() -> Path:
    """Trained teachers and finished runs, reused across notebooks and resumed runs (KDREPRO_CACHE overrides)."""
    return Path(os.environ.get("KDREPRO_CACHE", REPO_ROOT / ".cache" / "kdrepro"))


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"
