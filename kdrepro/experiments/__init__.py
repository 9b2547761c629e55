"""The registry: the paper modules in notebook order. Each module declares its own PAPER (title, notebook, place
on the map), PROFILES, CLAIMS and arms; nothing here repeats them."""

from __future__ import annotations

import importlib
from types import ModuleType

from kdrepro.paper import Paper

MODULES = ("hinton_kd", "fitnets", "attention_transfer", "fsp", "rkd", "dml", "born_again", "seqkd",
           "on_policy")


def module(paper_id: str) -> ModuleType:
    """The experiment module of a paper; it defines PAPER, PROFILES (name -> protocol) and CLAIMS."""
    if paper_id not in MODULES:
        raise ValueError(f"unknown paper {paper_id!r}; choose one of {', '.join(MODULES)}")
    return importlib.import_module(f"kdrepro.experiments.{paper_id}")


def paper(paper_id: str) -> Paper:
    return module(paper_id).PAPER


PAPERS: dict[str, Paper] = {paper_id: paper(paper_id) for paper_id in MODULES}


def profiles(paper_id: str) -> list[str]:
    return list(module(paper_id).PROFILES)


def check_profile(paper_id: str, name: str) -> str:
    """`name` when it is one of the paper's profiles; otherwise an error that lists them."""
    valid = profiles(paper_id)
    if name not in valid:
        raise ValueError(f"unknown profile {name!r} for {paper_id}; choose one of {', '.join(valid)}")
    return name
