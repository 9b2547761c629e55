"""`python -m kdrepro`: list the papers, run one paper's notebook, reproduce them all, build the summary."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kdrepro import experiments
from kdrepro.cache import key_digest
from kdrepro.claims import REPRODUCED
from kdrepro.experiment import PROFILE_VARIABLE
from kdrepro.paths import REPO_ROOT, cache_dir, notebooks_dir, results_dir
from kdrepro.report import DEFAULT_PROFILE, build_summary, claim_counts, load_provenance
from kdrepro.results import atomic_write_text


def executed_notebook(paper_id: str, profile: str) -> Path:
    """The executed copy of the paper's notebook, kept beside its results."""
    return results_dir() / profile / paper_id / "notebook.ipynb"


def package_sha256(package: Path = REPO_ROOT / "kdrepro") -> str:
    """sha256 over every file of the package, its path and bytes (bytecode aside)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def done_record(paper_id: str, profile: str) -> dict[str, str]:
    """What determines a paper's published results in this checkout: the paper, the profile, the folder they are
    published to, the notebook's source and the whole package (its tables, claims and figures too, which the
    cache's code fingerprint rightly leaves out)."""
    notebook = notebooks_dir() / experiments.paper(paper_id).notebook
    return {"paper": paper_id, "profile": profile, "results": str(results_dir() / profile / paper_id),
            "notebook_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest(), "package_sha256": package_sha256()}


def done_marker(record: dict[str, str]) -> Path:
    """Written after the paper's results are published, in this checkout's cache (never committed) and named by
    everything in `record`: a fresh clone, an emptied cache, or a change to the package or the notebook reruns the
    paper; committed results alone never count as done."""
    return cache_dir() / "done" / f"{record['paper']}-{record['profile']}-{key_digest(record)}.json"


def is_done(paper_id: str, profile: str) -> bool:
    return executed_notebook(paper_id, profile).exists() and done_marker(done_record(paper_id, profile)).exists()


def local_kernel(sockets: Path):
    """Kernel configuration: talk to the kernel over Unix sockets in `sockets`, a folder of this run's own, rather
    than unencrypted TCP ports (the kernel warns about those on every start)."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


def run_paper(paper_id: str, profile: str) -> None:
    """Execute the paper's notebook headless with papermill; keep the executed copy beside its results."""
    import papermill

    paper = experiments.paper(paper_id)
    record = done_record(paper_id, profile)  # taken before the run: what ran, even if a file changes meanwhile
    partial = results_dir() / profile / f".{paper_id}.partial.ipynb"
    partial.parent.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(PROFILE_VARIABLE)
    os.environ[PROFILE_VARIABLE] = profile  # the kernel inherits it, so nothing else can pick another profile
    try:
        with tempfile.TemporaryDirectory(prefix="kdrepro-kernel-") as sockets:
            papermill.execute_notebook(notebooks_dir() / paper.notebook, partial, parameters={"profile": profile},
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       stdout_file=sys.stdout, stderr_file=sys.stderr, cwd=notebooks_dir(),
                                       config=local_kernel(Path(sockets)))
    except papermill.PapermillExecutionError as error:
        raise SystemExit(f"error: {paper.notebook} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                         f"the executed notebook, error included, is {partial}") from None
    finally:
        if previous is None:
            del os.environ[PROFILE_VARIABLE]
        else:
            os.environ[PROFILE_VARIABLE] = previous
    done = executed_notebook(paper_id, profile)
    if not done.parent.is_dir():
        raise RuntimeError(f"{paper.notebook} finished without publishing results to {done.parent}")
    os.replace(partial, done)
    atomic_write_text(done_marker(record), json.dumps(record, indent=1))


def last_wall_seconds(paper_id: str, profile: str) -> float:
    """The paper's wall time at its last run (infinite when never run): `reproduce` starts the longest first."""
    record = load_provenance(profile, paper_id)
    return math.inf if record is None else record["wall_seconds"]


def paper_command(paper_id: str, profile: str) -> list[str]:
    return [sys.executable, "-m", "kdrepro", "run", paper_id, "--profile", profile]


def run_in_parallel(paper_ids: list[str], profile: str, jobs: int) -> list[str]:
    """Run the papers `jobs` at a time, each in its own process with cores / jobs threads: small networks use
    two single-threaded processes better than one two-threaded one. Each output line is prefixed with its paper.
    Returns the papers that failed; the others finish regardless."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    width = max(map(len, paper_ids))
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    def run_one(paper_id: str) -> bool:
        say(f"{paper_id:<{width}} | started: {experiments.paper(paper_id).notebook} on profile {profile!r}, "
            f"{threads} thread(s)")
        began = time.perf_counter()
        with subprocess.Popen(paper_command(paper_id, profile), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=environment) as child:
            for line in child.stdout:
                say(f"{paper_id:<{width}} | {line.rstrip()}")
        outcome = "done" if child.returncode == 0 else f"FAILED (exit status {child.returncode})"
        say(f"{paper_id:<{width}} | {outcome} in {time.perf_counter() - began:.0f} s")
        return child.returncode == 0

    with ThreadPoolExecutor(jobs) as pool:
        succeeded = list(pool.map(run_one, paper_ids))
    return [paper_id for paper_id, ok in zip(paper_ids, succeeded) if not ok]


def reproduce(paper_ids: list[str], profile: str, force: bool, jobs: int = 1) -> None:
    started = time.perf_counter()
    todo = []
    for paper_id in paper_ids:
        if is_done(paper_id, profile) and not force:
            print(f"{paper_id}: already done ({executed_notebook(paper_id, profile)}); --force reruns it",
                  flush=True)
        else:
            todo.append(paper_id)
    failed = []
    if jobs > 1 and len(todo) > 1:
        print(f"reproduce: {len(todo)} papers, {jobs} at a time, longest first", flush=True)
        failed = run_in_parallel(sorted(todo, key=lambda p: -last_wall_seconds(p, profile)), profile, jobs)
    else:
        for number, paper_id in enumerate(todo, start=1):
            print(f"[{number}/{len(todo)}] {paper_id}: running {experiments.paper(paper_id).notebook} "
                  f"on profile {profile!r}", flush=True)
            paper_started = time.perf_counter()
            run_paper(paper_id, profile)
            print(f"[{number}/{len(todo)}] {paper_id}: done in {time.perf_counter() - paper_started:.0f} s",
                  flush=True)
    summary = build_summary(profile)
    counts = claim_counts(profile)
    print(f"reproduce: {time.perf_counter() - started:.0f} s; {counts[REPRODUCED]} of {sum(counts.values())} "
          f"claims reproduced; summary in {summary}")
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} failed (see their output above); rerun to retry them")


def parse_papers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()] if text else list(experiments.PAPERS)
    unknown = [name for name in names if name not in experiments.PAPERS]
    if unknown:
        raise SystemExit(f"error: unknown paper {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(experiments.PAPERS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdrepro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="papers, their notebooks and profiles")
    run = commands.add_parser("run", help="run one paper's notebook")
    run.add_argument("paper")
    repro = commands.add_parser("reproduce", help="run every paper not yet done, then build the summary")
    repro.add_argument("--papers", default="", help="comma-separated paper ids (default: all)")
    repro.add_argument("--force", action="store_true", help="rerun papers that are already done")
    repro.add_argument("--jobs", type=int, default=1,
                       help="papers run at once, each in its own process with cores / jobs threads (default 1)")
    report = commands.add_parser("report", help="rebuild the summary from results/")
    for sub in (run, repro, report):
        sub.add_argument("--profile", default=DEFAULT_PROFILE)
    args = parser.parse_args(argv)

    if args.command == "list":
        width = max(len(paper_id) for paper_id in experiments.PAPERS)
        for paper in experiments.PAPERS.values():
            print(f"{paper.id:<{width}}  {paper.notebook:<28} {f'{paper.transferred}/{paper.scheme}':<17} "
                  f"profiles: {', '.join(experiments.profiles(paper.id))}")
        return
    if args.command == "report":
        print(build_summary(args.profile))
        return
    papers = parse_papers(args.paper if args.command == "run" else args.papers)
    for paper_id in papers:
        try:
            experiments.check_profile(paper_id, args.profile)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
    if args.command == "run":
        run_paper(papers[0], args.profile)
        print(f"{papers[0]}: results in {executed_notebook(papers[0], args.profile).parent}")
    else:
        if args.jobs < 1:
            raise SystemExit(f"error: --jobs must be at least 1, got {args.jobs}")
        reproduce(papers, args.profile, args.force, args.jobs)
