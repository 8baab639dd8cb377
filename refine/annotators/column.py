"""Pseudo-labels that are already in the data (``kind: column``): e.g. labels from an earlier annotation run, or an
LLM judge's labels stored beside the texts.

The score is +1.0 for a pseudo-unsafe row, -1.0 for a pseudo-safe one and 0.0 for an abstention; no decision rule is
applied. With ``column_negative_values``, a value in neither list (a judge that answered with free text instead of a
class) is counted, reported on one line, and handled by ``column_other``: ``error``, ``abstain`` (pseudo-label
:data:`ABSTAIN`: in neither U1 nor U2), or read as ``unsafe`` / ``safe``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from refine.corpus import matches_values

logger = logging.getLogger(__name__)

ABSTAIN = -1  # pseudo-label of a text the annotator gave no class


def column_labels(corpus: pd.DataFrame, column: str, positive_values: list[Any],
                  negative_values: list[Any] | None = None, other: str = "error") -> np.ndarray:
    """Pseudo-labels read from ``corpus[column]``.

    Args:
        corpus: The corpus frame; must hold ``column``.
        column: The column holding the pseudo-labels (``AnnotatorConfig.column``).
        positive_values: Values meaning pseudo-unsafe (``AnnotatorConfig.column_positive_values``).
        negative_values: Values meaning pseudo-safe; None: every value that is not positive.
        other: What a value in neither list becomes (``AnnotatorConfig.column_other``): ``error``, ``abstain``,
            ``unsafe`` or ``safe``. Only used with ``negative_values``.

    Returns:
        Pseudo-labels, shape ``(N,)``, int64: 1 pseudo-unsafe, 0 pseudo-safe, :data:`ABSTAIN` no label.

    Raises:
        ValueError: If the column is absent or has missing values, or (``other="error"``) holds a value in neither
            list.
    """
    if column not in corpus.columns:
        raise ValueError(
            f"annotator column {column!r} not found in the corpus (found: {', '.join(map(str, corpus.columns))}); "
            "set annotator.column to an existing column."
        )
    values = corpus[column]
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(
            f"annotator column {column!r} has {missing} missing values of {len(values)}; fill them, or drop those "
            "rows, or use another annotator kind."
        )
    positive = matches_values(values, positive_values).to_numpy()
    labels = positive.astype(np.int64)
    if negative_values is None:
        return labels
    leftover = ~positive & ~matches_values(values, negative_values).to_numpy()
    if not leftover.any():
        return labels
    seen = pd.Series(values[leftover]).astype(str).value_counts()
    examples = "; ".join(f"{_short(text)!r} ×{count}" for text, count in seen.head(3).items())
    summary = (f"annotator column {column!r}: {int(leftover.sum())} of {len(values)} values are neither "
               f"{positive_values} nor {negative_values} ({examples})")
    if other == "error":
        raise ValueError(f"{summary}; set annotator.column_other to abstain, unsafe or safe, or add them to one list.")
    labels[leftover] = {"abstain": ABSTAIN, "unsafe": 1, "safe": 0}[other]
    logger.warning("%s; annotator.column_other=%s: %s", summary, other, {
        "abstain": "they get no pseudo-label (in neither U1 nor U2) until iteration 1 relabels them",
        "unsafe": "read as pseudo-unsafe", "safe": "read as pseudo-safe"}[other])
    return labels


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
