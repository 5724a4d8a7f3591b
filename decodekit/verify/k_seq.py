"""SpecTr's k-sequential selection (K-SEQ; Sun et al. 2023, "SpecTr: Fast Speculative Decoding
via Optimal Transport"): choose one of k i.i.d. draft tokens, or none, so that the emitted token
follows the target p exactly.

Setting: at one node of the draft tree, k candidates X_1..X_k were drawn i.i.d. from q; p is the
target's distribution there. Fix rho >= 1 and try the candidates in turn: X_i is accepted with
probability min(1, p(X_i) / (rho q(X_i))); the first acceptance wins; if all k are rejected,
the token is drawn from a residual p_res.

Derivation. One trial accepts and yields x with probability

    q(x) min(1, p(x) / (rho q(x))) = min(q(x), p(x) / rho) =: m(x),

so it accepts something with probability beta(rho) = sum_x m(x). The trials are independent,
so trial i is the first to accept with probability (1 - beta)^(i-1) beta, and

    P(yield x) = m(x) (1 + (1-beta) + ... + (1-beta)^(k-1)) + (1-beta)^k p_res(x)
               = m(x) c + (1-beta)^k p_res(x),          c = (1 - (1-beta)^k) / beta.

This is p(x) for every x exactly when

    p_res(x) = (p(x) - c m(x)) / (1-beta)^k  ∝  p(x) - c m(x),

which sums to (1 - c beta) / (1-beta)^k = 1 on its own. It is a distribution (non-negative)
when c m(x) <= p(x) for all x; as m(x) <= p(x) / rho, c <= rho is enough (and needed as soon as
some token has 0 < p(x) <= rho q(x), where m(x) = p(x) / rho).

Choice of rho. The acceptance rate 1 - (1-beta)^k grows with beta, and beta(rho) falls as rho
grows, so rho should be the smallest feasible value. For beta > 0, c <= rho is the same as

    g(rho) = rho beta(rho) - (1 - (1-beta(rho))^k) >= 0,

and g is non-decreasing: rho beta(rho) = sum_x min(rho q(x), p(x)) does not fall as rho grows,
and (1-beta)^k does not fall either. Since c = sum_{i<k} (1-beta)^i <= k, rho = k is always
feasible, so the smallest feasible rho lies in [1, k] and bisection finds it. For k = 1, c = 1
and rho = 1: Leviathan et al.'s speculative sampling, with acceptance min(1, p / q) and
residual p - min(p, q) ∝ max(p - q, 0). When q and p share no token, beta = 0: no candidate can
be accepted and the token comes from p itself.

The arithmetic is done on the host in float64 numpy, with p and q renormalised: one copy of two
rows per node, cheap next to the dozens of small tensor operations (each a kernel launch on a
GPU) the same math takes in torch; and a draft row stored in half precision (summing to 1 only
within rounding) does not tilt the result.
"""

from __future__ import annotations

import numpy as np
import torch

from decodekit.verify.random import Randomness

# c <= rho + TOLERANCE counts as feasible: float64 rounding of sums that are exactly 1 in exact
# arithmetic (q == p) must not push rho above 1. (The residual's clamp absorbs the difference.)
TOLERANCE = 1e-12
ITERATIONS = 40


def beta(p, q, rho: float) -> float:
    """Probability that one trial accepts: sum_x min(q(x), p(x) / rho). p, q: [vocab] array-likes.

    >>> beta([0.5, 0.5, 0.0], [0.25, 0.25, 0.5], 1.0)
    0.5
    """
    return _beta(_normalised(p), _normalised(q), rho)


def feasible(beta_value: float, rho: float, k: int) -> bool:
    """(1 - (1-beta)^k) / beta <= rho, written without the division (beta = 0 is feasible)."""
    return 1 - (1 - beta_value) ** k <= beta_value * (rho + TOLERANCE)


def choose_rho(p, q, k: int, iterations: int = ITERATIONS) -> float:
    """The smallest rho in [1, k] with (1 - (1-beta(rho))^k) / beta(rho) <= rho.

    beta(rho) is piecewise smooth, with a kink where a token x crosses from min = q(x) to
    min = p(x) / rho, at rho = p(x) / q(x). Tokens with p(x) / q(x) <= 1 sit on p's side for
    every rho in [1, k], those with p(x) / q(x) >= k on q's side; g (module docstring) is
    evaluated at each kink in between, at once, to find the segment that holds the answer. On it
    beta(rho) = P / rho + Q for two fixed sums P and Q, and `iterations` scalar bisection steps
    finish the job, returning the feasible end: one sort and a few passes over the vocabulary
    rather than a pass per bisection step.

    >>> p, q = [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]
    >>> rho = choose_rho(p, q, 2)  # beta = 0.5 / rho, so g = (1 - 0.5 / rho)^2 - 0.5 = 0
    >>> round(rho, 9), round(1 + 0.5 ** 0.5, 9)
    (1.707106781, 1.707106781)
    >>> choose_rho(p, q, 1), choose_rho(p, p, 3)
    (1.0, 1.0)
    """
    return _choose_rho(_normalised(p), _normalised(q), k, iterations)


