"""Training plots: loss per epoch, and recall@10 of the model beside every baseline, per client group."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_plot(losses: list[float], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="retrieval loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recall_plot(results: dict[str, dict], path: Path, title: str, metric: str = "recall@10") -> None:
    """`metric` of every recommender (the model first), for all, warm and cold clients side by side."""
    groups = ("all", "warm", "cold")
    names = list(results)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(groups))]
        ax.bar(xs, [results[name].get(g, {}).get(metric, 0) for g in groups], width=width, label=name)
    ax.set_xticks(range(len(groups)), [f"{g} clients" for g in groups])
    ax.set(ylabel=metric, title=title)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
