"""`python -m kdrepro`: list the papers, plan and train their runs, run one paper's notebook, reproduce them all
(their runs trained first, then every notebook rendered), build the summary."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from kdrepro import experiments
from kdrepro.cache import Cache, key_digest
from kdrepro.claims import REPRODUCED
from kdrepro.compare import print_differences
from kdrepro.data import DatasetNotFoundError, data_root
from kdrepro.experiment import PROFILE_VARIABLE, device_name, profile_variable
from kdrepro.paths import REPO_ROOT, cache_dir, notebooks_dir, results_dir
from kdrepro.pilot import PILOT_SEEDS, pilot
from kdrepro.plan import has_runs, plan, print_plan
from kdrepro.processes import Command, run_processes, thread_environment
from kdrepro.render import PaperFailed, executed_notebook, render
from kdrepro.report import DEFAULT_PROFILE, build_summary, claim_counts, load_provenance, reproduce_record_path
from kdrepro.results import atomic_write_text
from kdrepro.work import seconds_by_paper, work_in_processes

INTERRUPTED = 130  # the exit status of a process stopped by SIGINT, as shells report it


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


def run_paper(paper_id: str, profile: str) -> None:
    """Execute the paper's notebook headless in this process (`render`) and mark the paper done. Raises
    PaperFailed when the notebook fails, publishes nothing, or runs elsewhere already."""
    record = done_record(paper_id, profile)  # taken before the run: what ran, even if a file changes meanwhile
    with profile_variable(profile):
        render(paper_id, profile, experiments.paper(paper_id).notebook)
    mark_done(record)


def mark_done(record: dict[str, str]) -> None:
    atomic_write_text(done_marker(record), json.dumps(record, indent=1))


def last_wall_seconds(paper_id: str, profile: str) -> float:
    """The paper's wall time at its last run (infinite when never run): `reproduce` starts the longest first."""
    record = load_provenance(profile, paper_id)
    return math.inf if record is None else record["wall_seconds"]


def paper_command(paper_id: str, profile: str) -> list[str]:
    """`render` in a process of its own, which imports little (no torch) and so starts fast."""
    return [sys.executable, "-m", "kdrepro.render", paper_id, profile, experiments.paper(paper_id).notebook]


