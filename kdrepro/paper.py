"""What a paper is to the project: its title, its notebook and its place on the map of knowledge distillation.

Each paper module declares its own `PAPER`; the registry (`kdrepro.experiments`) only lists the modules.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSFERRED = ("response", "feature", "relation", "sequence")
SCHEMES = ("offline", "online", "self")


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    notebook: str
    transferred: str   # what is transferred: response / feature / relation / sequence
    scheme: str        # how teacher and student relate: offline / online / self

    def __post_init__(self) -> None:
        if self.transferred not in TRANSFERRED or self.scheme not in SCHEMES:
            raise ValueError(f"paper {self.id!r}: transferred={self.transferred!r} must be one of {TRANSFERRED} "
                             f"and scheme={self.scheme!r} one of {SCHEMES}")
