"""A simulated annotator for research: gold labels flipped with class-conditional rates.

Each unsafe text is labelled safe with probability ``flip_unsafe`` and each safe text unsafe with probability
``flip_safe``, independently of the text. This is the setting where UU learning is exactly consistent (the two
pseudo-labelled sets are mixtures of the same two class-conditional distributions), so it isolates the method from
the instance-dependent errors of a real annotator. It needs a gold label on every row and is not an annotator for
real use.
"""

from __future__ import annotations

import numpy as np


def simulated_labels(gold: np.ndarray, *, flip_unsafe: float, flip_safe: float, seed: int) -> np.ndarray:
    """Pseudo-labels 1/0 from gold labels 1/0 with class-conditional flips.

    Args:
        gold: Gold labels, shape ``(n,)``; every entry must be 0 or 1.
        flip_unsafe: P(pseudo-label safe | gold unsafe).
        flip_safe: P(pseudo-label unsafe | gold safe).
        seed: Seed of the flips; the same seed gives the same labels.

    Raises:
        ValueError: If a row has no gold label.
    """
    gold = np.asarray(gold)
    missing = int((gold < 0).sum())
    if missing:
        raise ValueError(
            f"the simulated annotator needs a gold label on every row; {missing} rows have none. Set "
            "data.label_columns, or use another annotator kind."
        )
    draws = np.random.default_rng(seed).random(gold.shape[0])
    flipped = np.where(gold == 1, draws < flip_unsafe, draws < flip_safe)
    return np.where(flipped, 1 - gold, gold).astype(np.int64)
