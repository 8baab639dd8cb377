"""refine.stopping: the four rules that end the refine loop early, on hand-written metric rows."""

from __future__ import annotations

import pytest

from refine.stopping import iterations_since_best, stop_reason


def row(k: int, *, signal: str = "informative", rho: float = 0.4, flip_fraction: float = 0.2,
        labeled_accuracy: float = 0.8) -> dict:
    return {"iteration": k, "signal": signal, "rho": rho, "theta1": 0.81, "theta2": 0.12,
            "flip_fraction": flip_fraction, "labeled_accuracy": labeled_accuracy}


def stop(rows, *, iterations=5, loss="robust_uu", early_stop_flip_fraction=None, patience=None):
    return stop_reason(rows, iterations=iterations, loss=loss, early_stop_flip_fraction=early_stop_flip_fraction,
                       patience=patience)


def test_an_ordinary_iteration_goes_on():
    assert stop([row(0), row(1)], early_stop_flip_fraction=0.01, patience=2) is None


@pytest.mark.parametrize(("rho", "word"), [(1.0, "unsafe"), (0.0, "safe")])
def test_collapsed_labels_stop_with_a_warning_naming_the_class(rho, word):
    reason = stop([row(0), row(1, signal="collapsed", rho=rho)])
    assert reason.warning and f"iteration 1 labelled every training text {word}: the classifier collapsed" in reason.message


def test_collapsed_labels_stop_even_at_the_last_iteration_and_with_any_loss():
    assert stop([row(0), row(1, signal="collapsed", rho=1.0)], iterations=1, loss="gold") is not None


def test_lost_signal_stops_a_loss_that_reads_pseudo_labels_before_the_last_iteration():
    rows = [row(0), row(1), row(2, signal="none")]
    reason = stop(rows, loss="uu")
    assert reason.warning
    assert reason.message.startswith("the labels of iteration 2 carry no usable signal (theta1=0.81, theta2=0.12)")
    assert stop(rows, loss="pn") is None  # pn, gold and labeled do not need the split to carry signal
    assert stop(rows, loss="gold") is None
    assert stop(rows, iterations=2) is None  # nothing would run after it anyway


def test_few_flips_stop_as_configured():
    rows = [row(0), row(1, flip_fraction=0.004)]
    # 0.004 of the labels flipped, below the configured 0.01: an ordinary stop, logged as info.
    assert stop(rows, early_stop_flip_fraction=0.01) == ("stopping early: 0.0040 of labels flipped (< 0.01)", False)
    assert stop(rows, early_stop_flip_fraction=0.004) is None  # not strictly below
    assert stop(rows) is None  # off


def test_patience_counts_iterations_since_the_best_accuracy_on_L():
    rows = [row(0, labeled_accuracy=0.9), row(1, labeled_accuracy=0.7), row(2, labeled_accuracy=0.8),
            row(3, labeled_accuracy=0.75), row(4, labeled_accuracy=0.79)]
    # Best on L: iteration 2 (0.8); iterations 3 and 4 did not improve on it, so 2 iterations are stale.
    reason = stop(rows, patience=2)
    assert reason == ("stopping early: accuracy on L has not improved for 2 iteration(s) (best 0.800 at iteration 2; "
                      "loop.patience=2)", False)
    assert stop(rows, patience=3) is None
    assert stop(rows, patience=2, iterations=4) is None  # the last iteration: nothing left to save
    assert stop(rows) is None  # off


def test_the_first_rule_that_applies_gives_the_reason():
    rows = [row(0), row(1, labeled_accuracy=0.9), row(2, signal="collapsed", rho=0.0, flip_fraction=0.0,
                                                    labeled_accuracy=0.5)]
    reason = stop(rows, early_stop_flip_fraction=0.01, patience=1)
    assert reason.warning and "collapsed to one class" in reason.message


@pytest.mark.parametrize(
    ("accuracies", "expected"), [([0.5], 0), ([0.5, 0.7, 0.6], 1), ([0.7, 0.7, 0.6], 2), ([0.6, 0.7, 0.8], 0)]
)
def test_iterations_since_best_counts_from_the_first_best_iteration(accuracies, expected):
    rows = [{"labeled_accuracy": 0.9}] + [{"labeled_accuracy": a} for a in accuracies]  # iteration 0 is not counted
    assert iterations_since_best(rows) == expected
