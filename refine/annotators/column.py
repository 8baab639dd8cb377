"""Pseudo-labels that are already in the data (``kind: column``): e.g. labels from an earlier annotation run.

The score is +1.0 for a pseudo-unsafe row and -1.0 otherwise; no decision rule is applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from refine.corpus import matches_values


def column_labels(corpus: pd.DataFrame, column: str, positive_values: list[Any]) -> np.ndarray:
    """Pseudo-labels read from ``corpus[column]``.

    Args:
        corpus: The corpus frame; must hold ``column``.
        column: The column holding the pseudo-labels (``AnnotatorConfig.column``).
        positive_values: Values meaning pseudo-unsafe (``AnnotatorConfig.column_positive_values``).

    Returns:
        Pseudo-labels, shape ``(N,)``, int64: 1 when the value is one of ``positive_values``, else 0.

    Raises:
        ValueError: If the column is absent or has missing values.
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
    return matches_values(values, positive_values).to_numpy().astype(np.int64)
