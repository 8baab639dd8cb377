"""The training objective of one iteration, by name: routes logits and labels to the pure risks in ``losses``.

Shared by the frozen-head trainer and the fine-tuning Trainer so both optimise exactly the same risk.
"""

from __future__ import annotations

import torch

from refine.losses import pn_risk, robust_uu_risk, uu_risk
from refine.priors import Priors

# Losses that read the pseudo-labels (and need priors); `gold` and `labeled` read gold labels instead.
UNLABELED_LOSSES = ("robust_uu", "uu")
# Losses supervised by gold labels (all of the corpus's, or L's); with them, L is part of training.
GOLD_LOSSES = ("gold", "labeled")


def training_risk(
    loss: str,
    logits: torch.Tensor,
    *,
    in_u1: torch.Tensor,
    gold: torch.Tensor,
    priors: Priors | None,
    gamma: float,
    surrogate: str = "sigmoid",
) -> torch.Tensor:
    """Risk of ``logits`` under the named objective.

    Args:
        loss: ``robust_uu`` | ``uu`` | ``pn`` (supervised on pseudo-labels) | ``gold`` / ``labeled`` (supervised on
            gold labels; rows with gold == -1 are ignored).
        logits: ``unsafe_logit`` of the batch, shape ``(n,)``.
        in_u1: True where the pseudo-label is unsafe, shape ``(n,)``.
        gold: Gold labels 1/0, or -1 where unknown, shape ``(n,)``.
        priors: Class priors of the current split; required for the UU losses.
        gamma: Slope of the robust correction.
        surrogate: Pointwise loss, ``sigmoid`` or ``logistic`` (``train.surrogate``; see ``refine.losses``).

    Returns:
        A scalar tensor.
    """
    if loss in UNLABELED_LOSSES:
        if priors is None:
            raise ValueError(f"loss={loss} needs class priors.")
        risk = robust_uu_risk if loss == "robust_uu" else uu_risk
        kwargs = {"gamma": gamma} if loss == "robust_uu" else {}
        return risk(logits[in_u1], logits[~in_u1], pi=priors.pi, theta1=priors.theta1, theta2=priors.theta2,
                    surrogate=surrogate, **kwargs)
    if loss == "pn":
        return pn_risk(logits, in_u1, surrogate)
    if loss in GOLD_LOSSES:
        known = gold >= 0
        return pn_risk(logits[known], gold[known], surrogate)
    raise ValueError(f"unknown loss {loss!r}; choose robust_uu, uu, pn, gold or labeled.")
