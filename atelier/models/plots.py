"""Training plots of every model kind: loss per epoch, recall beside the baselines, forecasts with their bands, error per horizon."""

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


def forecast_plot(weeks, series: list[dict], path: Path, title: str) -> None:
    """Actual weekly units beside P50 with its P10-P90 band, one panel per series.

    `series`: [{"name", "actual" (len(weeks)), "origin" (index into weeks), "p10", "p50", "p90" (from the origin on)}].
    """
    n = max(len(series), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.9 * n), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], series):
        ahead = weeks[s["origin"]:s["origin"] + len(s["p50"])]
        ax.plot(weeks, s["actual"], color="black", lw=1, label="actual")
        ax.fill_between(ahead, s["p10"], s["p90"], alpha=0.3, label="P10-P90")
        ax.plot(ahead, s["p50"], lw=1.5, label="P50")
        ax.axvline(weeks[s["origin"]], color="grey", ls=":", lw=1)
        ax.set_title(s["name"], fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, ncols=3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def horizon_plot(per_horizon: dict[str, list[float]], path: Path, title: str, metric: str = "WAPE") -> None:
    """A backtest's error per horizon (weeks ahead), one line per method."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, values in per_horizon.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.set(xlabel="weeks ahead", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def segments_plot(profiles: list[dict], mix, path: Path, title: str) -> None:
    """Segment sizes with their names, and each location's mix of segments (stacked shares)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    names = [f"{p['id']}: {p['name']}" for p in profiles]
    left.barh(names, [p["size"] for p in profiles])
    left.invert_yaxis()
    left.set(xlabel="clients", title="segments")
    left.tick_params(labelsize=7)
    shown = mix.loc[mix.index[:12]] if len(mix) else mix
    bottom = None
    for seg in shown.columns:
        right.bar([str(i) for i in shown.index], shown[seg], bottom=bottom, label=str(seg))
        bottom = shown[seg] if bottom is None else bottom + shown[seg]
    right.set(ylabel="share of clients", title="mix per location")
    right.tick_params(labelsize=7)
    right.legend(fontsize=6, title="segment", title_fontsize=6, ncols=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
