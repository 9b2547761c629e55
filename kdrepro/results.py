"""Results as artifacts with provenance: atomic files, Markdown tables, and the record of how they were made."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from kdrepro.data import sources_read
from kdrepro.paths import REPO_ROOT

VERSIONED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "matplotlib", "papermill", "sacrebleu")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def publish_directory(target: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a staging folder, then swap it in for `target` whole.

    An interruption leaves either the previous complete results or the new ones, never a mixture; a stale
    staging folder from an interrupted run is cleared first.
    """
    staging = target.with_name(f".{target.name}.partial")
    retired = target.with_name(f".{target.name}.old")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def markdown_table(rows: list[dict[str, object]]) -> str:
    """A GitHub Markdown table from rows that share their keys, in the first row's key order."""
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[h]).replace("|", "\\|") for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance(profile: str, seeds: list[int], wall_seconds: float) -> dict[str, object]:
    """How a result was made: code version, software, hardware, profile, seeds, wall time, and which copy of
    each dataset was read."""
    return {
        "profile": profile,
        "seeds": seeds,
        "wall_seconds": round(wall_seconds, 1),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in VERSIONED_PACKAGES if _version(name)},
        "device": device_description(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "data": sources_read(),
    }


def measured_on() -> str:
    """This machine and today's date (UTC), stored beside a figure that depends on the machine (a speed): read back
    from the cache by a later run, the figure still says where and when it was measured."""
    return f"{device_description()}, {datetime.now(timezone.utc):%Y-%m-%d}"


def device_description() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} cores"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""
