"""Risks for training a binary safety classifier from two unlabeled sets (pure functions of tensors).

Notation (see ``docs/method.md``; Lu et al., ICLR 2019 and AISTATS 2020):

- ``g(x)`` is the classifier's logit, ``unsafe_logit``: positive means unsafe (label +1).
- ``U1`` is the pseudo-unsafe set (annotator said +1), ``U2`` the pseudo-safe set (annotator said -1).
- ``pi = P(y=+1)``, ``theta1 = P(y=+1 | x in U1)``, ``theta2 = P(y=+1 | x in U2)``.
- Sigmoid loss: ``l+(g) = sigmoid(-g)`` (cost of calling an unsafe text safe), ``l-(g) = sigmoid(g)``; the paper's
  surrogate and the default. ``surrogate="logistic"`` uses ``l+(g) = log(1 + exp(-g))`` instead: the sigmoid loss is
  bounded, so its gradient vanishes once a logit is far on the wrong side, and a fine-tuned encoder can sink every
  logit there (a constant classifier); the logistic loss keeps the gradient of a wrong side at ~1. With the logistic
  loss, the UU risk is no longer a class-weighted pn risk, and the robust correction has more to do (a partial risk
  can go far below 0).

With ``D = theta1 - theta2`` the class-conditional risks are rewritten over U1 and U2::

    pi * E+[l+]       = a * E_U1[l+] - c * E_U2[l+],   a = (1 - theta2) * pi / D,  c = (1 - theta1) * pi / D
    (1 - pi) * E-[l-] = d * E_U2[l-] - b * E_U1[l-],   d = theta1 * (1 - pi) / D,  b = theta2 * (1 - pi) / D

Both partial risks are non-negative in expectation; on a minibatch a flexible model can drive them negative. The
robust risk passes each through ``f(x) = x if x > 0 else gamma * x`` (gamma = -0.001 by default).

An anti-correlated annotator (``theta1 < theta2``) gives D < 0; the rewritten risk is still unbiased, so these
functions accept it. Only ``theta1 == theta2`` (no information) is refused.
"""

from __future__ import annotations

import torch

from refine.constants import MIN_PRIOR_GAP_FOR_LOSS

SURROGATES = ("sigmoid", "logistic")


def sigmoid_loss(logits: torch.Tensor, sign: float) -> torch.Tensor:
    """Elementwise sigmoid loss ``sigmoid(-sign * g)``; ``sign`` is +1 (unsafe target) or -1 (safe target)."""
    return torch.sigmoid(-sign * logits)


def surrogate_loss(logits: torch.Tensor, sign: float, surrogate: str = "sigmoid") -> torch.Tensor:
    """Elementwise loss of ``logits`` for the target ``sign`` (+1 unsafe, -1 safe): ``sigmoid(-sign * g)`` or, for
    ``logistic``, ``log(1 + exp(-sign * g))``."""
    if surrogate == "sigmoid":
        return sigmoid_loss(logits, sign)
    if surrogate == "logistic":
        return torch.nn.functional.softplus(-sign * logits)
    raise ValueError(f"unknown surrogate loss {surrogate!r}; choose {' or '.join(SURROGATES)}.")


