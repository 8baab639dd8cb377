import numpy as np
import pytest

from refine.annotators.simulated import simulated_labels
from refine.config import AnnotatorConfig


def test_flip_rates_match_on_a_large_sample():
    gold = np.r_[np.ones(20_000, int), np.zeros(20_000, int)]
    pseudo = simulated_labels(gold, flip_unsafe=0.3, flip_safe=0.1, seed=0)
    # Binomial standard error sqrt(0.3 * 0.7 / 20000) = 0.0032; 0.015 is ~4.6 standard errors.
    assert abs((pseudo[:20_000] == 0).mean() - 0.3) < 0.015
    assert abs((pseudo[20_000:] == 1).mean() - 0.1) < 0.015


def test_same_seed_same_labels_other_seed_other_labels():
    gold = np.random.default_rng(1).integers(0, 2, 500)
    first = simulated_labels(gold, flip_unsafe=0.3, flip_safe=0.1, seed=4)
    assert np.array_equal(first, simulated_labels(gold, flip_unsafe=0.3, flip_safe=0.1, seed=4))
    assert not np.array_equal(first, simulated_labels(gold, flip_unsafe=0.3, flip_safe=0.1, seed=5))


def test_rows_without_gold_are_refused():
    with pytest.raises(ValueError, match="needs a gold label on every row; 1 rows have none"):
        simulated_labels(np.array([1, 0, -1]), flip_unsafe=0.3, flip_safe=0.1, seed=0)


def test_rates_that_destroy_the_signal_are_refused():
    with pytest.raises(ValueError, match="flip_unsafe \\+ flip_safe = 1.00 must be below 1"):
        AnnotatorConfig(kind="simulated", flip_unsafe=0.6, flip_safe=0.4)
