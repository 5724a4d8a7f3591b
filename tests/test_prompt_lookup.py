import numpy as np
import pytest

from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import PromptLookupDrafter, make_drafter
from decodekit.drafters.prompt_lookup import find_continuation
from decodekit.errors import DecodekitError
from decodekit.types import VerifyResult


@pytest.mark.parametrize(
    "tokens, min_n, max_n, max_len, expected",
    [
        ([1, 2, 3, 4, 9, 2, 3], 1, 3, 2, ([4, 9], 2)),
        ([1, 2, 3, 4, 9, 2, 3], 1, 1, 5, ([4, 9, 2, 3], 1)),  # only the last token: 3 at index 2
        ([1, 2, 3, 1, 2, 5, 1, 2], 2, 2, 3, ([3, 1, 2], 2)),  # earliest of two matches
        ([7, 8, 9, 5, 8, 9, 6, 7, 8, 9], 1, 3, 2, ([5, 8], 3)),  # longest n wins over a later match
        ([1, 2, 3], 1, 3, 4, ([], 0)),
        ([4], 1, 3, 4, ([], 0)),
        ([5, 5, 5, 5], 2, 2, 10, ([5, 5], 2)),
    ],
)
def test_find_continuation(tokens, min_n, max_n, max_len, expected):
    assert find_continuation(np.array(tokens), min_n, max_n, max_len) == expected


def test_drafter_respects_the_budget_and_adapts():
    drafter = PromptLookupDrafter(max_draft=8, adaptive=False)
    history = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    assert drafter.propose(history, Budget(3, LatencyCurve())).tokens == [3, 4, 5]
    assert drafter.propose(history, Budget(0, LatencyCurve())).tokens == []

    adaptive = PromptLookupDrafter(max_draft=8)
    full = Budget(8, LatencyCurve())
    draft = adaptive.propose(history, full)
    assert len(draft)  # the prior is optimistic enough to try
    for _ in range(30):  # every draft rejected at its first token
        draft = adaptive.propose(history, full)
        if len(draft):
            adaptive.observe(draft, VerifyResult([], [0]), None)
    assert adaptive.estimates[2].first.value < 0.3


@pytest.mark.parametrize("kwargs", [{"min_ngram": 0}, {"min_ngram": 3, "max_ngram": 2}, {"max_draft": 0}])
def test_bad_options(kwargs):
    with pytest.raises(DecodekitError):
        PromptLookupDrafter(**kwargs)


def test_unknown_method_lists_known_ones():
    with pytest.raises(DecodekitError, match="prompt-lookup"):
        make_drafter("medusa")
    with pytest.raises(DecodekitError, match="bad option"):
        make_drafter("prompt-lookup", window=3)
