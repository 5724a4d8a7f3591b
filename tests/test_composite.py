import pytest

from decodekit.drafters import CompositeDrafter, make_drafter
from decodekit.drafters.composite import merge_drafts, project_result
from decodekit.errors import DecodekitError
from decodekit.types import Draft, VerifyResult


def test_merge_shares_common_prefixes_and_respects_the_budget():
    chain = Draft([1, 2, 3])
    tree = Draft([1, 4, 5], parents=[-1, 0, -1])
    merged, maps = merge_drafts([chain, tree], 10)
    assert merged.tokens == [1, 2, 3, 4, 5] and merged.parents == [-1, 0, 1, 0, -1]
    assert maps == [[0, 1, 2], [0, 3, 4]]
    merged, maps = merge_drafts([chain, tree], 4)
    assert merged.tokens == [1, 2, 3] and maps == [[0, 1, 2], None]


def test_project_result_gives_each_part_its_own_path():
    chain = Draft([1, 2, 3])
    tree = Draft([1, 4, 5], parents=[-1, 0, -1])
    _, maps = merge_drafts([chain, tree], 10)
    result = VerifyResult(accepted=[0, 3], tokens=[1, 4, 9])  # merged path: 1 -> 4, then 9
    assert project_result(chain, maps[0], result) == VerifyResult([0], [1, 4])
    assert project_result(tree, maps[1], result) == VerifyResult([0, 1], [1, 4, 9])


def test_make_drafter_builds_composites():
    drafter = make_drafter("copy-spec+token-recycling")
    assert isinstance(drafter, CompositeDrafter) and drafter.name == "copy-spec+token-recycling"
    with pytest.raises(DecodekitError):
        make_drafter("copy-spec+warp")


class FixedDrafter:
    """Drafts a fixed chain and records the budget it was given."""

    def __init__(self, name, tokens):
        self.name, self.tokens, self.budgets = name, tokens, []

    def reset(self, prompt_ids, sampling=None, rng=None):
        pass

    def propose(self, history, budget):
        self.budgets.append(budget)
        return Draft(list(self.tokens[: budget.max_tokens]))

    def observe(self, draft, result, target_logits):
        pass


def test_later_parts_pay_the_marginal_cost_of_a_shared_tree():
    from decodekit.budget import Budget, LatencyCurve

    first, second = FixedDrafter("a", [1, 2, 3]), FixedDrafter("b", [4, 5])
    composite = CompositeDrafter([first, second])
    curve = LatencyCurve(prior={1: 1.0, 4: 1.3, 8: 2.0})
    composite.propose([0], Budget(6, curve))
    assert first.budgets[0].max_tokens == 6 and second.budgets[0].max_tokens == 3
    assert second.budgets[0].cost(1) == pytest.approx(1.0)
    assert second.budgets[0].cost(3) == pytest.approx(curve(6) / curve(4))
