"""What a paper is to the project: its title, its notebook, its place on the map of knowledge distillation and how
it enters the overview.

Each paper module declares its own `PAPER`; the registry (`kdrepro.experiments`) only lists the modules.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSFERRED = ("response", "feature", "relation", "sequence")
SCHEMES = ("offline", "online", "self")


@dataclass(frozen=True)
class Comparison:
    """How a paper enters the overview's gains figure: its scratch student and the methods measured against it
    (arms as runs.csv names them; extras that answer another question stay in their own notebooks)."""

    name: str                  # short, for the map and the figure's panels
    scratch: str               # the arm trained without any teacher, same architecture as the methods' students
    methods: tuple[str, ...]   # arms whose gain over `scratch` is drawn
    metric: str                # a column of runs.csv and a key of claims.METRICS


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    notebook: str
    transferred: str   # what is transferred: response / feature / relation / sequence
    scheme: str        # how teacher and student relate: offline / online / self
    comparison: Comparison

    def __post_init__(self) -> None:
        if self.transferred not in TRANSFERRED or self.scheme not in SCHEMES:
            raise ValueError(f"paper {self.id!r}: transferred={self.transferred!r} must be one of {TRANSFERRED} "
                             f"and scheme={self.scheme!r} one of {SCHEMES}")
