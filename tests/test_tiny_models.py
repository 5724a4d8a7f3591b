"""The tiny random models must have sharp logits, or the exactness tests built on them prove little.

Greedy decoding on near-uniform logits is a run of near-ties: a batched verification that differs
from one-token decoding in the last bits then flips tokens, and a real bug can hide among (or be
excused as) such flips.
"""

import pytest
import torch
from tiny import ARCHITECTURES, VOCAB, tiny_model

# Sharpened tiny models give a median top-1/top-2 gap near 0.3; an unsharpened one (Gemma 3's
# tied output matrix, left at its init scale) gives about 0.035. The threshold sits between them.
MIN_MEDIAN_GAP = 0.15


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_logits_are_sharp(arch):
    generator = torch.Generator().manual_seed(0)
    contexts = torch.randint(0, VOCAB - 2, (32, 32), generator=generator)
    with torch.no_grad():
        logits = tiny_model(arch)(input_ids=contexts).logits  # every position of every context
    top2 = logits.topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1]).median().item()
    assert gap > MIN_MEDIAN_GAP, f"tiny {arch}: median top-1/top-2 logit gap {gap:.3f}: near-uniform logits"
