"""Small helpers the notebooks' tables share: arms in order, and mean ± std over seeds."""

from __future__ import annotations

from typing import Iterable, Iterator

import pandas as pd


def runs_by_arm(runs: pd.DataFrame, arms: Iterable[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each of `arms` in order with its runs (a row per seed); an arm without runs, not yet run, is left out."""
    for arm in arms:
        rows = runs[runs["arm"] == arm]
        if not rows.empty:
            yield arm, rows


def mean_std(values: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    """'mean ± std' over seeds (sample std; just the value for one seed)."""
    if len(values) == 1:
        return f"{values.iloc[0] * scale:.{digits}f}"
    return f"{values.mean() * scale:.{digits}f} ± {values.std() * scale:.{digits}f}"
