"""Will the target accept this draft token? Predicted from what the draft model knows.

SpecDec++ (Huang et al., 2024) stops drafting once the predicted probability that some drafted
token is rejected passes a threshold. The paper predicts per-token acceptance with a small
head trained on the draft model's hidden states (acceptance_head.py). The training-free
predictor here uses the draft model's own probability of the token it drafted, mapped to an
acceptance rate learned online (drafts are confident where the text is predictable, and a
small model's confidence is miscalibrated in its own way: the mapping learns it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decodekit.budget import Rate

BINS = 10


def _bin_prior(index: int) -> Rate:
    # Prior: the confidence is calibrated (bin centre), worth two observations.
    centre = (index + 0.5) / BINS
    return Rate(hits=2 * centre, misses=2 * (1 - centre), decay=0.99)


@dataclass
class ConfidenceCalibration:
    """P(accepted | draft probability of the token), per probability bin, learned online."""

    rates: list[Rate] = field(default_factory=lambda: [_bin_prior(i) for i in range(BINS)])

    def predict(self, confidence: float) -> float:
        return self.rates[_bin(confidence)].value

    def observe(self, confidences: list[float], num_accepted: int) -> None:
        """After a chain verification: tokens before `num_accepted` were accepted, the one at
        it was rejected, later ones were never judged."""
        for i, confidence in enumerate(confidences[: num_accepted + 1]):
            accepted = i < num_accepted
            self.rates[_bin(confidence)].update(int(accepted), int(not accepted))


    def explore(self, confidence: float, pseudo_hits: float = 0.05) -> None:
        """A draft was cut to nothing, so nothing is learned about this bin: lean it toward
        acceptance a little each time, so a pessimistic estimate gets tested eventually
        instead of switching drafting off for good."""
        self.rates[_bin(confidence)].hits += pseudo_hits


def _bin(confidence: float) -> int:
    return min(BINS - 1, max(0, int(confidence * BINS)))
