"""One paper's notebook executed headless by papermill, its executed copy kept beside the results it publishes.

`python -m kdrepro.render PAPER PROFILE NOTEBOOK` does it in a process of its own, as `reproduce --jobs N` runs
the papers: this module imports papermill and nothing heavy (no torch), so such a process starts in about two
seconds instead of five; the notebook's kernel imports what the notebook needs. The caller marks the paper done.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from kdrepro.locks import Locked, held
from kdrepro.paths import notebooks_dir, results_dir

# The longest path a Unix socket may have: 107 bytes on Linux, 103 on macOS (sun_path less its final NUL)
MAX_SOCKET_PATH = 103


class PaperFailed(Exception):
    """A paper's run did not publish its results; the message says why and what to do."""


def executed_notebook(paper_id: str, profile: str) -> Path:
    """The executed copy of the paper's notebook, kept beside its results."""
    return results_dir() / profile / paper_id / "notebook.ipynb"


@contextmanager
def results_lock(paper_id: str, profile: str) -> Iterator[None]:
    """Held while one process writes a paper's results, so that two runs of a paper never share its staging
    folder (`locks.held`: released when its process ends, however it ends, so a killed run never blocks the next).
    A second run is refused at once, with the owner's pid."""
    with ExitStack() as stack:
        try:
            stack.enter_context(held(results_dir() / profile / f".{paper_id}.lock", wait=False))
        except Locked as error:
            raise PaperFailed(f"{paper_id} is already running ({error.holder}) on profile {profile!r}; wait for it "
                              "to finish, or stop it and rerun") from None
        yield


@contextmanager
def kernel_folder(paper_id: str, profile: str) -> Iterator[Path]:
    """An empty folder beside the paper's results for its kernel's connection file and sockets, removed when the
    run ends; what a killed run left there is removed by the paper's next run (under its lock)."""
    folder = results_dir() / profile / f".{paper_id}.kernel"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def local_kernel(folder: Path):
    """Kernel configuration: the connection file in `folder`, and Unix sockets there rather than unencrypted TCP
    ports (the kernel warns about those on every start), unless `folder`'s path is too long for a socket's."""
    from traitlets.config import Config

    manager = {"connection_file": str(folder / "kernel.json")}
    sockets = folder / "ipc"  # the kernel's five sockets are ipc-1 to ipc-5
    if len(os.fsencode(f"{sockets}-5")) <= MAX_SOCKET_PATH:
        manager.update(transport="ipc", ip=str(sockets))
    return Config({"KernelManager": manager})


def inode(folder: Path) -> int | None:
    """The folder's inode number (None when missing): publishing swaps in a new folder, so a new number shows that
    a run published, even over committed results."""
    try:
        return folder.stat().st_ino
    except FileNotFoundError:
        return None


def import_papermill():
    """papermill, without the optional rfc3987_syntax: nbformat's validator imports jsonschema, which imports that
    package when it is installed (JupyterLab's dependencies install it), and it builds an IRI grammar for 1.2 s on
    import, most of a render process's start-up; no notebook schema checks IRIs. A None entry in sys.modules makes
    its import fail, and jsonschema goes on without it."""
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill
    return papermill


def render(paper_id: str, profile: str, notebook: str) -> None:
    """Execute `notebook` (a file name in notebooks/) headless for `profile` and keep the executed copy beside the
    paper's results. Raises PaperFailed when the notebook fails, publishes nothing, or runs elsewhere already.
    The kernel reads its profile from $KDREPRO_PROFILE, which the caller sets. Once the last cell has run the
    kernel is stopped at once: the notebook has published its results by then (atomically, in a cell), and a
    graceful shutdown waits about a second and a half per notebook for the kernel to exit."""
    papermill = import_papermill()

    partial = results_dir() / profile / f".{paper_id}.partial.ipynb"
    done = executed_notebook(paper_id, profile)
    with results_lock(paper_id, profile), kernel_folder(paper_id, profile) as kernel:
        previous_results = inode(done.parent)
        try:
            papermill.execute_notebook(notebooks_dir() / notebook, partial, parameters={"profile": profile},
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       stdout_file=sys.stdout, stderr_file=sys.stderr, cwd=notebooks_dir(),
                                       config=local_kernel(kernel), shutdown_kernel="immediate")
        except papermill.PapermillExecutionError as error:
            raise PaperFailed(f"{notebook} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                              f"the executed notebook, error included, is {partial}") from None
        if inode(done.parent) in (None, previous_results):
            raise PaperFailed(f"{notebook} finished without publishing results to {done.parent}")
        os.replace(partial, done)


if __name__ == "__main__":
    paper_id, profile, notebook = sys.argv[1:]
    try:
        render(paper_id, profile, notebook)
    except PaperFailed as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None   # SIGINT's exit status, as shells report it: the parent says what to do
