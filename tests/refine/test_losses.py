"""Specs for ``refine.losses``: hand-computed risks, the robust correction, and unbiasedness on a known mixture.

Logits are chosen so the sigmoid is exact on paper: sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4, sigmoid(0) = 1/2.
"""

from __future__ import annotations

import math

import pytest
import torch

from refine.losses import (
    leaky_correction,
    pn_risk,
    robust_uu_risk,
    sigmoid_loss,
    uu_coefficients,
    uu_partial_risks,
    uu_risk,
)

LN3 = math.log(3.0)


def t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


class TestSigmoidLoss:
    def test_positive_and_negative_targets(self):
        # l+(g) = sigmoid(-g): sigmoid(-ln 3) = 1/4 and sigmoid(ln 3) = 3/4; l-(g) = sigmoid(g) is the mirror image.
        torch.testing.assert_close(sigmoid_loss(t(LN3, -LN3, 0.0), +1), t(0.25, 0.75, 0.5))
        torch.testing.assert_close(sigmoid_loss(t(LN3, -LN3, 0.0), -1), t(0.75, 0.25, 0.5))


class TestUUCoefficients:
    def test_symmetric_priors(self):
        # pi = 0.5, theta1 = 0.8, theta2 = 0.2, D = 0.6:
        # a = 0.8 * 0.5 / 0.6 = 2/3, b = 0.2 * 0.5 / 0.6 = 1/6, c = 0.2 * 0.5 / 0.6 = 1/6, d = 0.8 * 0.5 / 0.6 = 2/3.
        a, b, c, d = uu_coefficients(pi=0.5, theta1=0.8, theta2=0.2)
        assert (a, b, c, d) == pytest.approx((2 / 3, 1 / 6, 1 / 6, 2 / 3), abs=1e-12)

    def test_skewed_priors(self):
        # pi = 0.3, theta1 = 0.9, theta2 = 0.1, D = 0.8:
        # a = 0.9 * 0.3 / 0.8 = 0.3375, b = 0.1 * 0.7 / 0.8 = 0.0875,
        # c = 0.1 * 0.3 / 0.8 = 0.0375, d = 0.9 * 0.7 / 0.8 = 0.7875.
        a, b, c, d = uu_coefficients(pi=0.3, theta1=0.9, theta2=0.1)
        assert (a, b, c, d) == pytest.approx((0.3375, 0.0875, 0.0375, 0.7875), abs=1e-12)

    @pytest.mark.parametrize(
        ("pi", "theta1", "theta2"), [(0.3, 0.9, 0.1), (0.05, 0.2, 0.01), (0.7, 0.95, 0.6), (0.4, 0.1, 0.8)]
    )
    def test_coefficients_sum_to_the_class_priors(self, pi, theta1, theta2):
        # a - c = pi (theta1 - theta2) / D = pi and d - b = (1 - pi) (theta1 - theta2) / D = 1 - pi, so a classifier
        # whose losses are the same on U1 and U2 gets exactly the supervised risk.
        a, b, c, d = uu_coefficients(pi=pi, theta1=theta1, theta2=theta2)
        assert a - c == pytest.approx(pi, abs=1e-12)
        assert d - b == pytest.approx(1 - pi, abs=1e-12)

    def test_equal_thetas_are_refused_with_the_values(self):
        with pytest.raises(ValueError, match=r"theta1=0\.3000 and theta2=0\.3000 are equal.*nothing to learn"):
            uu_coefficients(pi=0.3, theta1=0.3, theta2=0.3)

    @pytest.mark.parametrize(
        ("priors", "message"),
        [
            ({"pi": 1.5, "theta1": 0.8, "theta2": 0.2}, r"pi=1\.5 must lie in \[0, 1\]"),
            ({"pi": 0.5, "theta1": -0.1, "theta2": 0.2}, r"theta1=-0\.1 must lie in \[0, 1\]"),
            ({"pi": 0.5, "theta1": 0.8, "theta2": 1.01}, r"theta2=1\.01 must lie in \[0, 1\]"),
            ({"pi": float("nan"), "theta1": 0.8, "theta2": 0.2}, r"pi=nan must lie in \[0, 1\]"),
        ],
    )
    def test_priors_outside_the_unit_interval_are_refused(self, priors, message):
        with pytest.raises(ValueError, match=message):
            uu_coefficients(**priors)

    def test_anti_correlated_annotator_is_accepted(self):
        # theta1 = 0.2 < theta2 = 0.8 gives D = -0.6 and negative coefficients:
        # a = 0.2 * 0.5 / -0.6 = -1/6, b = 0.8 * 0.5 / -0.6 = -2/3,
        # c = 0.8 * 0.5 / -0.6 = -2/3, d = 0.2 * 0.5 / -0.6 = -1/6, and still a - c = -1/6 + 2/3 = 1/2 = pi.
        a, b, c, d = uu_coefficients(pi=0.5, theta1=0.2, theta2=0.8)
        assert (a, b, c, d) == pytest.approx((-1 / 6, -2 / 3, -2 / 3, -1 / 6), abs=1e-12)


