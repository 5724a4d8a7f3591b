import torch
from test_loop import prompts, run
from tiny import tiny_backend

from decodekit.budget import Budget, LatencyCurve, Rate
from decodekit.drafters import NoDrafter, TokenRecyclingDrafter
from decodekit.drafters.token_recycling import make_template
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})


def test_template_shape():
    template = make_template((3, 2, 1))
    # root: ranks 0,1,2; rank-0 child gets 2 children, rank-1 gets 1, rank-2 gets 1 (at least one)
    assert [(n.parent, n.rank, n.depth) for n in template[:3]] == [(-1, 0, 1), (-1, 1, 1), (-1, 2, 1)]
    assert [(n.parent, n.rank) for n in template[3:7]] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert all(template[n.parent].depth == n.depth - 1 for n in template if n.parent >= 0)


def test_adjacency_learns_top_k_and_fits_in_2mb():
    drafter = TokenRecyclingDrafter(k=8)
    drafter.propose([5, 7], Budget(16, FLAT))
    logits = torch.zeros(1, 49152)
    logits[0, torch.arange(100, 108)] = torch.arange(8, 0, -1).float()
    drafter.observe(Draft.empty(), VerifyResult([], [100]), logits)
    assert drafter.adjacency[7].tolist() == list(range(100, 108))
    assert drafter.adjacency.numel() * drafter.adjacency.element_size() < 2 * 2**20
    # the next draft from token 7 follows the learned candidates
    draft = drafter.propose([5, 7], Budget(16, FLAT))
    assert draft.tokens[:4] == [100, 101, 102, 103] and draft.parents[:4] == [-1, -1, -1, -1]


def test_tree_size_follows_the_cost_curve():
    drafter = TokenRecyclingDrafter()
    drafter.adjacency = torch.arange(8).repeat(300, 1).to(torch.int32)
    assert len(drafter.propose([1], Budget(80, FLAT))) == len(drafter.template)
    steep = LatencyCurve(prior={1: 1.0, 2: 3.0, 200: 300.0})
    assert len(drafter.propose([1], Budget(80, steep))) == 0
    assert len(drafter.propose([1], Budget(5, FLAT))) == 5


def test_nodes_are_chosen_by_learned_value_not_template_order():
    drafter = TokenRecyclingDrafter(widths=(2, 1, 1))  # template: two roots, one chain under each
    drafter.adjacency = torch.arange(8).repeat(300, 1).to(torch.int32)
    for t_index, node in enumerate(drafter.template):
        # the rank-0 branch is always accepted, the rank-1 branch never
        drafter.node_rates[t_index] = Rate(hits=20.0 if node.rank == 0 and _on_rank0_branch(drafter, t_index) else 0.01,
                                           misses=0.01 if _on_rank0_branch(drafter, t_index) else 20.0)
    cpu = LatencyCurve(prior={1: 1.0, 2: 1.1, 4: 1.3, 8: 1.7})
    draft = drafter.propose([1], Budget(80, cpu))
    # the whole likely chain (depth 3), none of the unlikely sibling branch
    assert draft.tokens == [0, 0, 0] and draft.parents == [-1, 0, 1]


def _on_rank0_branch(drafter, t_index):
    while t_index >= 0:
        node = drafter.template[t_index]
        if node.parent < 0:
            return node.rank == 0
        t_index = node.parent
    return False


def test_sampling_with_trees_reproduces_plain_sampling():
    backend = tiny_backend("qwen2")
    sampling = SamplingConfig(temperature=0.8)
    for prompt in prompts(3, seed=22):
        plain, _ = run(backend, prompt, NoDrafter(), 30, sampling, seed=4)
        drafted, _ = run(backend, prompt, TokenRecyclingDrafter(adaptive=False), 30, sampling, seed=4)
        assert drafted == plain
