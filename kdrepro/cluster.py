"""`python -m kdrepro work --executor slurm`: the workers as a SLURM job array, through submitit (the optional
extra: `pip install -e '.[cluster]'`).

Every task of the array is one worker (`work.work`) on the shared cache ($KDREPRO_CACHE on a file system every node
sees). A GPU task trains on the GPU the scheduler gives it (SLURM sets CUDA_VISIBLE_DEVICES; the task asks for
"cuda", which is that one). A task that reaches its time limit is requeued by submitit and resumes: the run it was
training starts again, every finished run stays cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import submitit

from kdrepro.paths import cache_dir
from kdrepro.work import work

SCHEDULER = "slurm"  # submitit's name for the cluster; "local" runs the same array as local processes


@dataclass(frozen=True)
class Resources:
    """What one worker (a task of the array) asks the scheduler for."""

    gpus: int
    cpus: int
    mem_gb: int
    hours: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


RESOURCES = {
    "smoke": Resources(gpus=0, cpus=2, mem_gb=8, hours=0.5),
    "cpu": Resources(gpus=0, cpus=2, mem_gb=8, hours=4),
    # a run is never cut in two (a requeued task starts its run again), so a task must outlast the longest run of
    # the `paper` profiles: Seq-KD's WMT14 teacher, about 16 GPU-hours (README, "More machines")
    "paper": Resources(gpus=1, cpus=8, mem_gb=64, hours=48),
}


class Worker(submitit.helpers.Checkpointable):
    """One task of the array. Checkpointable: on its time limit, submitit requeues the same call, which resumes."""

    def __call__(self, paper_ids: list[str], profile: str, device: str) -> list[str]:
        return work(paper_ids, profile, device)


def jobs_folder() -> Path:
    """Where submitit keeps the jobs' pickles and logs: beside the cache, on the file system every node sees."""
    return cache_dir() / "jobs"


def submit(paper_ids: list[str], profile: str, workers: int, partition: str | None = None) -> list[submitit.Job]:
    """Submit `workers` workers as one job array with the profile's resources; returns its jobs."""
    resources = RESOURCES[profile]
    executor = submitit.AutoExecutor(folder=jobs_folder() / "%j", cluster=SCHEDULER)
    executor.update_parameters(name=f"kdrepro-{profile}", timeout_min=round(resources.hours * 60),
                               gpus_per_node=resources.gpus, cpus_per_task=resources.cpus, mem_gb=resources.mem_gb,
                               slurm_array_parallelism=workers, slurm_partition=partition)
    return executor.map_array(Worker(), [paper_ids] * workers, [profile] * workers, [resources.device] * workers)


def wait(jobs: list[submitit.Job]) -> list[str]:
    """Wait for every job, printing its outcome; returns the runs that failed (and jobs that died)."""
    failed = []
    for number, job in enumerate(jobs, start=1):
        try:
            failed_runs = job.result()
        except Exception as error:  # a job that died (out of memory, cancelled) must not hide the others
            print(f"worker {number} (job {job.job_id}): FAILED: {error}", flush=True)
            failed.append(f"job {job.job_id}")
            continue
        print(f"worker {number} (job {job.job_id}): done" + (f", failed: {', '.join(failed_runs)}" if failed_runs
                                                             else ""), flush=True)
        failed += failed_runs
    return failed
