"""Training plots: loss per epoch, and recall@k of the model beside the most-popular baseline."""

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


def recall_plot(model: dict, baseline: dict, path: Path, title: str, ks=(10, 50, 100)) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = range(len(ks))
    ax.bar([i - 0.2 for i in x], [model.get(f"recall@{k}", 0) for k in ks], width=0.4, label="two-tower")
    ax.bar([i + 0.2 for i in x], [baseline.get(f"recall@{k}", 0) for k in ks], width=0.4, label="most popular in region")
    ax.set_xticks(list(x), [f"recall@{k}" for k in ks])
    ax.set(ylabel="share of next purchases found", title=title, ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
