"""Class-prior estimation for UU learning (pure functions of numpy arrays).

Notation (``docs/method.md``): ``y`` is the gold label (1 unsafe, 0 safe), ``s`` the pseudo-label (1 means the text is in
U1, the pseudo-unsafe set; 0 means U2). ``rho = |U1| / N`` is counted exactly on the whole corpus.

- ``pi = P(y=1)``, ``theta1 = P(y=1 | s=1)``, ``theta2 = P(y=1 | s=0)``.
- ``oracle``: counted on every gold label of the corpus (research comparison only).
- ``direct``: counted on the small labelled set L, with add-one smoothing (``(k+1)/(n+2)``).
- ``consistent`` (default): theta1 and theta2 as in ``direct``; ``pi = theta1 * rho + theta2 * (1 - rho)``, so the
  three priors agree with the exactly known rho and pi has lower variance than the raw rate on L.

Intervals are percentile-bootstrap intervals over resamples of L (or of the corpus, for ``oracle``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from refine.constants import BOOTSTRAP_RESAMPLES, LAPLACE_PSEUDOCOUNT

PriorMethod = Literal["oracle", "direct", "consistent"]
PRIOR_METHODS: tuple[str, ...] = ("oracle", "direct", "consistent")


@dataclass(frozen=True)
class Priors:
    """Class priors of the two pseudo-labelled sets. All three are probabilities of the unsafe class."""

    pi: float
    theta1: float
    theta2: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def smoothed_rate(positives: int, total: int) -> float:
    """Add-one smoothed rate ``(k + 1) / (n + 2)``: 0.5 for an empty cell, never exactly 0 or 1."""
    return (positives + LAPLACE_PSEUDOCOUNT) / (total + 2.0 * LAPLACE_PSEUDOCOUNT)


def _validate(gold: np.ndarray, pseudo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gold = np.asarray(gold)
    pseudo = np.asarray(pseudo)
    if gold.shape != pseudo.shape or gold.ndim != 1:
        raise ValueError(
            f"gold labels have shape {gold.shape} and pseudo-labels {pseudo.shape}; both must be 1-D and equal."
        )
    for name, values in (("gold", gold), ("pseudo", pseudo)):
        if values.size and not np.isin(values, (0, 1)).all():
            # .tolist() gives plain Python values, so the message reads [-1, 2], not [np.int64(-1), ...].
            unexpected = sorted(set(np.unique(values).tolist()) - {0, 1}, key=str)[:5]
            raise ValueError(f"{name} labels must be 0 or 1; found {unexpected}.")
    return gold.astype(np.int64), pseudo.astype(np.int64)


def oracle_priors(gold: np.ndarray, pseudo: np.ndarray) -> Priors:
    """Priors counted on all gold labels of the corpus, without smoothing.

    Args:
        gold: Gold labels of every corpus text, shape ``(N,)``, values 0/1.
        pseudo: Pseudo-labels of the same texts, shape ``(N,)``.
    """
    gold, pseudo = _validate(gold, pseudo)
    in_u1 = pseudo == 1
    theta1 = float(gold[in_u1].mean()) if in_u1.any() else 0.5
    theta2 = float(gold[~in_u1].mean()) if (~in_u1).any() else 0.5
    return Priors(pi=float(gold.mean()), theta1=theta1, theta2=theta2)


def direct_priors(gold: np.ndarray, pseudo: np.ndarray) -> Priors:
    """Smoothed rates on L: pi from all of L, theta1 from L ∩ U1, theta2 from L ∩ U2.

    Args:
        gold: Gold labels of the labelled set L, shape ``(n,)``, values 0/1.
        pseudo: Current pseudo-labels of the same texts, shape ``(n,)``.
    """
    gold, pseudo = _validate(gold, pseudo)
    in_u1 = pseudo == 1
    return Priors(
        pi=smoothed_rate(int(gold.sum()), gold.size),
        theta1=smoothed_rate(int(gold[in_u1].sum()), int(in_u1.sum())),
        theta2=smoothed_rate(int(gold[~in_u1].sum()), int((~in_u1).sum())),
    )


def consistent_priors(gold: np.ndarray, pseudo: np.ndarray, *, rho: float) -> Priors:
    """theta1, theta2 as in :func:`direct_priors`; ``pi = theta1 * rho + theta2 * (1 - rho)``.

    Args:
        gold: Gold labels of L, shape ``(n,)``.
        pseudo: Pseudo-labels of L, shape ``(n,)``.
        rho: Share of the whole corpus in U1, ``|U1| / N``, in [0, 1].
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho={rho} must lie in [0, 1]: it is the share of the corpus labelled unsafe.")
    direct = direct_priors(gold, pseudo)
    # Law of total probability: P(y=1) = P(y=1|s=1) P(s=1) + P(y=1|s=0) P(s=0).
    pi = direct.theta1 * rho + direct.theta2 * (1.0 - rho)
    return Priors(pi=pi, theta1=direct.theta1, theta2=direct.theta2)


def estimate_priors(gold: np.ndarray, pseudo: np.ndarray, *, method: PriorMethod, rho: float | None = None) -> Priors:
    """Dispatch to one estimator. ``rho`` is required for ``consistent`` and ignored otherwise."""
    if method == "oracle":
        return oracle_priors(gold, pseudo)
    if method == "direct":
        return direct_priors(gold, pseudo)
    if method == "consistent":
        if rho is None:
            raise ValueError("the consistent estimator needs rho, the share of the corpus labelled unsafe.")
        return consistent_priors(gold, pseudo, rho=rho)
    raise ValueError(f"unknown prior method {method!r}; choose one of {', '.join(PRIOR_METHODS)}.")


def bootstrap_intervals(
    gold: np.ndarray,
    pseudo: np.ndarray,
    *,
    method: PriorMethod,
    rho: float | None = None,
    level: float = 0.9,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals for pi, theta1, theta2 and their gap ``theta1 - theta2``.

    The labelled pairs (gold, pseudo) are resampled with replacement; rho is a corpus count and stays fixed.

    Returns:
        ``{"pi": (lo, hi), "theta1": ..., "theta2": ..., "gap": ...}`` at the given level.
    """
    gold, pseudo = _validate(gold, pseudo)
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, 4))
    for i in range(resamples):
        idx = rng.integers(0, gold.size, gold.size)
        p = estimate_priors(gold[idx], pseudo[idx], method=method, rho=rho)
        draws[i] = (p.pi, p.theta1, p.theta2, p.theta1 - p.theta2)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return {name: (float(lo[j]), float(hi[j])) for j, name in enumerate(("pi", "theta1", "theta2", "gap"))}


AnnotatorSignal = Literal["informative", "weak", "inverted", "none"]


def assess_signal(priors: Priors, gap_interval: tuple[float, float], *, min_prior_gap: float) -> AnnotatorSignal:
    """Classify how much the current split tells apart the classes.

    - ``none``: ``|theta1 - theta2| < min_prior_gap``; the UU coefficients explode and learning is meaningless.
    - ``inverted``: theta1 < theta2 and the gap's interval excludes 0; the annotator is anti-correlated.
    - ``weak``: the gap's interval includes 0; the labelled set cannot confirm the annotator has signal.
    - ``informative``: theta1 > theta2 and the interval excludes 0.
    """
    gap = priors.theta1 - priors.theta2
    if abs(gap) < min_prior_gap:
        return "none"
    lo, hi = gap_interval
    if lo <= 0.0 <= hi:
        return "weak"
    return "inverted" if gap < 0 else "informative"
