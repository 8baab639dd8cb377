"""Train a classifier head on cached features: a plain torch loop with validation-risk model selection.

This is the fast CPU path of the frozen encoder. One call trains one fresh head for one iteration; the epoch with the
lowest validation risk (same objective, pseudo-labelled validation rows, no gold) is kept, or, with
``selection: labeled``, the epoch with the lowest supervised risk on the gold labels of L.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from refine.config import TrainConfig
from refine.heads import ClassifierHead
from refine.losses import pn_risk
from refine.objectives import training_risk
from refine.priors import Priors

logger = logging.getLogger(__name__)


# TrainConfig.selection → the history column whose lowest value picks the epoch kept.
SELECTION_KEYS = {"validation": "validation_risk", "labeled": "labeled_risk"}


@dataclass
class HeadData:
    """Rows of cached features with their labels."""

    features: torch.Tensor  # (n, hidden) head inputs
    in_u1: torch.Tensor  # (n,) bool: pseudo-label unsafe
    gold: torch.Tensor  # (n,) long: 1 unsafe, 0 safe, -1 unknown

    def __len__(self) -> int:
        return self.features.shape[0]


def _objective(head, data: HeadData, config: TrainConfig, priors: Priors | None, labeled: HeadData | None):
    risk = training_risk(
        config.loss, head(data.features), in_u1=data.in_u1, gold=data.gold, priors=priors, gamma=config.gamma,
        surrogate=config.surrogate,
    )
    if labeled is not None and config.labeled_weight > 0 and config.loss != "labeled":
        risk = risk + config.labeled_weight * pn_risk(head(labeled.features), labeled.gold, config.surrogate)
    return risk


def train_head(
    head: ClassifierHead,
    train: HeadData,
    *,
    config: TrainConfig,
    priors: Priors | None,
    seed: int,
    validation: HeadData | None = None,
    labeled: HeadData | None = None,
) -> tuple[ClassifierHead, list[dict]]:
    """Train ``head`` in place and return it with the selected epoch's weights, plus the per-epoch history.

    Args:
        head: A fresh head (see ``refine.heads.new_head``).
        train: Training rows.
        config: Loss, optimiser and epoch settings.
        priors: Priors of the current split (UU losses).
        seed: Seeds batch order and dropout, so an iteration is reproducible on resume.
        validation: Held-out rows for selection; None (and no ``labeled`` for ``selection: labeled``) keeps the
            last epoch.
        labeled: The labelled set L, added to the objective when ``config.labeled_weight > 0``.

    Returns:
        ``(head, history)``; history rows hold ``epoch``, ``train_risk``, ``validation_risk``, ``labeled_risk``.
    """
    torch.manual_seed(seed)  # dropout draws from the global generator
    order_generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history: list[dict] = []
    best_state, best_risk = copy.deepcopy(head.state_dict()), float("inf")
    n = len(train)
    for epoch in range(1, config.num_train_epochs + 1):
        head.train()
        total, steps = 0.0, 0
        for batch in torch.randperm(n, generator=order_generator).split(config.batch_size):
            rows = HeadData(train.features[batch], train.in_u1[batch], train.gold[batch])
            risk = _objective(head, rows, config, priors, labeled)
            optimizer.zero_grad()
            risk.backward()
            optimizer.step()
            total, steps = total + risk.item(), steps + 1
        row = {"epoch": epoch, "train_risk": total / max(steps, 1)}
        head.eval()
        with torch.no_grad():
            if validation is not None:
                row["validation_risk"] = _objective(head, validation, config, priors, None).item()
            if labeled is not None and len(labeled):
                row["labeled_risk"] = pn_risk(head(labeled.features), labeled.gold, config.surrogate).item()
        criterion = row.get(SELECTION_KEYS[config.selection])
        if criterion is not None and criterion < best_risk:
            best_risk, best_state = criterion, copy.deepcopy(head.state_dict())
        history.append(row)
    if best_risk < float("inf"):
        head.load_state_dict(best_state)
    head.eval()
    return head, history


@torch.no_grad()
def predict_logits(head: ClassifierHead, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``unsafe_logit`` of every row, shape ``(n,)``, in eval mode."""
    head.eval()
    return torch.cat([head(chunk) for chunk in features.split(batch_size)]) if len(features) else torch.empty(0)
