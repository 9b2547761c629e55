"""The bookkeeping of one paper's run: profile, cached arms, the per-seed runs table, and publishing results."""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from kdrepro.arms import Arm, spec_key, train_arm
from kdrepro.cache import Cache, key_digest
from kdrepro.claims import AnyClaim, Verdict, claims_section, judge_all, mark_diverged, with_diverged
from kdrepro.data import Data
from kdrepro.measures import PARTS, Measure, ReadsArms
from kdrepro.paths import results_dir
from kdrepro.results import atomic_write_text, markdown_table, provenance, publish_directory
from kdrepro.speed import for_device
from kdrepro.train import History

PROFILE_VARIABLE = "KDREPRO_PROFILE"
DEVICE_VARIABLE = "KDREPRO_DEVICE"
# The torch threads a profile's numbers are computed with: the same sums in another order differ in their last bits,
# and a few hundred steps carry that into different metrics, so the `cpu` protocol fixes its count, whatever
# launches it (`run`, `reproduce`, a worker, papermill, JupyterLab). Other profiles use the machine.
PROFILE_THREADS = {"cpu": 1}
# ...unless this variable says otherwise: a rerun at another count shows which numbers depend on it (use a cache of
# its own: the thread count is not part of a cache key)
THREADS_VARIABLE = "KDREPRO_THREADS"
# the names of the cache entries of a trained model and of its training history: shared by every paper
MODEL, HISTORY = "model", "history"


def profile_threads(profile: str) -> int | None:
    """The torch threads `profile` computes with: $KDREPRO_THREADS when set, else the profile's fixed count (None:
    the machine's)."""
    value = os.environ.get(THREADS_VARIABLE)
    if value is None:
        return PROFILE_THREADS.get(profile)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE}={value!r}: give a positive number of torch threads, e.g. 2, or unset it "
                         f"for the profile's own count")
    return int(value)


def resolve_profile(paper: ModuleType, requested: str) -> str:
    """The profile to run: $KDREPRO_PROFILE when set (how nbval and the CLI choose one), else `requested`."""
    name = os.environ.get(PROFILE_VARIABLE) or requested
    if name not in paper.PROFILES:
        raise ValueError(f"unknown profile {name!r} for {paper.PAPER.id}; choose one of {', '.join(paper.PROFILES)}")
    return name


@contextmanager
def profile_variable(profile: str) -> Iterator[None]:
    """$KDREPRO_PROFILE set to `profile` meanwhile: a notebook's kernel and a worker's `Experiment` obey it, so
    nothing else can pick another."""
    previous = os.environ.get(PROFILE_VARIABLE)
    os.environ[PROFILE_VARIABLE] = profile
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PROFILE_VARIABLE]
        else:
            os.environ[PROFILE_VARIABLE] = previous


def device_name(requested: str = "auto") -> str:
    """$KDREPRO_DEVICE when set, else `requested`; "auto" is the GPU when there is one, else the CPU."""
    name = os.environ.get(DEVICE_VARIABLE) or requested
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_device(requested: str = "auto") -> torch.device:
    """The device `device_name` names, which must be there."""
    name = device_name(requested)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but PyTorch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device


@dataclass(frozen=True)
class Run:
    """One run a notebook makes: an arm at its seed, read by a measure (None: the notebook only uses the trained
    model, in a figure), on one of the paper's datasets (its name in the paper's `datasets(P)`; "main" for a paper
    with one, `load(P)`). A paper's `runs(P)` lists them, so `python -m kdrepro plan` and `work` know them without
    executing the notebook."""

    arm: Arm
    measure: Measure | None
    data: str = "main"


def at_seeds(arms: Iterable[Arm], seeds: Iterable[int], measure: Measure | None, data: str = "main") -> list[Run]:
    """Each arm at every seed, seeds outermost: the runs `Experiment.run_arms` makes, in its order."""
    arms = list(arms)
    return [Run(arm.at(seed), measure, data) for seed in seeds for arm in arms]


