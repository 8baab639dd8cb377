"""Evaluation metrics of pseudo-labels against gold labels (pure functions of numpy arrays).

Labels are 1 (unsafe, the positive class) and 0 (safe); gold -1 means unknown and is skipped. Scores are
``unsafe_logit`` or annotator scores (higher means more likely unsafe), used for ROC-AUC only.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score


def classification_metrics(gold: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None = None) -> dict:
    """Accuracy, precision, recall and F1 of the unsafe class (and ROC-AUC when scores and both classes exist).

    Args:
        gold: Gold labels, shape ``(n,)``: 1, 0, or -1 (skipped).
        predicted: Predicted labels 1/0, shape ``(n,)``.
        scores: Optional real-valued scores, shape ``(n,)``.

    Returns:
        ``{"n", "accuracy", "precision", "recall", "f1"[, "roc_auc"]}``; an empty selection gives ``{"n": 0}``.
    """
    known = gold >= 0
    y, p = gold[known].astype(int), predicted[known].astype(int)
    if y.size == 0:
        return {"n": 0}
    out = {
        "n": int(y.size),
        "accuracy": float(accuracy_score(y, p)),
        "precision": float(precision_score(y, p, zero_division=0)),
        "recall": float(recall_score(y, p, zero_division=0)),
        "f1": float(f1_score(y, p, zero_division=0)),
    }
    if scores is not None and len(np.unique(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y, scores[known]))
    return out


def flip_count(previous: np.ndarray, current: np.ndarray) -> int:
    """Number of labels that changed between two labelings of the same rows."""
    return int((np.asarray(previous) != np.asarray(current)).sum())


def majority_accuracy(train_gold: np.ndarray, test_gold: np.ndarray) -> float:
    """Test accuracy of always predicting the majority class of ``train_gold`` (ties: safe)."""
    train_gold, test_gold = train_gold[train_gold >= 0], test_gold[test_gold >= 0]
    majority = int(train_gold.mean() > 0.5) if train_gold.size else 0
    return float((test_gold == majority).mean()) if test_gold.size else float("nan")
