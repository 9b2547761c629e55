"""`python -m kdrepro work`: train the pending runs of a plan into the cache, each exactly once, however many
workers share the cache (on one machine, or on a cluster's nodes through a shared file system).

A worker takes the plan's runs teachers first, each under a claim (a lock of its own, taken without waiting, so
two workers never take one run). It skips a run that another worker holds or that needs a model another worker
is training, and comes back to it; when every run left is held elsewhere it waits. The cache does the rest: an
entry is computed under its lock, so a process that meets a locked entry (a notebook, or a worker whose run needs
a teacher another is training) waits and then reads it, and a worker that dies releases its locks with its
process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from kdrepro import experiments
from kdrepro.cache import Cache
from kdrepro.data import Data
from kdrepro.experiment import Experiment, Run, device_name, profile_variable
from kdrepro.locks import Locked, held, holder
from kdrepro.plan import Entry, claim, datasets, has_runs, plan, runner, teachers_first
from kdrepro.processes import Command, run_processes, thread_environment

POLL_SECONDS = 5.0  # how long a worker waits, when every run left is held by others, before it looks again


def busy(entry: Entry, cache: Cache) -> bool:
    """Whether another process holds the run, or a model it needs that is not cached yet."""
    return runner(entry, cache) is not None or any(
        not model.exists() and holder(cache.lock(model)) is not None for model in entry.models)


def next_entry(todo: list[Entry], cache: Cache) -> Entry | None:
    """The first run of `todo` that is free to start (cached ones are dropped on the way), or None."""
    for entry in list(todo):
        if entry.record.exists():
            todo.remove(entry)
        elif not busy(entry, cache):
            return entry
    return None


def one_per_record(located: list[Entry]) -> list[Entry]:
    """The first run of each record: two names for one configuration (Hinton's kd and kd_T20) are one run."""
    first: dict = {}
    for entry in located:
        first.setdefault(entry.record, entry)
    return list(first.values())


def execute(exp: Experiment, run: Run, data: Data) -> None:
    """What the notebook does for the run: train the arm's model and, when the run has a measure, measure it."""
    if run.measure is None:
        exp.train(run.arm, data)
    else:
        exp.run(run.arm, data, run.measure)


class Experiments:
    """A worker's Experiment and datasets of each paper, made when the paper's first run comes."""

    def __init__(self, profile: str, device: str):
        self.profile, self.device = profile, device
        self._experiments: dict[str, Experiment] = {}
        self._data: dict[str, dict[str, Data]] = {}

    def run(self, entry: Entry) -> None:
        execute(self._experiment(entry.paper), entry.run, self._datasets(entry.paper)[entry.run.data])

    def _experiment(self, paper_id: str) -> Experiment:
        if paper_id not in self._experiments:
            self._experiments[paper_id] = Experiment(experiments.module(paper_id), self.profile, self.device)
        return self._experiments[paper_id]

    def _datasets(self, paper_id: str) -> dict[str, Data]:
        if paper_id not in self._data:
            exp = self._experiment(paper_id)
            self._data[paper_id] = {name: data.to(exp.device) for name, data in
                                    datasets(experiments.module(paper_id), exp.protocol).items()}
        return self._data[paper_id]


def work(paper_ids: list[str], profile: str, device: str = "auto", poll_seconds: float = POLL_SECONDS) -> list[str]:
    """Train every pending run of the papers in this process, alongside any other workers on the same cache.
    Returns the runs that failed (their errors printed); the others are trained regardless."""
    device, cache = device_name(device), Cache()
    with profile_variable(profile):   # the Experiment obeys $KDREPRO_PROFILE: it must be the plan's
        distinct = one_per_record(teachers_first(plan(paper_ids, profile, torch.device(device).type, cache)))
        todo = [entry for entry in distinct if not entry.record.exists()]
        papers, failed = Experiments(profile, device), []
        print(f"work: {len(todo)} of {len(distinct)} runs pending, of "
              f"{', '.join(p for p in paper_ids if has_runs(p)) or 'no paper'} on profile "
              f"{profile!r}, device {device}, cache {cache.root}", flush=True)
        while todo:
            entry = next_entry(todo, cache)
            if entry is None:
                if todo:
                    time.sleep(poll_seconds)
                continue
            todo.remove(entry)
            with ExitStack() as claimed:
                try:
                    claimed.enter_context(held(claim(entry, cache), wait=False))
                except Locked:            # another worker took it meanwhile: looked at again later
                    todo.append(entry)
                    continue
                if not entry.record.exists() and not run_once(papers, entry, len(todo), cache):
                    failed.append(entry.label)
    return failed


def run_once(papers: Experiments, entry: Entry, left: int, cache: Cache) -> bool:
    """Run the entry, saying how it went and keeping its seconds (`timings`); whether it succeeded."""
    began = time.perf_counter()
    try:
        papers.run(entry)
    except Exception as error:  # a run that fails must not stop the others; the notebook meets it again
        print(f"{entry.label}: FAILED: {error.__class__.__name__}: {error}", flush=True)
        return False
    seconds = time.perf_counter() - began
    with open(timings(cache), "a") as log:  # one short line per write: workers' lines never interleave
        log.write(json.dumps({"paper": entry.paper, "arm": entry.run.arm.name, "seed": entry.run.arm.seed,
                              "seconds": round(seconds, 2), "finished": time.time()}) + "\n")
    print(f"{entry.label}: done in {seconds:.1f} s ({left} left)", flush=True)
    return True


def timings(cache: Cache) -> Path:
    """Every run a worker trained and measured, a JSON line each, with its seconds (`reproduce` sums them)."""
    return cache.root / "timings.jsonl"


def seconds_by_paper(cache: Cache, since: float) -> dict[str, float]:
    """The seconds workers spent on each paper's runs that finished after `since` (a time.time())."""
    totals: dict[str, float] = {}
    path = timings(cache)
    for line in path.read_text().splitlines() if path.exists() else []:
        run = json.loads(line)
        if run["finished"] >= since:
            totals[run["paper"]] = totals.get(run["paper"], 0.0) + run["seconds"]
    return totals


def worker_command(paper_ids: list[str], profile: str, device: str) -> list[str]:
    return [sys.executable, "-m", "kdrepro", "work", "--profile", profile, "--papers", ",".join(paper_ids),
            "--device", device, "--workers", "1"]


def gpu_of_worker(worker: int) -> dict[str, str]:
    """On a machine with several GPUs, worker k gets the k-th (round robin) as its only visible one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return {"CUDA_VISIBLE_DEVICES": gpus[worker % len(gpus)]} if len(gpus) > 1 else {}


def work_in_processes(paper_ids: list[str], profile: str, workers: int, device: str = "auto") -> list[str]:
    """`workers` worker processes on this machine (each with cores / workers threads, and a GPU of its own when
    there are several), or this process for one. Returns what failed: the runs of one worker, else the workers."""
    if workers == 1:
        return work(paper_ids, profile, device)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return run_processes({f"worker {k + 1}": Command(worker_command(paper_ids, profile, device),
                                                     {**thread_environment(threads), **gpu_of_worker(k)},
                                                     f"{threads} thread(s)") for k in range(workers)}, workers)
