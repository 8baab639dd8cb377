"""PNG figures of the align stages: training curves (PPO, GRPO, RLOO) and reward distributions (histogram + KDE)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from refine.rundir import atomic_path


def gaussian_kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``values`` (shape ``(n,)``) on ``grid``, bandwidth by Scott's rule.

    Scott's rule: h = std * n^(-1/5). A sample with no spread (std 0) gets h = 1e-3 so the density stays finite.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    std = values.std(ddof=1) if n > 1 else 0.0
    h = max(std * n ** (-1 / 5), 1e-3)
    z = (grid[:, None] - values[None, :]) / h
    return np.exp(-0.5 * z**2).sum(axis=1) / (n * h * math.sqrt(2 * math.pi))


def save_figure(path: Path, draw: Callable, *, ncols: int = 1, size=(6.4, 4.0)) -> None:
    """Draw into a new figure (``draw(axes)``) and save it as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(size[0] * ncols, size[1]), dpi=110, squeeze=False)
    draw(axes[0] if ncols > 1 else axes[0][0])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_training_curves(path: Path, curves: dict[str, pd.DataFrame], panels: Sequence[tuple[str, str]], *,
                         title: str = "", xlabel: str = "update") -> None:
    """One panel per ``(metric, label)`` of ``panels``, one line per run (``curves``: label → metrics with a ``step``
    column); a metric no run logged gets an empty panel that says so."""
    def draw(axes):
        axes = np.atleast_1d(axes)
        for ax, (key, label) in zip(axes, panels, strict=True):
            logged = False
            for name, frame in curves.items():
                if key in frame.columns and frame[key].notna().any():
                    rows = frame[frame[key].notna()]
                    ax.plot(rows["step"], rows[key], marker="o", markersize=3, label=name)
                    logged = True
            if not logged:
                ax.text(0.5, 0.5, f"{key}: not logged", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if logged and len(curves) > 1:
                ax.legend(fontsize=7)
        axes[0].set_title(title or "training")

    save_figure(path, draw, ncols=len(panels))


def plot_ppo_curves(path: Path, curves: dict[str, pd.DataFrame], title: str = "") -> None:
    """``objective/scores`` and ``objective/kl`` per PPO update, one line per run (``curves``: label → metrics)."""
    plot_training_curves(path, curves, [("objective/scores", "reward score (training reward)"),
                                        ("objective/kl", "KL to SFT (sum over tokens)")],
                         title=title or "PPO training", xlabel="PPO update")


def plot_reward_distributions(path: Path, rewards: dict[str, np.ndarray], means: dict[str, tuple[float, float]], *,
                              threshold: float | None, bins: int, xlabel: str, title: str,
                              order: Sequence[str] | None = None) -> None:
    """Histogram + KDE of rewards per variant; the legend gives the mean ± std over seeds.

    Args:
        rewards: Variant → all rewards (every seed pooled), shape ``(n,)``.
        means: Variant → (mean over seeds of the per-seed mean reward, std over seeds).
        threshold: Drawn as a vertical line (reward below it: judged unsafe). None: no line.
    """
    names = [n for n in (order or rewards) if n in rewards and len(rewards[n])]

    def draw(ax):
        pooled = np.concatenate([rewards[n] for n in names]) if names else np.zeros(1)
        lo, hi = float(pooled.min()), float(pooled.max())
        pad = 0.1 * max(hi - lo, 1e-3)
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
        grid = np.linspace(edges[0], edges[-1], 300)
        for i, name in enumerate(names):
            color = f"C{i}"
            mean, std = means[name]
            spread = "1 seed" if math.isnan(std) else f"± {std:.3f} over seeds"
            label = f"{name} (mean {mean:.3f}, {spread})"
            ax.hist(rewards[name], bins=edges, density=True, histtype="stepfilled", alpha=0.12, color=color)
            ax.hist(rewards[name], bins=edges, density=True, histtype="step", alpha=0.5, color=color)
            ax.plot(grid, gaussian_kde(rewards[name], grid), color=color, linewidth=2, label=label)
        if threshold is not None:
            ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"unsafe below {threshold:.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    save_figure(path, draw, size=(7.5, 4.5))


def plot_bars(path: Path, table: pd.DataFrame, columns: Sequence[tuple[str, str]], title: str) -> None:
    """One panel per (column, label): mean over seeds per variant with std error bars."""
    def draw(axes):
        axes = np.atleast_1d(axes)
        for ax, (column, label) in zip(axes, columns, strict=True):
            ax.bar(table["variant"], table[f"{column}_mean"], yerr=table[f"{column}_std"].fillna(0), capsize=4,
                   color=[f"C{i}" for i in range(len(table))])
            ax.set_ylabel(label)
            ax.tick_params(axis="x", labelrotation=20)
            ax.grid(alpha=0.3, axis="y")
        axes[0].set_title(title)

    save_figure(path, draw, ncols=len(columns), size=(4.2, 3.6))
