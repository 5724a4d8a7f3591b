import math

import pytest
import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig, probabilities


def test_greedy_is_one_hot_on_argmax():
    probs = probabilities(torch.tensor([[0.1, 2.0, 1.0], [3.0, 0.0, 0.0]]), SamplingConfig())
    assert probs.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_temperature_scales_logits():
    logits = torch.tensor([1.0, 2.0, 3.0])
    probs = probabilities(logits, SamplingConfig(temperature=2.0))
    assert torch.allclose(probs, torch.softmax(logits / 2, -1))


@pytest.mark.parametrize(
    "config, logits, kept",
    [
        (SamplingConfig(temperature=1, top_k=2), [1.0, 4.0, 3.0, 2.0], [1, 2]),
        (SamplingConfig(temperature=1, top_k=10), [1.0, 4.0], [0, 1]),
        # probs ~ [0.64, 0.24, 0.09, 0.03]: 0.64 < 0.7 so the second token is needed too
        (SamplingConfig(temperature=1, top_p=0.7), [4.0, 3.0, 2.0, 1.0], [0, 1]),
        (SamplingConfig(temperature=1, top_p=0.5), [4.0, 3.0, 2.0, 1.0], [0]),
        # min_p 0.2: keep tokens with prob >= 0.2 * 0.64
        (SamplingConfig(temperature=1, min_p=0.2), [4.0, 3.0, 2.0, 1.0], [0, 1]),
        (SamplingConfig(temperature=1, typical_p=0.01), [4.0, 3.0, 2.0, 1.0], [1]),
    ],
)
def test_filters_keep_expected_tokens(config, logits, kept):
    probs = probabilities(torch.tensor(logits), config)
    assert torch.nonzero(probs).flatten().tolist() == kept
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -3}, "top_k"),
        ({"min_p": 1.0}, "min_p"),
        ({"typical_p": 0.0}, "typical_p"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(DecodekitError, match=message):
        SamplingConfig(**kwargs)
