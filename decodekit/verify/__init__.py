"""Verifiers: pure functions from (draft, target logits, sampling settings, randomness) to the
tokens to commit. They accept chains and trees alike; a chain is a one-branch tree."""

import torch

from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult
from decodekit.verify.greedy import verify_greedy
from decodekit.verify.random import Randomness, SeededRandomness, inverse_cdf
from decodekit.verify.speculative import verify_sampled


def verify(
    draft: Draft, target_logits: torch.Tensor, sampling: SamplingConfig, rng: Randomness, position: int
) -> VerifyResult:
    """Greedy settings take the exact-match path; anything else is speculative sampling.

    `position`: absolute index of the first token this step decides (keys the random draws).
    """
    if sampling.greedy:
        return verify_greedy(draft, target_logits)
    return verify_sampled(draft, target_logits, sampling, rng, position)


__all__ = ["Randomness", "SeededRandomness", "inverse_cdf", "verify", "verify_greedy", "verify_sampled"]