@dataclass(frozen=True)
class CacheKeys:
    """The cache entries of a paper's runs in a profile on a device ("cpu", "cuda"): what `Experiment` reads and
    writes, and what `python -m kdrepro plan` looks up without training anything."""

    paper: str
    profile: str
    device: str

    def arm(self, arm: Arm) -> Arm:
        """The arm as it trains on this device (bf16 autocast and channels-last in some profiles on a GPU)."""
        return for_device(arm, self.profile, self.device)

    def model(self, arm: Arm, data: Data) -> tuple[str, dict[str, Any]]:
        """A trained model's entry: what it depends on is the arm's spec, the data's, and the device (GPU and CPU
        numbers differ in the last digits). Nothing else, so no key is written by hand; not even the paper, so
        that a paper reusing another's arm (09 reuses 08's students) reads the model the other trained."""
        return MODEL, {"arm": self.arm(arm).key(), "data": data.key(), "device": self.device}

    def record(self, arm: Arm, data: Data, measure: Measure) -> tuple[str, dict[str, Any]]:
        """A run's entry: its model's key and the measure's spec."""
        return f"{self.paper}-seed{arm.seed}", {**self.model(arm, data)[1], "measure": spec_key(measure)}


class Experiment:
    """Runs a paper's arms through the cache and collects one row per (arm, seed).

    `paper` is the paper's module (it declares PAPER and PROFILES)."""

    def __init__(self, paper: ModuleType, profile: str, device: str = "auto"):
        self.paper = paper.PAPER
        self.profile = resolve_profile(paper, profile)
        self.device = resolve_device(device)
        self.protocol = paper.PROFILES[self.profile]
        threads = profile_threads(self.profile)
        if threads is not None:
            torch.set_num_threads(threads)
        self.cache = Cache()
        self.keys = CacheKeys(self.paper.id, self.profile, self.device.type)
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}
        self._trained: dict[str, nn.Module] = {}
        self._started = time.perf_counter()
        print(f"{self.paper.id}: profile {self.profile!r}, seeds {list(self.protocol.seeds)}, device {self.device}")

    def model_key(self, arm: Arm, data: Data) -> dict[str, Any]:
        """What a trained model depends on (`CacheKeys.model`)."""
        return self.keys.model(arm, data)[1]

    def train(self, arm: Arm, data: Data) -> nn.Module:
        """The trained model of `arm` on `data`: from this process, else the cache, else trained (its teacher and
        the arm it starts from first, which every arm naming them shares)."""
        arm = self.keys.arm(arm)
        key = self.model_key(arm, data)
        digest = key_digest(key)
        if digest not in self._trained:
            teacher = None if arm.teacher is None else self.train(arm.teacher, data)
            start = None if arm.start is None else self.train(arm.start, data)
            drawn = data.for_seed(arm.seed)   # the key names the pool; the arm's seed names the draw

            def initial() -> nn.Module:   # a copy: the start's model stays as trained for every arm that uses it
                return arm.net.build(arm.seed, drawn).to(self.device) if start is None else copy.deepcopy(start)

            self._trained[digest] = self.cache.model(
                MODEL, key, initial,
                lambda model: self._keep_histories(key, train_arm(arm, model, drawn, teacher)))
        return self._trained[digest]

    def histories(self, arm: Arm, data: Data) -> list[History]:
        """How `arm` was trained, one `History` per stage (each epoch's loss and its terms, the seconds): kept in
        the cache beside its model when it was trained."""
        self.train(arm, data)
        key = self.model_key(arm, data)

        def missing() -> dict[str, Any]:
            raise FileNotFoundError(f"{arm.name} seed {arm.seed}: its model was cached without its training history "
                                    f"(by an older checkout); delete {self.cache.root / 'models'} to train it again")

        return [History(**stage) for stage in self.cache.record(HISTORY, key, missing)["stages"]]

    def _keep_histories(self, key: dict[str, Any], histories: list[History]) -> None:
        self.cache.record(HISTORY, key, lambda: {"stages": [asdict(h) for h in histories]})

    def run(self, arm: Arm, data: Data, measure: Measure) -> dict[str, Any]:
        """One arm at its seed: `measure(trained model, data)`, from the cache when this arm has been measured so
        before, recorded as the arm's row; the reading's parts, if any (a cohort's peers), as rows of their own,
        "<arm>_<suffix>". The measure is a spec too, so it is part of the key."""
        name, key = self.keys.record(arm, data, measure)
        result = self.cache.record(name, key, lambda: self._measured(arm, data, measure))
        self.record(arm.name, arm.seed, {metric: value for metric, value in result.items() if metric != PARTS})
        for suffix, reading in result.get(PARTS, {}).items():
            self.record(f"{arm.name}_{suffix}", arm.seed, reading)
        return result

    def _measured(self, arm: Arm, data: Data, measure: Measure) -> dict[str, Any]:
        """`measure` of the arm's trained model, on the seed's draw; a measure that `ReadsArms` gets their models at
        the arm's seed too."""
        model, drawn = self.train(arm, data), data.for_seed(arm.seed)
        if isinstance(measure, ReadsArms):
            return measure(model, drawn, *[self.train(other.at(arm.seed), data) for other in measure.reads()])
        return measure(model, drawn)

    def run_arms(self, arms: list[Arm], data: Data, measure: Measure) -> None:
        """Each arm at every seed of the profile, its wiring printed first. Seeds outermost: a seed's teacher
        serves all of that seed's students before the next seed's is trained. A shared arm (one model for every
        seed) is recorded at every seed too, so each seed's students are paired with it."""
        for arm in arms:
            print(arm.describe())
        for seed in self.protocol.seeds:
            for arm in arms:
                result = self.run(arm.at(seed), data, measure)
                if arm.shared:
                    self.record(arm.name, seed, result)

    def record(self, arm: str, seed: int, metrics: dict[str, Any]) -> None:
        """Add (or replace, when a cell runs again) the row of one arm at one seed."""
        self._rows[(arm, seed)] = {"arm": arm, "seed": seed, **metrics}

    def annotate(self, arm: str, seed: int, columns: dict[str, Any]) -> None:
        """Add columns to the recorded row of one arm at one seed (e.g. what its training history says)."""
        self._rows[(arm, seed)].update(columns)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per (arm, seed), a diverged run flagged in its `diverged` column."""
        return with_diverged(pd.DataFrame(list(self._rows.values())))

    def judge(self, claims: list[AnyClaim]) -> list[Verdict]:
        return judge_all(claims, self.runs, evaluated=self.profile != "smoke")

    def save(self, table: list[dict[str, object]], verdicts: list[Verdict],
             figures: dict[str, plt.Figure], notes: str = "",
             extra_tables: dict[str, list[dict[str, object]]] | None = None) -> Path:
        """Publish the tables, claims, figures and provenance under results/<profile>/<paper>/ in one swap.
        `extra_tables` (title -> rows), e.g. a second benchmark, are written beside the main table."""
        extra_tables = {title: rows for title, rows in (extra_tables or {}).items() if rows}
        table = mark_diverged(table, self.runs)
        target = results_dir() / self.profile / self.paper.id
        record = provenance(self.profile, list(self.protocol.seeds), time.perf_counter() - self._started)

        def write(folder: Path) -> None:
            self.runs.to_csv(folder / "runs.csv", index=False)
            pd.DataFrame(table).to_csv(folder / "table.csv", index=False)
            for i, rows in enumerate(extra_tables.values(), start=2):
                pd.DataFrame(rows).to_csv(folder / f"table{i}.csv", index=False)
            atomic_write_text(folder / "claims.json", json.dumps([v.as_dict() for v in verdicts], indent=1))
            atomic_write_text(folder / "provenance.json", json.dumps(record, indent=1))
            (folder / "figures").mkdir()
            for name, figure in figures.items():
                figure.savefig(folder / "figures" / f"{name}.png", dpi=110, bbox_inches="tight")
            atomic_write_text(folder / "README.md", self._readme(table, verdicts, figures, notes, record,
                                                                 extra_tables))

        publish_directory(target, write)
        print(f"results written to {target}")
        return target

    def _readme(self, table, verdicts, figures, notes, record, extra_tables) -> str:
        lines = [f"# {self.paper.title}", "",
                 f"Profile `{self.profile}`, seeds {record['seeds']}, {record['wall_seconds']} s on "
                 f"{record['device']}; commit `{record['git_commit'][:10] or 'unknown'}`"
                 f"{' (dirty)' if record['git_dirty'] else ''}.", "", "## Results", "", markdown_table(table)]
        for title, rows in extra_tables.items():
            lines += [f"## {title}", "", markdown_table(rows)]
        lines += ["## Claims", "", claims_section(verdicts)]
        lines += [f"![{name}](figures/{name}.png)\n" for name in figures]
        if notes:
            lines += ["## Departures from the paper", "", notes.strip(), ""]
        return "\n".join(lines)
