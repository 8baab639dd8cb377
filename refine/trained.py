"""What one refine iteration's training returns, whichever backbone trained it (frozen head or fine-tuned model).

Its own module so that :mod:`refine.loop` (which calls the backbones) and :mod:`refine.finetune` (a backbone) share
it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class TrainedClassifier:
    """One iteration's classifier: its ``unsafe_logit`` on every corpus row, its history, and how to save it."""

    scores: np.ndarray  # (N,) float64, corpus order (train and test rows)
    history: list[dict]  # per-epoch train_risk / validation_risk
    save: Callable[..., None]  # save(folder, threshold=decision_threshold)
