"""The score → pseudo-label rule of refine.annotators.decision, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from refine.annotators.decision import (
    check_both_classes,
    decide_labels,
    labeled_unsafe_rate,
    top_fraction_cut,
)


def test_zero_threshold_is_strictly_positive():
    scores = np.array([-1.0, 0.0, 0.5, 2.0])
    labels = decide_labels(scores, is_train=np.ones(4, bool), threshold="zero")
    # 0.0 is not > 0: safe.
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    assert labels.dtype == np.int64


def test_positive_fraction_is_fitted_on_train_and_applied_to_test():
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.6, 0.4])
    is_train = np.array([True, True, True, True, False, False])
    # 4 training scores, f = 0.5 → k = 2 → cut = 2nd largest training score = 0.5.
    # Train: 0.9, 0.5 unsafe. Test: 0.6 >= 0.5 unsafe, 0.4 safe.
    labels = decide_labels(scores, is_train=is_train, threshold="positive_fraction", positive_fraction=0.5)
    np.testing.assert_array_equal(labels, [0, 1, 1, 0, 1, 0])


def test_positive_fraction_rounds_half_up_and_keeps_ties_together():
    # f * n = 0.25 * 10 = 2.5 → k = 3 → cut = 3rd largest of 0..9 = 7.
    assert top_fraction_cut(np.arange(10.0), 0.25) == 7.0
    # k = round(0.25 * 4) = 1 → cut = 1.0; the three scores tied at 1.0 are all unsafe.
    labels = decide_labels(
        np.array([1.0, 1.0, 1.0, 0.0]), is_train=np.ones(4, bool), threshold="positive_fraction", positive_fraction=0.25
    )
    np.testing.assert_array_equal(labels, [1, 1, 1, 0])
    # k = round(0.1 * 4) = 0: nothing is unsafe.
    assert top_fraction_cut(np.arange(4.0), 0.1) == float("inf")


def test_labeled_prior_uses_add_one_smoothed_rate_of_L():
    # L holds 1 unsafe of 8: (1 + 1) / (8 + 2) = 0.2.
    labeled_gold = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    assert labeled_unsafe_rate(labeled_gold) == pytest.approx(0.2)
    # An all-safe L of 3: (0 + 1) / (3 + 2) = 0.2, never 0.
    assert labeled_unsafe_rate(np.zeros(3, int)) == pytest.approx(0.2)
    # 10 training scores 0..9, f = 0.2 → k = 2 → cut = 8: rows 8 and 9 unsafe.
    labels = decide_labels(
        np.arange(10.0), is_train=np.ones(10, bool), threshold="labeled_prior", labeled_gold=labeled_gold
    )
    np.testing.assert_array_equal(labels, [0] * 8 + [1, 1])


def test_labeled_prior_without_L_is_an_error():
    with pytest.raises(ValueError, match="labelled set L, but L is empty"):
        decide_labels(np.arange(4.0), is_train=np.ones(4, bool), threshold="labeled_prior", labeled_gold=np.array([]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": "median"}, "unknown threshold 'median'"),
        ({"threshold": "positive_fraction"}, "positive_fraction=None must lie in"),
        ({"threshold": "positive_fraction", "positive_fraction": 1.0}, "positive_fraction=1.0 must lie in"),
    ],
)
def test_bad_rule_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decide_labels(np.arange(4.0), is_train=np.ones(4, bool), **kwargs)


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="1 annotator scores are not finite"):
        decide_labels(np.array([0.0, np.nan, 1.0]), is_train=np.ones(3, bool), threshold="zero")


def test_one_class_is_an_error_naming_count_class_and_fix():
    with pytest.raises(ValueError, match=r"labelled all 3 training texts safe; UU learning needs both sets non-empty; "
                       r"change the prompt\.$"):
        check_both_classes(np.array([0, 0, 0]), fix="change the prompt")
    with pytest.raises(ValueError, match="labelled all 2 training texts unsafe"):
        check_both_classes(np.array([1, 1]), fix="x")
    check_both_classes(np.array([0, 1]), fix="x")  # both classes: fine
