"""Logits -> next-token probabilities: temperature, top-k, top-p, min-p, typical-p, epsilon, eta.

The same transform is applied by plain decoding and by every verifier, so "the model's
distribution" always means the distribution after these settings. Filters are applied in a
fixed order — temperature, top-k, top-p, min-p, typical-p, epsilon, eta — each on the output of
the previous one (the order Hugging Face's generate uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from decodekit.errors import DecodekitError

# Below this, logits / temperature overflows fp32 to inf and the distribution turns into NaNs
# (around 1e-38); long before that, sampling is greedy in all but name.
MIN_TEMPERATURE = 1e-6


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick a token from the model's logits. temperature 0 means greedy."""

    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off
    typical_p: float = 1.0  # 1.0: off
    epsilon_cutoff: float = 0.0  # 0.0: off; Hewitt et al. suggest 3e-4
    eta_cutoff: float = 0.0  # 0.0: off; Hewitt et al. suggest 3e-4 to 2e-3

    def __post_init__(self):
        for name in ("temperature", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                   f"{name} must be a finite number, got {value!r}")
        _check(isinstance(self.top_k, int) and not isinstance(self.top_k, bool),
               f"top_k must be an integer (0 = off), got {self.top_k!r}")
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(self.temperature == 0 or self.temperature >= MIN_TEMPERATURE,
               f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE:g}, got {self.temperature}")
        _check(self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p < 1, f"min_p must be in [0, 1), got {self.min_p}")
        _check(0 < self.typical_p <= 1, f"typical_p must be in (0, 1], got {self.typical_p}")
        _check(0 <= self.epsilon_cutoff < 1, f"epsilon_cutoff must be in [0, 1) (0 = off), got {self.epsilon_cutoff}")
        _check(0 <= self.eta_cutoff < 1, f"eta_cutoff must be in [0, 1) (0 = off), got {self.eta_cutoff}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DecodekitError(message)


def probabilities(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Turn logits [..., vocab] into the sampling distribution [..., vocab] (fp32).

    Greedy configs give a one-hot distribution on the argmax, so verifiers can treat greedy as
    the zero-temperature limit without a special case.

    >>> probabilities(torch.tensor([1.0, 3.0, 2.0]), SamplingConfig()).tolist()
    [0.0, 1.0, 0.0]
    """
    logits = logits.float()
    if config.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / config.temperature
    if config.top_k:
        logits = _top_k(logits, config.top_k)
    if config.top_p < 1:
        logits = _top_p(logits, config.top_p)
    if config.min_p > 0:
        logits = _min_p(logits, config.min_p)
    if config.typical_p < 1:
        logits = _typical_p(logits, config.typical_p)
    if config.epsilon_cutoff > 0:
        logits = _epsilon(logits, config.epsilon_cutoff)
    if config.eta_cutoff > 0:
        logits = _eta(logits, config.eta_cutoff)
    return torch.softmax(logits, dim=-1)


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (at least one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    # A token is dropped when the tokens before it already reach top_p.
    drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)


def _min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times the top token's (Nguyen et al., 2024)."""
    probs = torch.softmax(logits, dim=-1)
    threshold = min_p * probs.amax(-1, keepdim=True)
    return logits.masked_fill(probs < threshold, -math.inf)


def _typical_p(logits: torch.Tensor, typical_p: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al., 2022): keep tokens whose surprisal is closest to
    the distribution's entropy until their mass reaches typical_p."""
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs.nan_to_num(neginf=0.0)).sum(-1, keepdim=True)
    distance = (-log_probs - entropy).abs()
    order = torch.sort(distance, dim=-1).indices
    sorted_probs = probs.gather(-1, order)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    drop_sorted = mass_before >= typical_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)



def _epsilon(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Epsilon sampling (Hewitt et al., 2022): drop tokens whose probability is below epsilon;
    the most likely token always stays (as in transformers' EpsilonLogitsWarper)."""
    return _drop_below(logits, torch.full(logits.shape[:-1] + (1,), epsilon))


def _eta(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Eta sampling (Hewitt et al., 2022): drop tokens whose probability is below
    eta = min(epsilon, sqrt(epsilon) * exp(-H(p))), H the entropy in nats: a flat
    distribution keeps more of its tail than a peaked one. The most likely token always stays."""
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs.nan_to_num(neginf=0.0)).sum(-1, keepdim=True)
    eta = torch.clamp(math.sqrt(epsilon) * torch.exp(-entropy), max=epsilon)
    return _drop_below(logits, eta)


def _drop_below(logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Mask tokens whose probability is below `threshold` [..., 1], keeping the argmax."""
    probs = torch.softmax(logits, dim=-1)
    drop = probs < threshold
    drop.scatter_(-1, probs.argmax(-1, keepdim=True), False)
    return logits.masked_fill(drop, -math.inf)
