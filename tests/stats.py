"""Is a sampler's output distributed as it should be? A total-variation (TV) check whose sample
size is proven adequate by the test itself.

The check: `distribution_gap(samples, exact)` is the TV between the samples' empirical
distribution and `exact`; a test asserts it is below THRESHOLD (0.01). Before returning, the
gap asserts that N samples are enough: it draws many N-sample empirical distributions from
`exact` itself (numpy multinomial, seeded) and requires the 99.9th percentile of their TV to
`exact` to be at most THRESHOLD. Then

  * a correct sampler fails with probability <= 0.001 (its gap is exactly that noise), and
  * a sampler whose true distribution p' is 0.02 or more away from `exact` passes with
    probability <= 0.001 (about): by the triangle inequality its gap is at least
    TV(p', exact) - TV(empirical, p') >= 0.02 - noise, and the noise exceeds 0.01 only with
    probability 0.001 (the percentile is measured for `exact`; p' is within 0.02..0.03 of it
    in the cases that matter, so its noise percentile is essentially the same).

So lowering N below what the distribution needs makes the test fail loudly instead of making it
weaker. Everything is seeded: a given test either always passes or always fails.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.01
QUANTILE = 0.999
NOISE_TRIALS = 10_000  # the 99.9th percentile then rests on the 10 largest draws, not 2


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).sum())


def noise_quantile(exact: np.ndarray, n: int, seed: int = 0, trials: int = NOISE_TRIALS) -> float:
    """The QUANTILE-th percentile of TV(empirical of n draws from `exact`, `exact`), by Monte Carlo."""
    exact = _normalised(exact)
    counts = np.random.default_rng(seed).multinomial(n, exact, size=trials)  # [trials, categories]
    noise = 0.5 * np.abs(counts / n - exact).sum(-1)
    return float(np.quantile(noise, QUANTILE))


def distribution_gap(samples, exact) -> float:
    """TV between the empirical distribution of `samples` (category indices) and `exact`,
    after asserting that len(samples) is enough to tell a 0.02 error from noise (see above)."""
    exact = _normalised(exact)
    samples = np.asarray(samples, dtype=np.int64)
    n = len(samples)
    noise = noise_quantile(exact, n)
    assert noise <= THRESHOLD, (
        f"{n} samples are too few for this distribution: the {QUANTILE:.1%} noise percentile is "
        f"{noise:.4f} > {THRESHOLD}, so a correct sampler could fail and a 0.02 error could pass"
    )
    assert samples.min() >= 0 and samples.max() < len(exact), "sample outside the distribution's support"
    empirical = np.bincount(samples, minlength=len(exact)) / n
    return total_variation(empirical, exact)


def _normalised(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    assert probs.ndim == 1 and (probs >= 0).all() and abs(probs.sum() - 1) < 1e-5, probs
    return probs / probs.sum()  # fp32 tables sum to 1 only within rounding; multinomial wants exact
