"""Named numerical guards and thresholds, each with the reason for its value."""

# Smallest |theta1 - theta2| the UU coefficients may divide by. Below this the coefficients exceed ~1e6 and the risk
# is numerically meaningless; the loop refuses much earlier (PriorsConfig.min_prior_gap), this only guards the math.
MIN_PRIOR_GAP_FOR_LOSS = 1e-6

# Add-one (Laplace) smoothing for rates counted on the few gold labels: an empty or pure cell gives (k+1)/(n+2),
# never exactly 0 or 1, so the UU coefficients stay finite.
LAPLACE_PSEUDOCOUNT = 1.0

# Bootstrap resamples for the 90% intervals of the priors: 1,000 resamples of 50 labels take ~5 ms and put the
# Monte-Carlo error of a 5% quantile below 0.01.
BOOTSTRAP_RESAMPLES = 1000
