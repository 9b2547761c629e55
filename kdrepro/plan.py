"""`python -m kdrepro plan`: every run of some papers in a profile, with its cache key and its state, without
training anything.

A paper lists its runs in `runs(P)` (arms at their seeds, measures, datasets): the very specs its notebook runs, so
that a run trained by a worker is a cache hit for the notebook. Each run is located in the cache through
`experiment.CacheKeys`, as the notebook's `Experiment` locates it, and is *cached* (its record is there),
*running* (a worker holds its lock) or *pending*. Runs are ordered teachers first: a run comes after every run
whose model it learns from or starts from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from kdrepro import experiments
from kdrepro.arms import Arm
from kdrepro.cache import Cache
from kdrepro.data import Data
from kdrepro.experiment import CacheKeys, Run
from kdrepro.locks import holder
from kdrepro.measures import ReadsArms


@dataclass(frozen=True)
class Entry:
    """A paper's run located in the cache: its record (a run without a measure: its model), and the models it
    needs, each model's teachers before it and its own model last."""

    paper: str
    run: Run
    record: Path
    models: tuple[Path, ...]
    depth: int   # how many models (teachers, starting points) stand behind the run's model

    @property
    def label(self) -> str:
        return f"{self.paper} {self.run.arm.name} seed {self.run.arm.seed}"

    @property
    def digest(self) -> str:
        """The record's key digest (the end of its file name)."""
        return self.record.stem.rsplit("-", 1)[-1]


def has_runs(paper_id: str) -> bool:
    return hasattr(experiments.module(paper_id), "runs")


def datasets(module: ModuleType, protocol) -> dict[str, Data]:
    """The paper's datasets by name: its `datasets(P)`, or its one dataset `load(P)` as "main"."""
    if hasattr(module, "datasets"):
        return module.datasets(protocol)
    return {"main": module.load(protocol)}


def trained_before(arm: Arm) -> list[Arm]:
    """The arms whose models the arm's training needs, the first-trained first: its teacher and the arm it starts
    from, each after the arms it needs itself."""
    return [needed for before in (arm.teacher, arm.start) if before is not None
            for needed in trained_before(before) + [before]]


def entries(paper_id: str, profile: str, device: str, cache: Cache) -> list[Entry]:
    """The paper's runs in `profile` on `device` ("cpu", "cuda"), located in `cache`, in the notebook's order."""
    module = experiments.module(paper_id)
    protocol = module.PROFILES[experiments.check_profile(paper_id, profile)]
    keys, data = CacheKeys(paper_id, profile, device), datasets(module, protocol)
    located = []
    for run in module.runs(protocol):
        models = tuple(dict.fromkeys(cache.model_path(*keys.model(arm, data[run.data])) for arm in needed_arms(run)))
        record = models[-1] if run.measure is None else cache.record_path(*keys.record(run.arm, data[run.data],
                                                                                        run.measure))
        located.append(Entry(paper_id, run, record, models, len(trained_before(run.arm))))
    return located


def needed_arms(run: Run) -> list[Arm]:
    """The arms whose models a run needs, each after its teachers: those its measure `ReadsArms` (a teacher, an
    ensemble's other members), and the run's."""
    read = run.measure.reads() if isinstance(run.measure, ReadsArms) else ()
    measured = [other.at(run.arm.seed) for other in read] + [run.arm]
    return [arm for last in measured for arm in trained_before(last) + [last]]


def teachers_first(located: list[Entry]) -> list[Entry]:
    """The runs ordered by how many teachers stand behind them (stable: the notebook's order otherwise)."""
    return sorted(located, key=lambda entry: entry.depth)


def claim(entry: Entry, cache: Cache) -> Path:
    """The lock a worker holds while it runs the entry (`work`), beside the lock of the record itself (held by
    whoever computes the record: a worker, or a notebook)."""
    return cache.lock(entry.record).with_suffix(".claim")


def runner(entry: Entry, cache: Cache) -> str | None:
    """Who is running the entry ('pid 12 on node3'), or None."""
    return holder(claim(entry, cache)) or holder(cache.lock(entry.record))


def state(entry: Entry, cache: Cache) -> str:
    """'cached', 'running (pid N on host)' while a worker or a notebook holds the run, or 'pending'."""
    if entry.record.exists():
        return "cached"
    owner = runner(entry, cache)
    return "pending" if owner is None else f"running ({owner})"


def plan(paper_ids: list[str], profile: str, device: str, cache: Cache | None = None) -> list[Entry]:
    """Every listed run of the papers, teachers first within each paper."""
    cache = cache or Cache()
    return [entry for paper_id in paper_ids if has_runs(paper_id)
            for entry in teachers_first(entries(paper_id, profile, device, cache))]


def print_plan(paper_ids: list[str], profile: str, device: str) -> None:
    """A line per run (paper, arm, seed, measure, key digest, state), then the counts."""
    began, cache = time.perf_counter(), Cache()
    located = plan(paper_ids, profile, device, cache)
    width = max((len(entry.label) for entry in located), default=0)
    states = []
    for entry in located:
        states.append(state(entry, cache))
        measure = "model only" if entry.run.measure is None else type(entry.run.measure).__name__
        print(f"{entry.label:<{width}}  {measure:<16} {entry.digest}  {states[-1]}")
    for paper_id in paper_ids:
        if not has_runs(paper_id):
            print(f"{paper_id}: its runs are not listed (no runs(P) yet); its notebook trains them when it runs")
    counts = {word: sum(s.startswith(word) for s in states) for word in ("cached", "running", "pending")}
    print(f"plan: {len(located)} runs ({len({e.record for e in located})} distinct) on profile {profile!r}, device "
          f"{device}, cache {cache.root}: " + ", ".join(f"{n} {word}" for word, n in counts.items())
          + f"; {time.perf_counter() - began:.1f} s")
