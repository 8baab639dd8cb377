"""Specs for ``refine.priors``: smoothed rates, the three estimators, bootstrap intervals and the signal check."""

from __future__ import annotations

import numpy as np
import pytest

from refine.priors import (
    Priors,
    assess_signal,
    bootstrap_intervals,
    consistent_priors,
    direct_priors,
    estimate_priors,
    oracle_priors,
    smoothed_rate,
)


@pytest.fixture
def labelled_set() -> tuple[np.ndarray, np.ndarray]:
    """Ten hand-made labelled texts.

    U1 (pseudo = 1) is the first four: gold 1, 1, 1, 0   -> 3 unsafe of 4.
    U2 (pseudo = 0) is the last six:  gold 0, 0, 1, 0, 0, 0 -> 1 unsafe of 6.
    All of L: 4 unsafe of 10.
    """
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0])
    pseudo = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    return gold, pseudo


def draw_labelled_set(
    rng: np.random.Generator, n: int, *, rho: float, theta1: float, theta2: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` texts from an (infinite) population: s ~ Bernoulli(rho), y | s ~ Bernoulli(theta1 if s else theta2)."""
    pseudo = (rng.random(n) < rho).astype(np.int64)
    gold = (rng.random(n) < np.where(pseudo == 1, theta1, theta2)).astype(np.int64)
    return gold, pseudo


class TestSmoothedRate:
    @pytest.mark.parametrize(
        ("positives", "total", "expected"),
        [
            (0, 0, 0.5),  # (0 + 1) / (0 + 2): an empty cell says nothing
            (3, 10, 1 / 3),  # (3 + 1) / (10 + 2) = 4/12
            (10, 10, 11 / 12),  # (10 + 1) / (10 + 2): a pure cell is not 1
            (0, 10, 1 / 12),  # (0 + 1) / (10 + 2): nor 0
        ],
    )
    def test_add_one_smoothing(self, positives, total, expected):
        assert smoothed_rate(positives, total) == pytest.approx(expected, abs=1e-12)


class TestEstimators:
    def test_oracle_counts_without_smoothing(self, labelled_set):
        # theta1 = 3/4, theta2 = 1/6, pi = 4/10
        priors = oracle_priors(*labelled_set)
        assert priors.as_dict() == pytest.approx({"pi": 0.4, "theta1": 0.75, "theta2": 1 / 6}, abs=1e-12)

    def test_oracle_empty_set_is_one_half(self):
        # No text in U1: theta1 cannot be counted and is reported as 0.5; theta2 = 1/3, pi = 1/3.
        priors = oracle_priors(np.array([1, 0, 0]), np.array([0, 0, 0]))
        assert priors.as_dict() == pytest.approx({"pi": 1 / 3, "theta1": 0.5, "theta2": 1 / 3}, abs=1e-12)

    def test_direct_smooths_each_cell(self, labelled_set):
        # theta1 = (3 + 1) / (4 + 2) = 2/3, theta2 = (1 + 1) / (6 + 2) = 1/4, pi = (4 + 1) / (10 + 2) = 5/12
        priors = direct_priors(*labelled_set)
        assert priors.as_dict() == pytest.approx({"pi": 5 / 12, "theta1": 2 / 3, "theta2": 0.25}, abs=1e-12)

    def test_direct_with_an_empty_cell(self):
        # Every text pseudo-safe: theta1 = (0 + 1) / (0 + 2) = 1/2; theta2 = (1 + 1) / (3 + 2) = 2/5 = pi.
        priors = direct_priors(np.array([1, 0, 0]), np.array([0, 0, 0]))
        assert priors.as_dict() == pytest.approx({"pi": 0.4, "theta1": 0.5, "theta2": 0.4}, abs=1e-12)

    def test_consistent_takes_pi_from_rho(self, labelled_set):
        # theta as in direct (2/3, 1/4); with rho = 0.3: pi = 2/3 * 0.3 + 1/4 * 0.7 = 0.2 + 0.175 = 0.375,
        # not the 5/12 counted on L.
        priors = consistent_priors(*labelled_set, rho=0.3)
        assert priors.as_dict() == pytest.approx({"pi": 0.375, "theta1": 2 / 3, "theta2": 0.25}, abs=1e-12)

    @pytest.mark.parametrize("rho", [0.0, 0.12, 0.5, 0.93, 1.0])
    def test_consistent_priors_obey_the_law_of_total_probability(self, labelled_set, rho):
        priors = consistent_priors(*labelled_set, rho=rho)
        assert priors.pi == pytest.approx(priors.theta1 * rho + priors.theta2 * (1 - rho), abs=1e-12)
        assert min(priors.theta1, priors.theta2) <= priors.pi <= max(priors.theta1, priors.theta2)

    def test_consistent_rejects_rho_outside_the_unit_interval(self, labelled_set):
        with pytest.raises(ValueError, match=r"rho=1\.2 must lie in \[0, 1\]"):
            consistent_priors(*labelled_set, rho=1.2)

    def test_boolean_and_float_labels_are_accepted(self, labelled_set):
        gold, pseudo = labelled_set
        assert direct_priors(gold.astype(bool), pseudo.astype(float)) == direct_priors(gold, pseudo)

    def test_oracle_is_exact_on_a_large_population(self):
        # 1,000 texts, 300 in U1 with 240 unsafe (theta1 = 0.8), 700 in U2 with 70 unsafe (theta2 = 0.1):
        # pi = 310 / 1000 = 0.31 exactly; direct on the same texts is pulled to 0.5 only slightly:
        # theta1 = 241 / 302 = 0.79801, theta2 = 71 / 702 = 0.10114.
        pseudo = np.r_[np.ones(300, int), np.zeros(700, int)]
        gold = np.r_[np.ones(240, int), np.zeros(60, int), np.ones(70, int), np.zeros(630, int)]
        assert oracle_priors(gold, pseudo).as_dict() == pytest.approx({"pi": 0.31, "theta1": 0.8, "theta2": 0.1})
        assert direct_priors(gold, pseudo).theta1 == pytest.approx(241 / 302, abs=1e-12)
        assert direct_priors(gold, pseudo).theta2 == pytest.approx(71 / 702, abs=1e-12)


class TestEstimatePriors:
    @pytest.mark.parametrize(
        ("method", "expected"),
        [("oracle", (0.4, 0.75, 1 / 6)), ("direct", (5 / 12, 2 / 3, 0.25)), ("consistent", (0.375, 2 / 3, 0.25))],
    )
    def test_dispatches_to_each_estimator(self, labelled_set, method, expected):
        priors = estimate_priors(*labelled_set, method=method, rho=0.3)
        assert (priors.pi, priors.theta1, priors.theta2) == pytest.approx(expected, abs=1e-12)

    def test_consistent_needs_rho(self, labelled_set):
        with pytest.raises(ValueError, match="consistent estimator needs rho"):
            estimate_priors(*labelled_set, method="consistent")

    def test_unknown_method_lists_the_choices(self, labelled_set):
        with pytest.raises(ValueError, match="unknown prior method 'bayes'; choose one of oracle, direct, consistent"):
            estimate_priors(*labelled_set, method="bayes")  # type: ignore[arg-type]


class TestValidation:
    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"gold labels have shape \(3,\) and pseudo-labels \(2,\)"):
            direct_priors(np.array([0, 1, 1]), np.array([0, 1]))

    def test_two_dimensional_labels(self):
        with pytest.raises(ValueError, match=r"shape \(2, 2\).*both must be 1-D"):
            oracle_priors(np.array([[0, 1], [1, 0]]), np.array([[0, 1], [1, 0]]))

    def test_non_binary_gold_lists_the_bad_values(self):
        with pytest.raises(ValueError, match=r"gold labels must be 0 or 1; found \[-1, 2\]"):
            direct_priors(np.array([0, 1, 2, -1]), np.array([0, 1, 1, 0]))

    def test_non_binary_pseudo(self):
        with pytest.raises(ValueError, match=r"pseudo labels must be 0 or 1; found \[0\.5\]"):
            consistent_priors(np.array([0, 1]), np.array([0.5, 1.0]), rho=0.5)

    def test_bootstrap_validates_too(self):
        with pytest.raises(ValueError, match="gold labels must be 0 or 1"):
            bootstrap_intervals(np.array([0, 3]), np.array([0, 1]), method="direct")


class TestBootstrapIntervals:
    @pytest.fixture
    def fifty(self) -> tuple[np.ndarray, np.ndarray]:
        return draw_labelled_set(np.random.default_rng(11), 50, rho=0.3, theta1=0.8, theta2=0.1)

    @pytest.mark.parametrize("method", ["oracle", "direct", "consistent"])
    def test_intervals_contain_the_point_estimate(self, fifty, method):
        point = estimate_priors(*fifty, method=method, rho=0.3)
        intervals = bootstrap_intervals(*fifty, method=method, rho=0.3, resamples=500, seed=0)
        assert set(intervals) == {"pi", "theta1", "theta2", "gap"}
        values = {**point.as_dict(), "gap": point.theta1 - point.theta2}
        for name, (lo, hi) in intervals.items():
            assert lo <= values[name] <= hi, name

    def test_intervals_narrow_with_more_labels(self):
        # Widths scale as 1/sqrt(n): 16 times the labels should give intervals about 4 times narrower; asking for
        # half leaves room for the Monte-Carlo error of 500 resamples.
        rng = np.random.default_rng(3)
        population = {"rho": 0.3, "theta1": 0.8, "theta2": 0.1}
        small = bootstrap_intervals(*draw_labelled_set(rng, 50, **population), method="consistent", rho=0.3,
                                    resamples=500)
        large = bootstrap_intervals(*draw_labelled_set(rng, 800, **population), method="consistent", rho=0.3,
                                    resamples=500)
        for name in small:
            assert large[name][1] - large[name][0] < (small[name][1] - small[name][0]) / 2, name

    def test_deterministic_for_a_seed(self, fifty):
        first = bootstrap_intervals(*fifty, method="direct", resamples=200, seed=5)
        assert bootstrap_intervals(*fifty, method="direct", resamples=200, seed=5) == first
        assert bootstrap_intervals(*fifty, method="direct", resamples=200, seed=6) != first

    def test_a_lower_level_gives_a_nested_interval(self, fifty):
        wide = bootstrap_intervals(*fifty, method="direct", level=0.9, resamples=500, seed=0)
        narrow = bootstrap_intervals(*fifty, method="direct", level=0.5, resamples=500, seed=0)
        for name in wide:
            assert wide[name][0] <= narrow[name][0] <= narrow[name][1] <= wide[name][1], name

    def test_consistent_needs_rho(self, fifty):
        with pytest.raises(ValueError, match="needs rho"):
            bootstrap_intervals(*fifty, method="consistent", resamples=10)


class TestAssessSignal:
    @pytest.mark.parametrize(
        ("theta1", "theta2", "gap_interval", "expected"),
        [
            (0.52, 0.48, (0.01, 0.07), "none"),  # |0.04| < 0.1, however tight the interval
            (0.48, 0.52, (-0.07, -0.01), "none"),  # the same below zero
            (0.6, 0.3, (-0.05, 0.6), "weak"),  # a 0.3 gap that L cannot confirm
            (0.6, 0.3, (0.0, 0.6), "weak"),  # an interval touching 0 does not exclude it
            (0.2, 0.7, (-0.7, -0.3), "inverted"),
            (0.8, 0.1, (0.5, 0.85), "informative"),
        ],
    )
    def test_cases(self, theta1, theta2, gap_interval, expected):
        priors = Priors(pi=0.3, theta1=theta1, theta2=theta2)
        assert assess_signal(priors, gap_interval, min_prior_gap=0.1) == expected

    def test_end_to_end_from_labels(self):
        # 100 labels from a good annotator (theta1 = 0.8, theta2 = 0.1): informative. The same labels with the
        # pseudo-labels swapped: inverted. Pseudo-labels that are independent coin flips: weak or none.
        rng = np.random.default_rng(0)
        gold, pseudo = draw_labelled_set(rng, 100, rho=0.3, theta1=0.8, theta2=0.1)

        def signal(pseudo_labels: np.ndarray) -> str:
            priors = direct_priors(gold, pseudo_labels)
            gap = bootstrap_intervals(gold, pseudo_labels, method="direct", resamples=300)["gap"]
            return assess_signal(priors, gap, min_prior_gap=0.1)

        assert signal(pseudo) == "informative"
        assert signal(1 - pseudo) == "inverted"
        assert signal((rng.random(100) < 0.5).astype(int)) in ("weak", "none")


def test_consistent_pi_has_lower_variance_than_direct_pi():
    """The point of the consistent estimator, measured on 2,000 random labelled sets of 50.

    Population: rho = 0.3, theta1 = 0.8, theta2 = 0.1, so pi = 0.8 * 0.3 + 0.1 * 0.7 = 0.31.
    - direct pi is a smoothed rate on 50 labels: Var ~ pi (1 - pi) / 50 * (50/52)^2 = 0.2139 / 50 * 0.925 = 0.00396
      (sd 0.063).
    - consistent pi only pays for the spread inside each set:
      Var ~ (rho theta1 (1 - theta1) + (1 - rho) theta2 (1 - theta2)) / 50 = (0.048 + 0.063) / 50 = 0.00222 (sd 0.047).
    Seed 7 gives sd 0.0633 (direct) and 0.0437 (consistent): a variance ratio of 0.48, against 0.56 in theory
    (smoothing shrinks the small-cell thetas a little further). A variance estimated from 2,000 draws has a relative
    SE of sqrt(2 / 2000) = 3%, so the ratio is 0.48 +- 0.02 and the bound 0.7 cannot fail by chance; a "consistent"
    pi that ignored rho would give a ratio near 1. Mean squared errors: 0.0019 (consistent) and 0.0040 (direct).
    """
    rng = np.random.default_rng(7)
    rho, draws = 0.3, 2000
    direct, consistent = np.empty(draws), np.empty(draws)
    for i in range(draws):
        gold, pseudo = draw_labelled_set(rng, 50, rho=rho, theta1=0.8, theta2=0.1)
        direct[i] = direct_priors(gold, pseudo).pi
        consistent[i] = consistent_priors(gold, pseudo, rho=rho).pi
    assert consistent.var() / direct.var() < 0.7
    # Both are nearly unbiased (smoothing pulls them slightly toward 0.5), so the mean squared error drops too.
    assert np.mean((consistent - 0.31) ** 2) < np.mean((direct - 0.31) ** 2)
    assert consistent.mean() == pytest.approx(0.31, abs=0.01)