class TestUUPartialRisks:
    def test_hand_computed_partial_risks_and_total(self):
        # pi = 0.3, theta1 = 0.9, theta2 = 0.1: (a, b, c, d) = (0.3375, 0.0875, 0.0375, 0.7875).
        # U1 logits [ln 3, ln 3]: E_U1[l+] = 1/4, E_U1[l-] = 3/4.
        # U2 logits [-ln 3, 0]:   E_U2[l+] = (3/4 + 1/2) / 2 = 5/8, E_U2[l-] = (1/4 + 1/2) / 2 = 3/8.
        # positive = 0.3375 * 1/4 - 0.0375 * 5/8 = 0.084375 - 0.0234375 = 0.0609375
        # negative = 0.7875 * 3/8 - 0.0875 * 3/4 = 0.2953125 - 0.065625 = 0.2296875
        positive, negative = uu_partial_risks(t(LN3, LN3), t(-LN3, 0.0), pi=0.3, theta1=0.9, theta2=0.1)
        assert positive.item() == pytest.approx(0.0609375, abs=1e-12)
        assert negative.item() == pytest.approx(0.2296875, abs=1e-12)
        # R_UU = 0.0609375 + 0.2296875 = 0.290625
        assert uu_risk(t(LN3, LN3), t(-LN3, 0.0), pi=0.3, theta1=0.9, theta2=0.1).item() == pytest.approx(
            0.290625, abs=1e-12
        )

    def test_a_constant_classifier_gets_half(self):
        # g = 0 everywhere: every loss is 1/2, so R_UU = (a - c + d - b) / 2 = (pi + 1 - pi) / 2 = 1/2.
        risk = uu_risk(torch.zeros(7), torch.zeros(3), pi=0.2, theta1=0.7, theta2=0.05)
        assert risk.item() == pytest.approx(0.5, abs=1e-6)

    def test_empty_u1_contributes_zero_and_stays_differentiable(self):
        # pi = 0.5, theta1 = 0.8, theta2 = 0.2: c = 1/6, d = 2/3. U2 = [0]: E_U2[l+] = E_U2[l-] = 1/2.
        # positive = a * 0 - 1/6 * 1/2 = -1/12; negative = 2/3 * 1/2 - b * 0 = 1/3.
        logits1, logits2 = t(grad=True), t(0.0, grad=True)
        positive, negative = uu_partial_risks(logits1, logits2, pi=0.5, theta1=0.8, theta2=0.2)
        assert positive.item() == pytest.approx(-1 / 12, abs=1e-12)
        assert negative.item() == pytest.approx(1 / 3, abs=1e-12)
        (positive + negative).backward()
        assert logits1.grad is not None and logits1.grad.shape == (0,)
        # d/dg [-1/6 sigmoid(-g) + 2/3 sigmoid(g)] at g = 0 = (1/6 + 2/3) * 1/4 = 5/24.
        assert logits2.grad.item() == pytest.approx(5 / 24, abs=1e-12)

    def test_empty_u2_contributes_zero(self):
        # pi = 0.5, theta1 = 0.8, theta2 = 0.2: a = 2/3, b = 1/6. U1 = [0]:
        # positive = 2/3 * 1/2 = 1/3; negative = -1/6 * 1/2 = -1/12.
        logits1 = t(0.0, grad=True)
        positive, negative = uu_partial_risks(logits1, t(grad=True), pi=0.5, theta1=0.8, theta2=0.2)
        assert (positive.item(), negative.item()) == pytest.approx((1 / 3, -1 / 12), abs=1e-12)
        (positive + negative).backward()
        assert logits1.grad.item() != 0.0

    def test_both_sets_empty_gives_zero_with_a_graph(self):
        logits1, logits2 = t(grad=True), t(grad=True)
        risk = robust_uu_risk(logits1, logits2, pi=0.5, theta1=0.8, theta2=0.2)
        assert risk.item() == 0.0
        risk.backward()  # must not raise: an all-padding batch still goes through the optimizer step

    def test_an_infinite_logit_beside_an_empty_set_gives_a_finite_risk(self):
        # sigmoid(-inf) = 0 and sigmoid(inf) = 1 are finite losses; the empty U1 must add 0, not 0 * inf = NaN
        # (an fp16 model can overflow to inf). negative = d * 1 = 2/3 * 1 = 2/3; positive = -c * 0 = 0.
        risk = uu_risk(t(), t(math.inf), pi=0.5, theta1=0.8, theta2=0.2)
        assert risk.item() == pytest.approx(2 / 3, abs=1e-12)

    def test_gradient_reaches_both_sets(self):
        logits1, logits2 = t(0.3, -1.0, 2.0, grad=True), t(-0.5, 1.5, grad=True)
        uu_risk(logits1, logits2, pi=0.3, theta1=0.9, theta2=0.1).backward()
        assert torch.all(logits1.grad != 0) and torch.all(logits2.grad != 0)
        # U1 is mostly unsafe, so raising a U1 logit lowers the risk; U2 is mostly safe, so raising one of its logits
        # raises it.
        assert torch.all(logits1.grad < 0) and torch.all(logits2.grad > 0)

    def test_equal_thetas_are_refused(self):
        with pytest.raises(ValueError, match="are equal"):
            uu_risk(t(0.0), t(0.0), pi=0.5, theta1=0.4, theta2=0.4)


