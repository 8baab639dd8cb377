"""The decision rule that turns annotator scores into pseudo-labels (shared by every kind except ``column``).

Notation: ``score`` is the annotator's score of a text, higher meaning more likely unsafe; a pseudo-label of 1 puts
the text in U1 (pseudo-unsafe), 0 in U2 (pseudo-safe). Thresholds are fitted on the training rows only and the same
number is applied to the test rows, so the test split never shapes the labels.

Rules (``AnnotatorConfig.threshold``):

- ``zero``: unsafe iff ``score > 0``. For the LLM annotators this is argmax of Yes versus No; for the embedding
  annotator it is "closer to an unsafe description than to any safe one".
- ``positive_fraction``: the top ``round(f * n_train)`` training scores are unsafe, with ``f = positive_fraction``.
  The cut is the k-th largest training score ``t`` and every row with ``score >= t`` is unsafe, so rows tied with the
  k-th score are all unsafe and the share can exceed ``f`` on ties.
- ``labeled_prior``: as ``positive_fraction`` with ``f = (k + 1) / (n + 2)``, the add-one smoothed unsafe rate of the
  ``n`` gold labels in L of which ``k`` are unsafe.
"""

from __future__ import annotations

import numpy as np

from refine.constants import LAPLACE_PSEUDOCOUNT

THRESHOLDS = ("zero", "positive_fraction", "labeled_prior")


def labeled_unsafe_rate(labeled_gold: np.ndarray) -> float:
    """Add-one smoothed unsafe rate ``(k + 1) / (n + 2)`` of the gold labels of L.

    Args:
        labeled_gold: Gold labels of the members of L, shape ``(n,)``, 1 unsafe and 0 safe.

    Raises:
        ValueError: If L is empty or holds a value other than 0/1.
    """
    labeled_gold = np.asarray(labeled_gold)
    if labeled_gold.size == 0:
        raise ValueError(
            "threshold=labeled_prior needs gold labels in the labelled set L, but L is empty; set data.label_columns "
            "and data.num_labeled, or use annotator.threshold=positive_fraction."
        )
    if not np.isin(labeled_gold, (0, 1)).all():
        raise ValueError(f"gold labels of L must be 0 or 1, found {sorted(set(labeled_gold.tolist()))}.")
    k, n = int(labeled_gold.sum()), int(labeled_gold.size)
    return (k + LAPLACE_PSEUDOCOUNT) / (n + 2 * LAPLACE_PSEUDOCOUNT)


def top_fraction_cut(train_scores: np.ndarray, fraction: float) -> float:
    """The score at or above which a text is unsafe, so that the top ``fraction`` of ``train_scores`` are unsafe.

    Returns ``inf`` (nothing unsafe) when ``round(fraction * n)`` is 0.
    """
    train_scores = np.asarray(train_scores, dtype=np.float64)
    k = int(np.floor(fraction * train_scores.size + 0.5))  # round half up
    if k <= 0:
        return float("inf")
    return float(np.sort(train_scores)[::-1][min(k, train_scores.size) - 1])


def decide_labels(
    scores: np.ndarray,
    *,
    is_train: np.ndarray,
    threshold: str,
    positive_fraction: float | None = None,
    labeled_gold: np.ndarray | None = None,
) -> np.ndarray:
    """Pseudo-labels from annotator scores.

    Args:
        scores: Annotator scores, shape ``(N,)``, higher = more likely unsafe. Must be finite.
        is_train: Boolean mask, shape ``(N,)``: the training rows, on which quantile cuts are fitted.
        threshold: ``zero``, ``positive_fraction`` or ``labeled_prior`` (see the module docstring).
        positive_fraction: The share of training rows labelled unsafe; only for ``positive_fraction``.
        labeled_gold: Gold labels (0/1) of the members of L; only for ``labeled_prior``.

    Returns:
        Pseudo-labels, shape ``(N,)``, dtype int64: 1 = pseudo-unsafe (U1), 0 = pseudo-safe (U2).

    Raises:
        ValueError: On an unknown rule, a missing or out-of-range fraction, non-finite scores, or no training rows.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_train = np.asarray(is_train, dtype=bool)
    if scores.shape != is_train.shape:
        raise ValueError(f"scores have shape {scores.shape} but is_train has shape {is_train.shape}.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} annotator scores are not finite; check the annotator.")
    if threshold == "zero":
        return (scores > 0).astype(np.int64)
    if threshold == "positive_fraction":
        fraction = positive_fraction
    elif threshold == "labeled_prior":
        fraction = labeled_unsafe_rate(np.asarray(labeled_gold if labeled_gold is not None else []))
    else:
        raise ValueError(f"unknown threshold {threshold!r}; use one of {', '.join(THRESHOLDS)}.")
    if fraction is None or not 0.0 < fraction < 1.0:
        raise ValueError(f"positive_fraction={fraction} must lie in (0, 1); set annotator.positive_fraction.")
    if not is_train.any():
        raise ValueError(f"threshold={threshold} is fitted on training rows, but the corpus has none.")
    cut = top_fraction_cut(scores[is_train], fraction)
    return (scores >= cut).astype(np.int64)


def check_both_classes(train_labels: np.ndarray, *, fix: str) -> None:
    """Raise if every training pseudo-label is in one class: UU learning needs U1 and U2 both non-empty.

    Args:
        train_labels: Pseudo-labels of the training rows, shape ``(n,)``.
        fix: What the user should change, appended to the message.
    """
    train_labels = np.asarray(train_labels)
    n = int(train_labels.size)
    if n == 0:
        raise ValueError("the corpus has no training rows to annotate; check data.test_fraction and the data.")
    unsafe = int(train_labels.sum())
    if unsafe in (0, n):
        which = "unsafe" if unsafe == n else "safe"
        raise ValueError(
            f"the annotator labelled all {n} training texts {which}; UU learning needs both sets non-empty; {fix}."
        )
