"""One module per paper: its profiles, its arms, the paper's numbers and its claims."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    notebook: str
    transferred: str   # response / feature / relation / sequence
    scheme: str        # offline / online / self


PAPERS = {
    "hinton_kd": Paper("hinton_kd", "Hinton, Vinyals & Dean 2015: Distilling the Knowledge in a Neural Network",
                       "01_hinton_kd.ipynb", transferred="response", scheme="offline"),
    "fitnets": Paper("fitnets", "Romero et al. 2015: FitNets: Hints for Thin Deep Nets", "02_fitnets.ipynb",
                     transferred="feature", scheme="offline"),
    "attention_transfer": Paper("attention_transfer", "Zagoruyko & Komodakis 2017: Paying More Attention to Attention",
                                "03_attention_transfer.ipynb", transferred="feature", scheme="offline"),
    "fsp": Paper("fsp", "Yim, Joo, Bae & Kim 2017: A Gift from Knowledge Distillation (FSP)", "04_fsp.ipynb",
                 transferred="relation", scheme="offline"),
    "rkd": Paper("rkd", "Park, Kim, Lu & Cho 2019: Relational Knowledge Distillation", "05_rkd.ipynb",
                 transferred="relation", scheme="offline"),
    "dml": Paper("dml", "Zhang, Xiang, Hospedales & Lu 2018: Deep Mutual Learning", "06_dml.ipynb",
                 transferred="response", scheme="online"),
    "born_again": Paper("born_again", "Furlanello, Lipton, Tschannen, Itti & Anandkumar 2018: Born-Again Neural "
                        "Networks", "07_born_again.ipynb", transferred="response", scheme="self"),
    "seqkd": Paper("seqkd", "Kim & Rush 2016: Sequence-Level Knowledge Distillation", "08_seqkd.ipynb",
                   transferred="sequence", scheme="offline"),
}


def paper(paper_id: str) -> Paper:
    if paper_id not in PAPERS:
        raise ValueError(f"unknown paper {paper_id!r}; choose one of {', '.join(PAPERS)}")
    return PAPERS[paper_id]


def module(paper_id: str) -> ModuleType:
    """The experiment module of a paper; it defines PROFILES (name -> protocol) and CLAIMS."""
    return importlib.import_module(f"kdrepro.experiments.{paper(paper_id).id}")


def profiles(paper_id: str) -> list[str]:
    return list(module(paper_id).PROFILES)


def check_profile(paper_id: str, name: str) -> str:
    """`name` when it is one of the paper's profiles; otherwise an error that lists them."""
    valid = profiles(paper_id)
    if name not in valid:
        raise ValueError(f"unknown profile {name!r} for {paper_id}; choose one of {', '.join(valid)}")
    return name