def acceptance(p_x: float, q_x: float, rho: float) -> float:
    """min(1, p(x) / (rho q(x))) for a candidate x; a candidate q gives no mass (which a drafter
    cannot draw, but a rounded row may show) is accepted iff the target allows it.

    >>> acceptance(0.3, 0.6, 1.0), acceptance(0.3, 0.1, 2.0), acceptance(0.3, 0.0, 2.0)
    (0.5, 1.0, 1.0)
    """
    if q_x <= 0:
        return 1.0 if p_x > 0 else 0.0
    return min(1.0, p_x / (rho * q_x))


def residual(p, q, rho: float, k: int) -> np.ndarray:
    """p_res ∝ max(p - c min(q, p / rho), 0), c = (1 - (1-beta)^k) / beta, normalised (float64).

    Where beta = 0 (q and p share no token) it is p. Where the clamped difference sums to 0 —
    only through rounding, when beta is 1 and the residual is never needed — it is p as well.

    >>> residual([0.5, 0.5, 0.0], [0.25, 0.25, 0.5], 1.0, 1).tolist()  # k = 1: norm(max(p - q, 0))
    [0.5, 0.5, 0.0]
    """
    return _residual(_normalised(p), _normalised(q), rho, k)


def select(
    candidates: list[int], q: torch.Tensor, p: torch.Tensor, rng: Randomness, position: int
) -> tuple[int | None, torch.Tensor]:
    """K-SEQ at one node: `candidates` are the k drawn tokens in draw order (repeats included),
    all drawn from q; p is the target there (tensors on any device). Candidate i (from 0) is
    judged with the uniform rng.uniform(position, i + 1), the stream of the verifier's attempt
    i + 1; stream 0 stays free for the token drawn after a rejection.

    Returns (index of the accepted candidate, p) or (None, the distribution to draw the token
    from: the residual, on the host in float64, or p itself when there were no candidates).
    """
    k = len(candidates)
    if k == 0:
        return None, p
    p_host, q_host = _normalised(_host(p)), _normalised(_host(q))
    rho = _choose_rho(p_host, q_host, k, ITERATIONS)
    overlap = np.minimum(q_host, p_host / rho)
    beta_value = float(overlap.sum())
    if beta_value > 0:  # 0: disjoint supports, nothing can be accepted
        for attempt, token in enumerate(candidates):
            if rng.uniform(position, attempt + 1) < acceptance(float(p_host[token]), float(q_host[token]), rho):
                return attempt, p
    return None, torch.from_numpy(_residual_of(p_host, overlap, beta_value, k))


# The same on float64 arrays already normalised.


def _beta(p: np.ndarray, q: np.ndarray, rho: float) -> float:
    return float(np.minimum(q, p / rho).sum())


def _choose_rho(p: np.ndarray, q: np.ndarray, k: int, iterations: int) -> float:
    if k <= 1 or feasible(float(np.minimum(p, q).sum()), 1.0, k):
        return 1.0
    ratio = np.divide(p, q, out=np.full(len(p), np.inf), where=q > 0)
    order = ratio.argsort()
    ratio = ratio[order]
    # With the tokens up to j (in ratio order) on p's side, beta(rho) = p_side[j] / rho + q_side[j].
    # Ties need no care: at rho = p(x) / q(x) both sides of min() are equal for that x.
    p_side = p[order].cumsum()
    q_side = 1.0 - q[order].cumsum()
    first, last = ratio.searchsorted([1.0, float(k)]).tolist()  # the kinks in [1, k)
    kinks = ratio[first:last]
    beta_at = p_side[first:last] / kinks + q_side[first:last]
    ok = 1 - (1 - beta_at) ** k <= beta_at * (kinks + TOLERANCE)
    # The first feasible kink (or k) ends the segment; the kink before it (or 1) starts it.
    end = first + int(ok.argmax()) if ok.any() else last
    if end > 0:
        lo, p_mass, q_mass = max(float(ratio[end - 1]), 1.0), float(p_side[end - 1]), max(float(q_side[end - 1]), 0.0)
    else:
        lo, p_mass, q_mass = 1.0, 0.0, 1.0
    hi = float(ratio[end]) if end < last else float(k)
    for _ in range(iterations):  # feasible(beta(mid), mid, k), inlined
        mid = 0.5 * (lo + hi)
        b = p_mass / mid + q_mass
        if 1 - (1 - b) ** k <= b * (mid + TOLERANCE):
            hi = mid
        else:
            lo = mid
    return hi


def _residual(p: np.ndarray, q: np.ndarray, rho: float, k: int) -> np.ndarray:
    overlap = np.minimum(q, p / rho)
    return _residual_of(p, overlap, float(overlap.sum()), k)


def _residual_of(p: np.ndarray, overlap: np.ndarray, beta_value: float, k: int) -> np.ndarray:
    if beta_value <= 0:
        return p
    scale = (1 - (1 - beta_value) ** k) / beta_value
    left = np.maximum(p - scale * overlap, 0.0)
    total = float(left.sum())
    return left / total if total > 0 else p


def _host(probs: torch.Tensor) -> np.ndarray:
    return probs.detach().cpu().double().numpy()  # copies the fp32 row, converts on the host


def _normalised(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    return probs / probs.sum()
