"""Figures several notebooks draw."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def plot_arms(runs: pd.DataFrame, groups: dict[str, list[str]], metric: str, ylabel: str) -> plt.Figure:
    """Each arm's seed mean ± std, every seed drawn as a dot; one panel per group."""
    figure, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.6), squeeze=False)
    for ax, (title, arms) in zip(axes[0], groups.items()):
        for i, arm in enumerate(arms):
            values = runs[runs["arm"] == arm][metric] * 100
            ax.errorbar(i, values.mean(), yerr=values.std() if len(values) > 1 else 0, fmt="o", ms=9, capsize=4,
                        color=f"C{i}")
            ax.plot([i + 0.12] * len(values), values, "k.", ms=5)
        ax.set_xticks(range(len(arms)), arms, rotation=20)
        ax.set_xlim(-0.5, len(arms) - 0.5)
        ax.set(title=title, ylabel=ylabel)
    figure.tight_layout()
    return figure