class TestRobustUURisk:
    # pi = 0.5, theta1 = 0.6, theta2 = 0.4, D = 0.2: a = d = 0.6 * 0.5 / 0.2 = 1.5, b = c = 0.4 * 0.5 / 0.2 = 1.
    # U1 = [ln 3]:       E_U1[l+] = 1/4, E_U1[l-] = 3/4.
    # U2 = [0, 0, ln 3]: E_U2[l+] = (1/2 + 1/2 + 1/4) / 3 = 5/12, E_U2[l-] = (1/2 + 1/2 + 3/4) / 3 = 7/12.
    # positive = 1.5 * 1/4 - 1 * 5/12 = 9/24 - 10/24 = -1/24  (overfitted: below its true value pi E+[l+] >= 0)
    # negative = 1.5 * 7/12 - 1 * 3/4 = 21/24 - 18/24 = 1/8
    PRIORS = {"pi": 0.5, "theta1": 0.6, "theta2": 0.4}

    def logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        return t(LN3, grad=True), t(0.0, 0.0, LN3, grad=True)

    def test_the_example_has_one_negative_partial_risk(self):
        positive, negative = uu_partial_risks(*self.logits(), **self.PRIORS)
        assert (positive.item(), negative.item()) == pytest.approx((-1 / 24, 1 / 8), abs=1e-12)
        assert uu_risk(*self.logits(), **self.PRIORS).item() == pytest.approx(1 / 12, abs=1e-12)  # -1/24 + 3/24

    @pytest.mark.parametrize(
        ("gamma", "expected"),
        [
            (0.0, 1 / 8),  # clipped: 0 + 1/8
            (-0.001, 1 / 8 + 0.001 / 24),  # flipped: -0.001 * -1/24 + 1/8 = 0.12504167
            (-0.5, 1 / 8 + 0.5 / 24),  # a steeper penalty: 1/48 + 1/8
            (1.0, 1 / 12),  # gamma = 1 is the uncorrected R_UU
        ],
    )
    def test_negative_partial_risk_is_clipped_or_flipped(self, gamma, expected):
        risk = robust_uu_risk(*self.logits(), **self.PRIORS, gamma=gamma)
        assert risk.item() == pytest.approx(expected, abs=1e-12)

    def test_default_gamma_is_minus_one_thousandth(self):
        risk = robust_uu_risk(*self.logits(), **self.PRIORS)
        assert risk.item() == pytest.approx(1 / 8 + 0.001 / 24, abs=1e-12)

    @pytest.mark.parametrize("gamma", [0.0, -0.001, -0.5])
    def test_gradient_scales_the_negative_term_by_gamma(self, gamma):
        # f'(x) = gamma for x < 0, so grad R_rUU = gamma * grad(positive) + grad(negative). With gamma < 0 descent
        # pushes the negative partial risk back up; with gamma = 0 it ignores it.
        logits1, logits2 = self.logits()
        robust_uu_risk(logits1, logits2, **self.PRIORS, gamma=gamma).backward()

        ref1, ref2 = self.logits()
        positive, negative = uu_partial_risks(ref1, ref2, **self.PRIORS)
        (gamma * positive + negative).backward()
        torch.testing.assert_close(logits1.grad, ref1.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(logits2.grad, ref2.grad, rtol=0, atol=1e-12)

    def test_positive_partial_risks_pass_through_unchanged(self):
        # Both partial risks positive (0.0609375 and 0.2296875, see TestUUPartialRisks): R_rUU = R_UU for any gamma.
        risk = robust_uu_risk(t(LN3, LN3), t(-LN3, 0.0), pi=0.3, theta1=0.9, theta2=0.1, gamma=-0.3)
        assert risk.item() == pytest.approx(0.290625, abs=1e-12)

    def test_leaky_correction_elementwise(self):
        # f(x) = x for x > 0, gamma * x otherwise; f(0) = 0.
        torch.testing.assert_close(leaky_correction(t(2.0, -4.0, 0.0), -0.25), t(2.0, 1.0, 0.0))


class TestPNRisk:
    def test_hand_computed(self):
        # labels [1, 0, 0] -> y = [+1, -1, -1]; losses sigmoid(-y g):
        # g = ln 3, y = +1: sigmoid(-ln 3) = 1/4;  g = -ln 3, y = -1: sigmoid(-ln 3) = 1/4;  g = 0: 1/2.
        # mean = (1/4 + 1/4 + 1/2) / 3 = 1/3
        risk = pn_risk(t(LN3, -LN3, 0.0), torch.tensor([1, 0, 0]))
        assert risk.item() == pytest.approx(1 / 3, abs=1e-12)

    def test_boolean_labels_match_integer_labels(self):
        logits = t(0.7, -1.2, 3.0, 0.1)
        torch.testing.assert_close(
            pn_risk(logits, torch.tensor([True, False, True, False])), pn_risk(logits, torch.tensor([1, 0, 1, 0]))
        )

    def test_empty_batch_is_zero(self):
        logits = t(grad=True)
        risk = pn_risk(logits, torch.tensor([], dtype=torch.long))
        assert risk.item() == 0.0
        risk.backward()


@pytest.fixture(scope="module")
def mixture():
    """Fixed classifier scores on a known mixture: 400,000 texts, rho = 0.3 of them in U1.

    U1 holds exactly theta1 = 0.7 unsafe texts and U2 exactly theta2 = 0.15, so
    pi = (84,000 + 42,000) / 400,000 = 0.315 is known exactly. Scores are g ~ N(1.5, 1) for unsafe texts and
    g ~ N(-0.5, 1.5^2) for safe ones; the asymmetric setup keeps terms such as E_U1[l-] and E_U2[l+] apart, so a
    swapped coefficient cannot hide behind a symmetry.
    """
    generator = torch.Generator().manual_seed(1234)
    n1, n2, theta1, theta2 = 120_000, 280_000, 0.7, 0.15
    k1, k2 = round(theta1 * n1), round(theta2 * n2)  # 84,000 and 42,000 unsafe texts

    def scores(n: int, mean: float, std: float) -> torch.Tensor:
        return mean + std * torch.randn(n, generator=generator, dtype=torch.float64)

    unsafe1, safe1 = scores(k1, 1.5, 1.0), scores(n1 - k1, -0.5, 1.5)
    unsafe2, safe2 = scores(k2, 1.5, 1.0), scores(n2 - k2, -0.5, 1.5)
    return {
        "logits1": torch.cat([unsafe1, safe1]),
        "logits2": torch.cat([unsafe2, safe2]),
        "unsafe": torch.cat([unsafe1, unsafe2]),
        "safe": torch.cat([safe1, safe2]),
        "pi": (k1 + k2) / (n1 + n2),
        "theta1": theta1,
        "theta2": theta2,
    }


# Tolerance for the mixture tests. With l-(g) = 1 - l+(g), R_UU = (a + b) E_U1[l+] - (c + d) E_U2[l+] + const, where
# a + b = (0.85 * 0.315 + 0.15 * 0.685) / 0.55 = 0.674 and c + d = (0.3 * 0.315 + 0.7 * 0.685) / 0.55 = 1.044.
# A loss in [0, 1] has variance <= 1/4, so the standard error of R_UU is at most
# 0.5 * sqrt(0.674^2 / 120,000 + 1.044^2 / 280,000) = 0.0014, and that of the supervised risk on the same texts at
# most 0.5 * sqrt(0.315^2 / 126,000 + 0.685^2 / 274,000) = 0.0008: the difference has SE <= 0.0022 in the worst case
# (about 0.001 with the actual variance of sigmoid(-g) here, 0.07). 0.008 is 3.6 worst-case SEs. Mis-stating theta1
# or theta2 by 0.05 moves R_UU by 0.014-0.021 on this sample, and the PN risk on pseudo-labels misses by 0.074, so the
# tolerance still tells a right risk from a wrong one (see the control tests).
MIXTURE_ATOL = 0.008


class TestUnbiasedOnAKnownMixture:
    def supervised(self, m) -> tuple[float, float]:
        """pi * E+[l+] and (1 - pi) * E-[l-], counted with the true classes of the same texts."""
        positive = m["pi"] * sigmoid_loss(m["unsafe"], +1).mean().item()
        negative = (1 - m["pi"]) * sigmoid_loss(m["safe"], -1).mean().item()
        return positive, negative

    def test_uu_risk_equals_the_supervised_risk(self, mixture):
        m = mixture
        risk = uu_risk(m["logits1"], m["logits2"], pi=m["pi"], theta1=m["theta1"], theta2=m["theta2"]).item()
        assert risk == pytest.approx(sum(self.supervised(m)), abs=MIXTURE_ATOL)

    def test_partial_risks_equal_their_class_conditional_counterparts(self, mixture):
        m = mixture
        positive, negative = uu_partial_risks(
            m["logits1"], m["logits2"], pi=m["pi"], theta1=m["theta1"], theta2=m["theta2"]
        )
        expected_positive, expected_negative = self.supervised(m)  # about 0.070 and 0.283
        assert positive.item() == pytest.approx(expected_positive, abs=MIXTURE_ATOL)
        assert negative.item() == pytest.approx(expected_negative, abs=MIXTURE_ATOL)

    def test_robust_risk_equals_uu_risk_when_both_parts_are_positive(self, mixture):
        # On a large sample neither partial risk is negative, so the correction changes nothing.
        m = mixture
        priors = {"pi": m["pi"], "theta1": m["theta1"], "theta2": m["theta2"]}
        robust = robust_uu_risk(m["logits1"], m["logits2"], **priors, gamma=-0.001)
        assert robust.item() == pytest.approx(uu_risk(m["logits1"], m["logits2"], **priors).item(), abs=1e-12)

    @pytest.mark.parametrize(("theta1", "theta2"), [(0.65, 0.15), (0.7, 0.2)])
    def test_control_wrong_priors_miss_by_more_than_the_tolerance(self, mixture, theta1, theta2):
        m = mixture
        risk = uu_risk(m["logits1"], m["logits2"], pi=m["pi"], theta1=theta1, theta2=theta2).item()
        assert abs(risk - sum(self.supervised(m))) > MIXTURE_ATOL

    def test_control_pn_on_pseudo_labels_is_biased(self, mixture):
        # Treating U1 as unsafe and U2 as safe counts 30% of U1 and 15% of U2 with the wrong label.
        m = mixture
        logits = torch.cat([m["logits1"], m["logits2"]])
        pseudo = torch.cat([torch.ones_like(m["logits1"]), torch.zeros_like(m["logits2"])])
        assert abs(pn_risk(logits, pseudo).item() - sum(self.supervised(m))) > 5 * MIXTURE_ATOL

    def test_anti_correlated_labels_give_the_same_risk(self, mixture):
        # Swapping the sets and the thetas maps (a, b, c, d) to (-c, -d, -a, -b) over swapped means: the same sum.
        m = mixture
        straight = uu_risk(m["logits1"], m["logits2"], pi=m["pi"], theta1=m["theta1"], theta2=m["theta2"])
        swapped = uu_risk(m["logits2"], m["logits1"], pi=m["pi"], theta1=m["theta2"], theta2=m["theta1"])
        assert swapped.item() == pytest.approx(straight.item(), abs=1e-12)


class TestUUIsACostSensitivePNRiskUnderTheSigmoidLoss:
    """sigmoid(g) + sigmoid(-g) = 1 turns the UU risk into (a + b) E_U1[l+] + (c + d) E_U2[l-] - b - c: plain pn on
    the pseudo-labels with class weights. So without the correction, UU ranks texts as a class-weighted pn does; what
    differs is where the decision threshold lands. (This is why the benchmarks report pn with a prior-matched
    threshold next to robust UU.)"""

    @pytest.mark.parametrize(("pi", "theta1", "theta2"), [(0.3, 0.8, 0.1), (0.68, 0.93, 0.43), (0.5, 0.2, 0.7)])
    def test_uu_risk_equals_weighted_pn_minus_a_constant(self, pi, theta1, theta2):
        generator = torch.Generator().manual_seed(0)
        logits1, logits2 = torch.randn(37, generator=generator) * 3, torch.randn(21, generator=generator) * 3
        a, b, c, d = uu_coefficients(pi=pi, theta1=theta1, theta2=theta2)
        weighted_pn = (a + b) * sigmoid_loss(logits1, +1).mean() + (c + d) * sigmoid_loss(logits2, -1).mean()
        risk = uu_risk(logits1, logits2, pi=pi, theta1=theta1, theta2=theta2)
        torch.testing.assert_close(risk, weighted_pn - b - c)

    def test_the_robust_correction_breaks_the_equivalence_once_a_partial_risk_is_negative(self):
        logits1, logits2 = torch.full((8,), 6.0), torch.full((8,), -6.0)  # the split fitted exactly
        kwargs = {"pi": 0.5, "theta1": 0.8, "theta2": 0.2}
        positive, negative = uu_partial_risks(logits1, logits2, **kwargs)
        assert positive < 0 and negative < 0
        robust = robust_uu_risk(logits1, logits2, **kwargs, gamma=-0.001)
        assert robust > 0 > uu_risk(logits1, logits2, **kwargs)


class TestLogisticSurrogate:
    """surrogate="logistic": l+(g) = log(1 + exp(-g)); the risks stay unbiased, pn becomes binary cross-entropy."""

    def test_pn_is_binary_cross_entropy(self):
        logits, labels = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 1])
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
        torch.testing.assert_close(pn_risk(logits, labels, "logistic"), expected)

    def test_partial_risks_equal_their_class_conditional_counterparts(self, mixture):
        m = mixture
        positive, negative = uu_partial_risks(m["logits1"], m["logits2"], pi=m["pi"], theta1=m["theta1"],
                                              theta2=m["theta2"], surrogate="logistic")
        softplus = torch.nn.functional.softplus
        expected_positive = m["pi"] * softplus(-m["unsafe"]).mean().item()  # about 0.08
        expected_negative = (1 - m["pi"]) * softplus(m["safe"]).mean().item()  # about 0.47
        # The logistic loss is unbounded, so its SE is larger than the sigmoid loss's: ~3x, hence the wider band.
        assert positive.item() == pytest.approx(expected_positive, abs=3 * MIXTURE_ATOL)
        assert negative.item() == pytest.approx(expected_negative, abs=3 * MIXTURE_ATOL)

    def test_it_is_no_longer_a_weighted_pn_risk(self):
        generator = torch.Generator().manual_seed(0)
        logits1, logits2 = torch.randn(37, generator=generator) * 3, torch.randn(21, generator=generator) * 3
        a, b, c, d = uu_coefficients(pi=0.3, theta1=0.8, theta2=0.1)
        weighted_pn = (a + b) * pn_risk(logits1, torch.ones(37), "logistic") + (c + d) * pn_risk(
            logits2, torch.zeros(21), "logistic")
        risk = uu_risk(logits1, logits2, pi=0.3, theta1=0.8, theta2=0.1, surrogate="logistic")
        assert abs(risk.item() - (weighted_pn.item() - b - c)) > 0.1

    def test_a_saturated_wrong_logit_keeps_its_gradient(self):
        logits = torch.tensor([-8.0], requires_grad=True)  # an unsafe text scored far on the safe side
        for surrogate, smallest in (("sigmoid", 0.0), ("logistic", 0.99)):
            logits.grad = None
            pn_risk(logits, torch.ones(1), surrogate).backward()
            gradient = -logits.grad.item()
            assert gradient > smallest and (surrogate == "logistic" or gradient < 1e-3)

    def test_an_unknown_surrogate_is_refused(self):
        with pytest.raises(ValueError, match="unknown surrogate loss 'hinge'; choose sigmoid or logistic"):
            pn_risk(torch.zeros(2), torch.ones(2), "hinge")
