import pytest

from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import AdedDrafter
from decodekit.errors import DecodekitError
from decodekit.types import VerifyResult

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})


def test_trigram_tree_follows_counts():
    drafter = AdedDrafter(branching=2, max_nodes=4, exploration=0.0)
    drafter.reset([1, 2, 3, 1, 2, 3, 1, 2, 4])  # after (1, 2): 3 twice, 4 once
    draft = drafter.propose([9, 1, 2], Budget(10, FLAT))
    # best-first by path score: 3 (2/3), then (2, 3) -> 1 (2/3 x 1), then 2 (x 1), then 3 (x 2/3 = 0.44)
    # before the root's second choice 4 (1/3)
    assert list(zip(draft.tokens, draft.parents)) == [(3, -1), (1, 0), (2, 1), (3, 2)]
    wider = AdedDrafter(branching=2, max_nodes=8, exploration=0.0)
    wider.reset([1, 2, 3, 1, 2, 3, 1, 2, 4])
    wide = wider.propose([9, 1, 2], Budget(10, FLAT))
    assert (4, -1) in zip(wide.tokens, wide.parents)


def test_acceptance_statistics_reorder_candidates():
    drafter = AdedDrafter(branching=2, max_nodes=2, exploration=0.0)
    drafter.reset([1, 2, 3, 1, 2, 3, 1, 2, 4])
    for _ in range(10):  # the model keeps rejecting 3 and accepting 4 after (1, 2)
        draft = drafter.propose([1, 2], Budget(2, FLAT))
        accepted = [i for i, t in enumerate(draft.tokens) if t == 4][:1]
        drafter.observe(draft, VerifyResult(accepted, [4, 0] if accepted else [4]), None)
        drafter._learn = lambda tokens: None  # keep the counts fixed: only acceptance changes
    assert drafter.propose([1, 2], Budget(2, FLAT)).tokens[0] == 4


def test_exploration_bonus_favours_untried():
    drafter = AdedDrafter(exploration=1.0)
    drafter.tried[(1, 2, 3)] = 50
    drafter.context_tries[(1, 2)] = 50
    assert drafter.score((1, 2), 4, prior=0.1) > drafter.score((1, 2), 3, prior=0.1)


def test_bad_options():
    with pytest.raises(DecodekitError):
        AdedDrafter(branching=0)