def run_in_parallel(paper_ids: list[str], profile: str, jobs: int) -> list[str]:
    """Run the papers `jobs` at a time, each in its own process with cores / jobs threads: small networks use
    two single-threaded processes better than one two-threaded one. Each output line is prefixed with its paper;
    each paper that publishes is marked done. Returns the papers that failed; the others finish regardless. A
    Ctrl-C or SIGTERM stops them all."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    environment = {**thread_environment(threads), PROFILE_VARIABLE: profile}
    records = {paper_id: done_record(paper_id, profile) for paper_id in paper_ids}  # what ran, taken before
    failed = run_processes({paper_id: Command(paper_command(paper_id, profile), environment,
                                              f"{experiments.paper(paper_id).notebook} on profile {profile!r}, "
                                              f"{threads} thread(s)") for paper_id in paper_ids}, jobs)
    for paper_id in paper_ids:
        if paper_id not in failed:
            mark_done(records[paper_id])
    return failed


def run_in_turn(paper_ids: list[str], profile: str) -> list[str]:
    """Run the papers one after another in this process. Returns the papers that failed; the others run
    regardless."""
    failed = []
    for number, paper_id in enumerate(paper_ids, start=1):
        step = f"[{number}/{len(paper_ids)}] {paper_id}"
        print(f"{step}: running {experiments.paper(paper_id).notebook} on profile {profile!r}", flush=True)
        began = time.perf_counter()
        try:
            run_paper(paper_id, profile)
        except Exception as error:  # whatever stops one paper (a failing cell, a dead kernel) must not stop the rest
            reason = error if isinstance(error, PaperFailed) else f"{error.__class__.__name__}: {error}"
            print(f"{step}: FAILED: {reason}", flush=True)
            failed.append(paper_id)
        else:
            print(f"{step}: done in {time.perf_counter() - began:.0f} s", flush=True)
    return failed


def train_runs(paper_ids: list[str], profile: str, jobs: int) -> None:
    """The papers' listed runs trained first by `jobs` workers, so that their notebooks render from a warm cache.
    A run that fails is met again by its notebook, which reports it."""
    listed = [paper_id for paper_id in paper_ids if has_runs(paper_id)]
    if listed:
        print(f"reproduce: the runs of {', '.join(listed)} first, {jobs} worker(s)", flush=True)
        work_in_processes(listed, profile, jobs)


def reproduce(paper_ids: list[str], profile: str, force: bool, jobs: int = 1) -> None:
    started, since = time.perf_counter(), time.time()
    todo = []
    for paper_id in paper_ids:
        if is_done(paper_id, profile) and not force:
            print(f"{paper_id}: already done ({executed_notebook(paper_id, profile)}); --force reruns it",
                  flush=True)
        else:
            todo.append(paper_id)
    pending, listed = pending_runs(todo, profile)
    if pending:
        train_runs(todo, profile, jobs)
    elif todo:   # workers would only plan and find nothing to do
        print(f"reproduce: every listed run of {', '.join(todo)} is cached", flush=True)
    if jobs > 1 and len(todo) > 1:
        print(f"reproduce: {len(todo)} papers, {jobs} at a time, longest first", flush=True)
        failed = run_in_parallel(sorted(todo, key=lambda p: -last_wall_seconds(p, profile)), profile, jobs)
    else:
        failed = run_in_turn(todo, profile)
    recorded = bool(todo) and not failed
    if recorded:   # the summary reads each paper's seconds from the record; its final wall time comes after
        record_reproduce(profile, todo, jobs, time.perf_counter() - started, since, cold=pending == listed)
    summary = build_summary(profile, judged=[paper_id for paper_id in paper_ids if paper_id not in failed])
    counts = claim_counts(profile)
    wall = time.perf_counter() - started
    if recorded:
        record_reproduce(profile, todo, jobs, wall, since, cold=pending == listed)
    print(f"reproduce: {wall:.0f} s; {counts[REPRODUCED]} of {sum(counts.values())} "
          f"claims reproduced; summary in {summary}")
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} failed (see their output above); rerun to retry them")


def pending_runs(paper_ids: list[str], profile: str) -> tuple[int, int]:
    """How many of the papers' listed runs are not cached yet, and how many there are (on this machine's device).
    A paper whose dataset is missing is left out: its notebook says what to do."""
    records = set()
    for paper_id in paper_ids:
        try:
            records |= set(listed_records(paper_id, profile))
        except DatasetNotFoundError:
            continue
    return sum(not record.exists() for record in records), len(records)


def listed_records(paper_id: str, profile: str) -> list[Path]:
    """The cache records of the paper's listed runs on this machine's device. `plan` locates them once per
    package, profile, device and data folder (it loads the paper's datasets for their keys: about half a second
    a paper, most of a warm reproduce's start), and the list is kept in the cache for the next time. It only
    decides whether `reproduce` starts workers: the workers and the notebooks locate every run themselves."""
    device = torch.device(device_name("auto")).type
    listing = {"paper": paper_id, "profile": profile, "device": device, "data": str(data_root()),
               "package_sha256": package_sha256()}
    path = cache_dir() / "listed" / f"{paper_id}-{profile}-{key_digest(listing)}.json"
    if path.exists():
        return [cache_dir() / name for name in json.loads(path.read_text())]
    records = [entry.record for entry in plan([paper_id], profile, device)]
    atomic_write_text(path, json.dumps([record.relative_to(cache_dir()).as_posix() for record in records]))
    return records


def record_reproduce(profile: str, paper_ids: list[str], jobs: int, wall: float, since: float, cold: bool) -> None:
    """results/<profile>/reproduce.json: how long this reproduce took, whether it began from a cold cache, and per
    paper the seconds the workers spent on its runs (one thread each in `cpu`) and its notebook's render time;
    `make bench` holds them against the budgets."""
    worked = seconds_by_paper(Cache(), since)
    papers = {paper_id: {"runs_seconds": round(worked.get(paper_id, 0.0), 1),
                         "render_seconds": (load_provenance(profile, paper_id) or {}).get("wall_seconds")}
              for paper_id in paper_ids}
    record = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(wall, 1), "jobs": jobs,
              "cold": cold, "every_paper": sorted(paper_ids) == sorted(experiments.PAPERS), "papers": papers}
    atomic_write_text(reproduce_record_path(profile), json.dumps(record, indent=1))


def parse_papers(text: str | None) -> list[str]:
    """The papers named in `text` (comma-separated, each once, in order); every paper when `text` is None."""
    if text is None:
        return list(experiments.PAPERS)
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise SystemExit(f"error: {text!r} names no paper; give comma-separated ids from "
                         f"{', '.join(experiments.PAPERS)}")
    unknown = [name for name in names if name not in experiments.PAPERS]
    if unknown:
        raise SystemExit(f"error: unknown paper {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(experiments.PAPERS)}")
    return names


def parse_seeds(text: str) -> tuple[int, ...]:
    """`--seeds 100,101,102` as distinct integers, at least two (a pilot measures the spread of paired gains)."""
    try:
        seeds = tuple(dict.fromkeys(int(seed) for seed in text.split(",") if seed.strip()))
    except ValueError:
        raise SystemExit(f"error: --seeds {text!r}: give comma-separated integers, e.g. 100,101,102") from None
    if len(seeds) < 2:
        raise SystemExit(f"error: --seeds {text!r}: a pilot needs at least two seeds (the SD of paired gains)")
    return seeds


def check_profile(paper_ids: list[str], profile: str) -> None:
    """Stop before anything is written when a paper lacks the profile (a mistyped name would create a folder)."""
    for paper_id in paper_ids:
        try:
            experiments.check_profile(paper_id, profile)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdrepro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="papers, their notebooks and profiles")
    listing = commands.add_parser("plan", help="every run of the papers with its cache key and state (cached, "
                               "running, pending), teachers first; trains nothing")
    work = commands.add_parser("work", help="train the pending runs into the cache, each once, teachers first")
    work.add_argument("--executor", choices=("local", "slurm"), default="local",
                      help="local: worker processes on this machine; slurm: a job array (pip install -e '.[cluster]')")
    work.add_argument("--workers", type=int, default=1, help="workers at once (default 1)")
    work.add_argument("--partition", help="the SLURM partition (default: the cluster's)")
    work.add_argument("--wait", action="store_true", help="slurm: wait for the jobs and report them")
    sizing = commands.add_parser("pilot", help="size a protocol: the papers' runs at pilot seeds, each claim's "
                                 "validation gain, SD, MDE at the committed seeds and seeds needed")
    sizing.add_argument("--seeds", default=",".join(map(str, PILOT_SEEDS)),
                        help="comma-separated pilot seeds, none of them committed (default %(default)s)")
    for sub in (listing, work, sizing):
        sub.add_argument("--papers", help="comma-separated paper ids (default: all)")
        sub.add_argument("--device", default="auto", help="auto, cpu or cuda: the device the runs train on, part "
                         "of their keys (slurm: the profile's resources decide)")
    run = commands.add_parser("run", help="run one paper's notebook")
    run.add_argument("paper")
    repro = commands.add_parser("reproduce", help="run every paper not yet done, then build the summary")
    repro.add_argument("--papers", help="comma-separated paper ids (default: all)")
    repro.add_argument("--force", action="store_true", help="rerun papers that are already done")
    repro.add_argument("--jobs", type=int, default=1,
                       help="papers run at once, each in its own process with cores / jobs threads (default 1)")
    report = commands.add_parser("report", help="rebuild the summary from results/")
    compare = commands.add_parser("compare", help="the verdicts that differ between results/<profile> and another "
                                  "run's results folder (e.g. a rerun at another thread count)")
    compare.add_argument("other", type=Path, help="the other run's results folder (its KDREPRO_RESULTS)")
    for sub in (listing, work, sizing, run, repro, report, compare):
        sub.add_argument("--profile", default=DEFAULT_PROFILE)
    args = parser.parse_args(argv)
    try:
        dispatch(args)
    except KeyboardInterrupt:
        print("interrupted: rerun to resume (finished papers and cached runs are kept)", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None


def dispatch(args: argparse.Namespace) -> None:
    if args.command == "list":
        width = max(len(paper_id) for paper_id in experiments.PAPERS)
        for paper in experiments.PAPERS.values():
            print(f"{paper.id:<{width}}  {paper.notebook:<28} {f'{paper.transferred}/{paper.scheme}':<17} "
                  f"profiles: {', '.join(experiments.profiles(paper.id))}")
        return
    if args.command == "report":
        check_profile(list(experiments.PAPERS), args.profile)
        print(build_summary(args.profile))
        return
    if args.command == "compare":
        print_differences(results_dir() / args.profile, args.other / args.profile)
        return
    papers = parse_papers(args.paper if args.command == "run" else args.papers)
    check_profile(papers, args.profile)
    if args.command in ("plan", "work"):
        try:
            if args.command == "plan":
                print_plan(papers, args.profile, torch.device(device_name(args.device)).type)
            else:
                work_command(papers, args)
        except DatasetNotFoundError as error:   # the plan reads every dataset its runs are keyed by
            raise SystemExit(f"error: {error}") from None
    elif args.command == "pilot":
        seeds = parse_seeds(args.seeds)
        for paper_id in papers:
            try:
                with profile_variable(args.profile):
                    pilot(experiments.module(paper_id), args.profile, seeds, args.device)
            except (ValueError, DatasetNotFoundError) as error:
                raise SystemExit(f"error: {paper_id}: {error}") from None
    elif args.command == "run":
        try:
            run_paper(papers[0], args.profile)
        except PaperFailed as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{papers[0]}: results in {executed_notebook(papers[0], args.profile).parent}")
    else:
        if args.jobs < 1:
            raise SystemExit(f"error: --jobs must be at least 1, got {args.jobs}")
        reproduce(papers, args.profile, args.force, args.jobs)


def work_command(paper_ids: list[str], args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise SystemExit(f"error: --workers must be at least 1, got {args.workers}")
    if args.executor == "slurm":
        failed = work_on_cluster(paper_ids, args.profile, args.workers, args.partition, args.wait)
    else:
        failed = work_in_processes(paper_ids, args.profile, args.workers, args.device)
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} failed (see above); rerun to retry")


def work_on_cluster(paper_ids: list[str], profile: str, workers: int, partition: str | None, wait: bool) -> list[str]:
    """Submit the workers as a job array; with `wait`, wait for them. Returns what failed."""
    try:
        from kdrepro import cluster
    except ModuleNotFoundError as error:
        raise SystemExit(f"error: --executor slurm needs {error.name}: pip install -e '.[cluster]'") from None
    jobs = cluster.submit(paper_ids, profile, workers, partition)
    print(f"work: {workers} worker(s) submitted as job array {jobs[0].job_id.split('_')[0]}, each "
          f"{cluster.RESOURCES[profile]}; logs in {cluster.jobs_folder()}; `python -m kdrepro plan --profile "
          f"{profile} --device {cluster.RESOURCES[profile].device}` shows their progress", flush=True)
    return cluster.wait(jobs) if wait else []
