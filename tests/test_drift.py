"""Measuring how far a verification moves AR's gaps: on a tiny fp32 model only rounding moves
them, and a backend whose batched rows are wrong shows up as a large drift."""

import torch
from tiny import tiny_backend

from decodekit.bench.drift import gap_drift, measure_drift


def test_a_common_shift_of_the_logits_is_no_drift():
    row = torch.tensor([5.0, 4.0, 1.0, 0.5, -2.0])
    assert gap_drift(row, row + 3.0) == 0.0
    assert gap_drift(row, row * 1.1) > 0.1  # a change of scale moves the gaps


def test_fp32_verification_drifts_by_rounding_only_on_chains_and_trees():
    backend = tiny_backend("llama")
    prompts = [backend.encode("abc abc abc"), backend.encode("hello there, hello")]
    measure = measure_drift(backend, prompts, length=8)
    assert measure.rows == 2 * 2 * 7  # prompts x (chain, tree) x compared rows
    assert measure.gap_drift < 1e-3 and measure.swapped == 0


class Shifted:
    """A backend whose multi-token forwards come out wrong (noise on every logit), as a mask bug would."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, pending, draft, cache):
        logits = self.inner.forward(pending, draft, cache)
        if draft.tokens:
            logits = logits + 0.5 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
        return logits


def test_a_backend_whose_verifications_are_off_measures_a_large_drift():
    backend = Shifted(tiny_backend("llama"))
    assert measure_drift(backend, [backend.encode("abc abc abc")], length=8).gap_drift > 0.1
