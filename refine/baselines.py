"""Simple baselines every refine run reports beside the refined classifier, on the same frozen features.

- ``majority``: always predict the majority class of L.
- ``labeled_logreg``: scikit-learn logistic regression on the ~50 gold labels of L alone.
- ``labeled_head``: the same head as the refined classifier, trained on L alone for the same number of optimiser
  steps. With the logistic regression, this is what a user with 50 labels would try first.
- ``gold_head``: the same head trained on the gold labels of the whole training corpus: the ceiling.

All are evaluated on the gold test split that no step saw.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sklearn.linear_model import LogisticRegression

from refine.head_training import predict_logits, train_head
from refine.heads import new_head
from refine.metrics import classification_metrics, majority_accuracy


def _head_metrics(corpus, model, train_config, rows, validation, seed) -> dict:
    labels = np.zeros(len(corpus.frame), dtype=np.int64)  # pseudo-labels are not read by gold-label losses
    head, _ = train_head(
        new_head(model, seed=seed), corpus.head_data(rows, labels), config=train_config, priors=None, seed=seed,
        validation=corpus.head_data(validation, labels) if validation is not None else None,
    )
    scores = predict_logits(head, corpus.features.head_input[corpus.test]).numpy()
    return classification_metrics(corpus.gold[corpus.test], (scores > 0).astype(int), scores)


def simple_baselines(corpus, model, config) -> dict:
    """Test metrics of each baseline (see module docstring); empty when there is no gold test split."""
    test_gold = corpus.gold[corpus.test]
    if len(corpus.test) == 0 or len(corpus.labeled) == 0:
        return {}
    out = {"majority": {"accuracy": majority_accuracy(corpus.gold[corpus.labeled], test_gold), "n": len(test_gold)}}

    features = corpus.features.head_input.numpy()
    labeled_gold = corpus.gold[corpus.labeled]
    if len(np.unique(labeled_gold)) == 2:
        logreg = LogisticRegression(C=1.0, max_iter=2000).fit(features[corpus.labeled], labeled_gold)
        scores = logreg.decision_function(features[corpus.test])
        out["labeled_logreg"] = classification_metrics(test_gold, (scores > 0).astype(int), scores)

    # Same number of optimiser steps as one refine iteration: L fits in one batch, so one step per epoch.
    train_rows = np.setdiff1d(corpus.train, corpus.validation)
    steps = config.train.num_train_epochs * math.ceil(len(train_rows) / config.train.batch_size)
    labeled_config = dataclasses.replace(config.train, loss="labeled", num_train_epochs=steps, labeled_weight=0.0,
                                         selection="validation")
    out["labeled_head"] = _head_metrics(corpus, model, labeled_config, corpus.labeled, None, config.train.seed)

    gold_rows = train_rows[corpus.gold[train_rows] >= 0]
    gold_validation = corpus.validation[corpus.gold[corpus.validation] >= 0]
    if len(np.unique(corpus.gold[gold_rows])) == 2:
        gold_config = dataclasses.replace(config.train, loss="gold", labeled_weight=0.0, selection="validation")
        out["gold_head"] = _head_metrics(corpus, model, gold_config, gold_rows, gold_validation, config.train.seed)
    return out


def cleanlab_baseline(features: np.ndarray, pseudo: np.ndarray, *, train: np.ndarray, test: np.ndarray,
                      gold: np.ndarray, seed: int) -> dict:
    """cleanlab's CleanLearning (confident learning) with logistic regression, fit on the pseudo-labels of the
    training rows; test metrics against gold. A noisy-label baseline that uses no gold label at all."""
    try:
        from cleanlab.classification import CleanLearning
    except ImportError as err:
        raise ImportError("the cleanlab baseline needs the bench extra: pip install -e '.[bench]' (make bench).") from err

    model = CleanLearning(LogisticRegression(C=1.0, max_iter=2000), seed=seed, verbose=False)
    model.fit(features[train], pseudo[train])
    scores = model.predict_proba(features[test])[:, 1]
    return classification_metrics(gold[test], (scores > 0.5).astype(int), scores)
