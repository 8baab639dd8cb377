"""The refine report: ``metrics.csv``, ``summary.json``, a printable table, and PNG plots per iteration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from refine.rundir import atomic_path, write_json

TABLE_COLUMNS = [
    ("iteration", "iter", "{:d}"), ("rho", "rho", "{:.3f}"), ("pi", "pi", "{:.3f}"), ("theta1", "theta1", "{:.3f}"),
    ("theta2", "theta2", "{:.3f}"), ("flips", "flips", "{:d}"), ("labeled_accuracy", "L acc", "{:.3f}"),
    ("test_accuracy", "test acc", "{:.3f}"), ("test_f1", "test F1", "{:.3f}"), ("test_roc_auc", "test AUC", "{:.3f}"),
]
BASELINE_NAMES = {
    "majority": "majority class", "labeled_logreg": "logistic regression on L", "labeled_head": "same head on L",
    "gold_head": "same head on all gold (ceiling)",
}


def best_iteration(table: pd.DataFrame) -> int:
    """Refined iteration (>= 1) with the highest accuracy on L; ties go to the later one. 0 if none ran."""
    refined = table[table["iteration"] >= 1]
    if refined.empty:
        return 0
    best = refined["labeled_accuracy"].max()
    return int(refined[refined["labeled_accuracy"] == best]["iteration"].max())


def format_table(table: pd.DataFrame, baselines: dict) -> str:
    """Fixed-width table of the iterations, then the baselines' test accuracy."""
    columns = [(key, title, fmt) for key, title, fmt in TABLE_COLUMNS if key in table.columns]
    rows = [[title for _, title, _ in columns]]
    for _, record in table.iterrows():
        cells = []
        for key, _, fmt in columns:
            value = record[key]
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            cells.append("-" if missing else fmt.format(int(value) if fmt == "{:d}" else float(value)))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True)) for r in rows]
    lines[0:1] = [lines[0], "  ".join("-" * w for w in widths)]
    lines.append("iteration 0 is the annotator's own labels.")
    if baselines:
        lines.append("baselines (test accuracy):")
        for name, metrics in baselines.items():
            lines.append(f"  {BASELINE_NAMES.get(name, name):34s} {metrics.get('accuracy', float('nan')):.3f}")
    lines.extend(verdict_lines(summarise(table, baselines)))
    return "\n".join(lines)


def verdict_lines(summary: dict) -> list[str]:
    """Which iteration `reward export` ships, and how it compares with the annotator and the L-only baselines."""
    best = summary["best_iteration"]
    if not best:
        return ["no refined iteration: nothing to export."]
    lines = [f"exported by default: iteration {best} (the best on L)"
             + (f", test acc {summary['best_test_accuracy']:.3f}" if "best_test_accuracy" in summary else "")]
    if "annotator_test_accuracy" in summary and "best_test_accuracy" in summary:
        gain = summary["best_test_accuracy"] - summary["annotator_test_accuracy"]
        lines.append(f"  vs the annotator's own labels: {gain:+.3f}")
    if "labeled_only_test_accuracy" in summary:
        word = "beats" if summary["beats_labeled_only"] else "does NOT beat"
        lines.append(f"  it {word} the strongest classifier trained on L alone "
                     f"({summary['labeled_only_test_accuracy']:.3f})")
    return lines


def summarise(table: pd.DataFrame, baselines: dict) -> dict:
    """Headline numbers: annotator vs final vs best iteration vs the L-only baselines, and the signal verdict."""
    first, last = table.iloc[0], table.iloc[-1]
    best = best_iteration(table)
    summary = {
        "iterations_run": int(last["iteration"]), "best_iteration": best,
        "annotator_signal": first["signal"], "baselines": baselines,
    }
    if "test_accuracy" in table.columns:
        summary["annotator_test_accuracy"] = float(first["test_accuracy"])
        summary["final_test_accuracy"] = float(last["test_accuracy"])
        if best:
            summary["best_test_accuracy"] = float(table.set_index("iteration").loc[best, "test_accuracy"])
        strongest = max((m["accuracy"] for k, m in baselines.items() if k.startswith("labeled")), default=None)
        if strongest is not None:
            # The comparison is made for the classifier `reward export` ships by default: the best iteration on L.
            exported = summary.get("best_test_accuracy", summary["final_test_accuracy"])
            summary["labeled_only_test_accuracy"] = strongest
            summary["beats_labeled_only"] = bool(exported > strongest)
    return summary


def _plot(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=120)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _draw_accuracy(table: pd.DataFrame, baselines: dict):
    def draw(ax):
        x = table["iteration"]
        if "test_accuracy" in table.columns:
            ax.plot(x, table["test_accuracy"], "o-", label="refined labels, test split")
        ax.plot(x, table["labeled_accuracy"], "s--", alpha=0.6, label="refined labels, L")
        styles = [("k", ":"), ("C2", "-."), ("C3", "--"), ("C4", ":")]
        for (name, metrics), (color, linestyle) in zip(baselines.items(), styles, strict=False):
            ax.axhline(metrics["accuracy"], color=color, linestyle=linestyle,
                       label=f"{BASELINE_NAMES.get(name, name)} (test)")
        ax.set_xlabel("iteration (0 = annotator)")
        ax.set_ylabel("accuracy")
        ax.set_xticks(list(x))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("Gold accuracy per iteration")
    return draw


def _draw_priors(table: pd.DataFrame):
    def draw(ax):
        x = table["iteration"].to_numpy()
        for name, marker in (("pi", "o"), ("theta1", "^"), ("theta2", "v")):
            lo, hi = table[f"{name}_lo"].to_numpy(), table[f"{name}_hi"].to_numpy()
            value = table[name].to_numpy()
            ax.errorbar(x, value, yerr=np.vstack([value - lo, hi - value]).clip(min=0), marker=marker, capsize=3,
                        label=name)
        ax.set_xlabel("iteration (0 = annotator)")
        ax.set_ylabel("P(unsafe)")
        ax.set_ylim(0, 1)
        ax.set_xticks(list(x))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("Estimated priors (90% bootstrap intervals)")
    return draw


def _draw_flips(table: pd.DataFrame):
    def draw(ax):
        refined = table[table["iteration"] >= 1]
        ax.bar(refined["iteration"], refined["flips"])
        ax.set_xlabel("iteration")
        ax.set_ylabel("labels flipped")
        ax.set_title("Label flips per iteration")
    return draw


def write_report(folder: Path, table: pd.DataFrame, baselines: dict) -> dict:
    """Write ``metrics.csv``, ``summary.json`` and ``accuracy.png``, ``priors.png``, ``flips.png`` into ``folder``."""
    flat = table.drop(columns=[c for c in ("trained_with",) if c in table.columns])
    with atomic_path(folder / "metrics.csv") as tmp:
        flat.to_csv(tmp, index=False)
    summary = summarise(table, baselines)
    write_json(folder / "summary.json", summary)
    _plot(folder / "accuracy.png", _draw_accuracy(table, baselines))
    _plot(folder / "priors.png", _draw_priors(table))
    _plot(folder / "flips.png", _draw_flips(table))
    return summary
