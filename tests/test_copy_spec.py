import random

import pytest

from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import CopySpecDrafter
from decodekit.drafters.copy_spec import GramIndex, longest_span
from decodekit.errors import DecodekitError

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})


def test_gram_index_matches_a_scan():
    rng = random.Random(0)
    tokens = [rng.randrange(5) for _ in range(400)]
    index = GramIndex(3)
    index.extend(tokens[:150])
    index.extend(tokens[150:])
    for start in range(0, 390, 7):
        gram = tokens[start : start + 3]
        scan = [i + 3 for i in range(len(tokens) - 2) if tokens[i : i + 3] == gram]
        assert index.occurrences(gram) == scan


@pytest.mark.parametrize(
    "tokens, ends, expected",
    [
        ([7, 1, 2, 9, 1, 2, 5, 9, 1, 2], [3, 6], (6, 3)),  # "9 1 2" beats "7 1 2"
        ([5, 1, 2, 6, 1, 2, 8, 1, 2], [3, 6], (6, 2)),  # equal spans: the most recent
        ([1, 2, 3], [3], None),  # only the current end itself
    ],
)
def test_longest_span(tokens, ends, expected):
    assert longest_span(tokens, ends, limit=50) == expected


def test_copies_what_followed_the_longest_repeat():
    drafter = CopySpecDrafter(gamma=2, adaptive=False)
    history = [4, 1, 2, 3, 9, 1, 2, 8, 7, 6, 9, 1, 2]
    drafter.reset(history[:5])
    assert drafter.propose(history, Budget(3, FLAT)).tokens == [8, 7, 6]
    prompt_only = CopySpecDrafter(gamma=2, adaptive=False, source="prompt")
    prompt_only.reset(history[:5])
    assert prompt_only.propose(history, Budget(3, FLAT)).tokens == [3, 9, 1]


@pytest.mark.parametrize("kwargs", [{"gamma": 0}, {"max_draft": 0}, {"source": "web"}])
def test_bad_options(kwargs):
    with pytest.raises(DecodekitError):
        CopySpecDrafter(**kwargs)