def _mean_or_zero(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values``; an empty set contributes 0.

    The zero is the sum over no elements, so it stays on the graph of ``values`` and, unlike ``0 * other.sum()``,
    cannot turn into NaN when the other set holds an infinite logit (fp16 overflow).
    """
    if values.numel() == 0:
        return values.sum()
    return values.mean()


def uu_coefficients(*, pi: float, theta1: float, theta2: float) -> tuple[float, float, float, float]:
    """Coefficients ``(a, b, c, d)`` of the UU risk (see the module docstring).

    Raises:
        ValueError: If a prior lies outside [0, 1] or ``|theta1 - theta2|`` is too small to divide by.
    """
    for name, value in (("pi", pi), ("theta1", theta1), ("theta2", theta2)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must lie in [0, 1]; priors are probabilities.")
    gap = theta1 - theta2
    if abs(gap) < MIN_PRIOR_GAP_FOR_LOSS:
        raise ValueError(
            f"theta1={theta1:.4f} and theta2={theta2:.4f} are equal: the two sets hold the same share of unsafe text, "
            "so UU learning has nothing to learn from. Use an annotator whose labels carry signal."
        )
    a = (1.0 - theta2) * pi / gap
    b = theta2 * (1.0 - pi) / gap
    c = (1.0 - theta1) * pi / gap
    d = theta1 * (1.0 - pi) / gap
    return a, b, c, d


def uu_partial_risks(
    logits1: torch.Tensor, logits2: torch.Tensor, *, pi: float, theta1: float, theta2: float,
    surrogate: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two partial risks of the unbiased UU risk.

    Args:
        logits1: ``unsafe_logit`` of the U1 (pseudo-unsafe) members of the batch, shape ``(n1,)``. May be empty.
        logits2: ``unsafe_logit`` of the U2 (pseudo-safe) members of the batch, shape ``(n2,)``. May be empty.
        pi: P(unsafe) in the corpus.
        theta1: P(unsafe | x in U1).
        theta2: P(unsafe | x in U2).
        surrogate: ``sigmoid`` (the default) or ``logistic`` (see the module docstring).

    Returns:
        ``(positive_risk, negative_risk)``: estimates of ``pi * E+[l+]`` and ``(1 - pi) * E-[l-]``, scalar tensors.
    """
    a, b, c, d = uu_coefficients(pi=pi, theta1=theta1, theta2=theta2)
    def mean_loss(logits: torch.Tensor, sign: float) -> torch.Tensor:
        return _mean_or_zero(surrogate_loss(logits, sign, surrogate))

    positive_risk = a * mean_loss(logits1, +1) - c * mean_loss(logits2, +1)
    negative_risk = d * mean_loss(logits2, -1) - b * mean_loss(logits1, -1)
    return positive_risk, negative_risk


def uu_risk(logits1: torch.Tensor, logits2: torch.Tensor, *, pi: float, theta1: float, theta2: float,
            surrogate: str = "sigmoid") -> torch.Tensor:
    """Unbiased UU risk ``R_UU`` (Lu et al., 2019, Theorem 4), without correction. Arguments as in
    :func:`uu_partial_risks`."""
    positive_risk, negative_risk = uu_partial_risks(logits1, logits2, pi=pi, theta1=theta1, theta2=theta2,
                                                    surrogate=surrogate)
    return positive_risk + negative_risk


def leaky_correction(risk: torch.Tensor, gamma: float) -> torch.Tensor:
    """Generalised leaky ReLU ``f(x) = x if x > 0 else gamma * x`` (Lu et al., 2020, Eq. 9 with a slope)."""
    return torch.where(risk > 0, risk, gamma * risk)


def robust_uu_risk(
    logits1: torch.Tensor,
    logits2: torch.Tensor,
    *,
    pi: float,
    theta1: float,
    theta2: float,
    gamma: float = -0.001,
    surrogate: str = "sigmoid",
) -> torch.Tensor:
    """Robust UU risk ``R_rUU = f(positive_risk) + f(negative_risk)`` (Asano et al., 2025, Eq. 4).

    Args:
        logits1: ``unsafe_logit`` of the U1 (pseudo-unsafe) members of the batch, shape ``(n1,)``. May be empty.
        logits2: ``unsafe_logit`` of the U2 (pseudo-safe) members of the batch, shape ``(n2,)``. May be empty.
        pi: P(unsafe) in the corpus.
        theta1: P(unsafe | x in U1).
        theta2: P(unsafe | x in U2).
        gamma: Slope applied to a negative partial risk: 0 clips it, below 0 turns it into a penalty that pushes it
            back up.
        surrogate: ``sigmoid`` (the default) or ``logistic``.

    Returns:
        A scalar tensor, differentiable in both inputs. A mean over an empty set counts as 0.
    """
    positive_risk, negative_risk = uu_partial_risks(logits1, logits2, pi=pi, theta1=theta1, theta2=theta2,
                                                    surrogate=surrogate)
    return leaky_correction(positive_risk, gamma) + leaky_correction(negative_risk, gamma)


def pn_risk(logits: torch.Tensor, labels: torch.Tensor, surrogate: str = "sigmoid") -> torch.Tensor:
    """Supervised (positive-negative) risk ``mean l(y * g)`` with ``y = +1`` for unsafe, ``-1`` for safe.

    Args:
        logits: ``unsafe_logit``, shape ``(n,)``.
        labels: 1 (unsafe) or 0 (safe), shape ``(n,)``; any dtype.
        surrogate: ``sigmoid`` (``l = sigmoid(-y g)``, the default) or ``logistic`` (binary cross-entropy).

    Returns:
        A scalar tensor; 0 when ``n == 0``.
    """
    signs = labels.to(logits.dtype) * 2.0 - 1.0
    return _mean_or_zero(surrogate_loss(logits * signs, +1, surrogate))
