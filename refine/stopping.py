"""When the refine loop stops before ``loop.iterations``: pure functions of the per-iteration metric rows.

A row is one iteration's ``metrics.json`` (:func:`refine.loop._iteration_row`): ``iteration``, ``signal``
(``informative`` | ``weak`` | ``inverted`` | ``none`` | ``collapsed``), ``rho`` (share of training texts labelled
unsafe), ``theta1``, ``theta2``, ``flip_fraction`` (share of training texts whose label changed) and
``labeled_accuracy`` (accuracy on L). Row 0 is the annotator's; the rules read the refined iterations (>= 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refine.objectives import UNLABELED_LOSSES


class Stop(NamedTuple):
    """Why the loop stops after the last row: the line to log, and whether the run ended short of what it could do
    (logged as a warning) or stopped as configured (logged as info)."""

    message: str
    warning: bool


def iterations_since_best(rows: list[dict]) -> int:
    """Refined iterations (>= 1) run since the first one with the highest accuracy on L (0: the last is the best)."""
    accuracies = [row["labeled_accuracy"] for row in rows[1:]]
    if not accuracies:
        return 0
    return len(accuracies) - 1 - int(np.argmax(accuracies))


def stop_reason(rows: list[dict], *, iterations: int, loss: str, early_stop_flip_fraction: float | None,
                patience: int | None) -> Stop | None:
    """Whether the loop stops after the last of ``rows`` (a refined iteration), and why; None: go on.

    The rules, in this order:

    1. **collapsed**: the classifier labelled every training text with one class; nothing is left to refine.
    2. **lost signal**: the labels carry no usable signal (``signal == "none"``) and the loss reads pseudo-labels
       (``robust_uu``, ``uu``), so the next iteration could not learn from them. Not after the last iteration.
    3. **flip fraction**: fewer than ``early_stop_flip_fraction`` of the labels flipped
       (``loop.early_stop_flip_fraction``).
    4. **patience**: the accuracy on L has not improved for ``patience`` iterations (``loop.patience``; None: off).
       Not after the last iteration.

    Args:
        rows: The metric rows so far, iteration 0 first; the last is the iteration just finished (>= 1).
        iterations: ``loop.iterations``, the last iteration the loop would run.
        loss: ``train.loss``.
        early_stop_flip_fraction: ``loop.early_stop_flip_fraction``; None: off.
        patience: ``loop.patience`` where it applies (None where L is trained on, see ``refine.loop``).
    """
    row = rows[-1]
    k = row["iteration"]
    if row["signal"] == "collapsed":
        return Stop(
            f"iteration {k} labelled every training text {'unsafe' if row['rho'] > 0.5 else 'safe'}: the classifier "
            "collapsed to one class, so there is nothing left to refine; stopping. (With loss=pn this is what "
            "training on noisy labels can do.)", warning=True,
        )
    if row["signal"] == "none" and loss in UNLABELED_LOSSES and k < iterations:
        return Stop(
            f"the labels of iteration {k} carry no usable signal (theta1={row['theta1']:.2f}, "
            f"theta2={row['theta2']:.2f}): UU learning cannot go on from them, so the run stops here. The report, and "
            "`reward export --iteration best`, use the iterations so far.", warning=True,
        )
    if early_stop_flip_fraction is not None and row["flip_fraction"] < early_stop_flip_fraction:
        return Stop(f"stopping early: {row['flip_fraction']:.4f} of labels flipped (< {early_stop_flip_fraction})",
                    warning=False)
    if patience is not None and k < iterations:
        stale = iterations_since_best(rows)
        if stale >= patience:
            return Stop(
                f"stopping early: accuracy on L has not improved for {stale} iteration(s) (best "
                f"{rows[k - stale]['labeled_accuracy']:.3f} at iteration {k - stale}; loop.patience={patience})",
                warning=False,
            )
    return None
