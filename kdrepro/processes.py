"""Commands run a few at a time, each in a process of its own: `reproduce` runs the papers' notebooks this way, and
`work --workers N` its workers. Each output line is prefixed with its command's label; a Ctrl-C (or SIGTERM) is
passed on to every running process, and no process is started after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

# After a Ctrl-C is passed on, how long a process has to stop (a notebook: shut its kernel down) before it is killed.
STOP_GRACE_SECONDS = 10


@dataclass(frozen=True)
class Command:
    argv: list[str]
    environment: dict[str, str]
    note: str   # what its "started" line says


def thread_environment(threads: int) -> dict[str, str]:
    """This process's environment, with `threads` threads for PyTorch's CPU work."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class Processes:
    """Processes, each in a session of its own so that a Ctrl-C reaches this process alone, which passes it on to
    them (`interrupt`) and starts no more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: list[subprocess.Popen] = []
        self._interrupted = False

    def start(self, command: list[str], environment: dict[str, str]) -> subprocess.Popen | None:
        """The started process, its output and errors on one pipe; None once interrupted."""
        with self._lock:
            if self._interrupted:
                return None
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=environment, start_new_session=True)
            self._started.append(child)
            return child

    def interrupt(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Ctrl-C for every running process (a notebook stops and shuts its kernel down, a worker leaves its run);
        those still running `grace_seconds` later are killed."""
        with self._lock:
            self._interrupted = True
        for child in self._started:
            child.send_signal(signal.SIGINT)  # a no-op for a process that has ended
        deadline = time.monotonic() + grace_seconds
        for child in self._started:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM taken as a Ctrl-C meanwhile: the processes, in sessions of their own, are out of reach of a signal
    sent to this process's group (a stopped job, a cancelled CI run), so this process passes it on."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_processes(commands: dict[str, Command], jobs: int) -> list[str]:
    """Run the labelled commands `jobs` at a time, in the dictionary's order, each output line prefixed with its
    label. Returns the labels of those that failed; the others finish regardless. A Ctrl-C or SIGTERM stops all."""
    width = max(map(len, commands))
    output = threading.Lock()
    processes = Processes()

    def say(text: str) -> None:
        with output:
            print(text, flush=True)

    def run_one(label: str) -> bool:
        began = time.perf_counter()
        child = processes.start(commands[label].argv, commands[label].environment)
        if child is None:
            return False
        say(f"{label:<{width}} | started: {commands[label].note}")
        with child:
            for line in child.stdout:
                say(f"{label:<{width}} | {line.rstrip()}")
        outcome = "done" if child.returncode == 0 else f"FAILED (exit status {child.returncode})"
        say(f"{label:<{width}} | {outcome} in {time.perf_counter() - began:.0f} s")
        return child.returncode == 0

    with terminate_as_interrupt(), ThreadPoolExecutor(jobs) as pool:
        try:
            succeeded = list(pool.map(run_one, commands))
        except KeyboardInterrupt:
            processes.interrupt()
            raise
    return [label for label, ok in zip(commands, succeeded) if not ok]
