"""Verifiers: crafted greedy tables, statistical checks against the target distribution,
and exact acceptance rates with injected uniforms."""

from collections import Counter

import pytest
import torch

from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft
from decodekit.verify import SeededRandomness, inverse_cdf, verify_greedy, verify_sampled


def one_hot_logits(argmaxes: list[int], vocab: int = 10) -> torch.Tensor:
    logits = torch.zeros(len(argmaxes), vocab)
    logits[torch.arange(len(argmaxes)), torch.tensor(argmaxes)] = 5.0
    return logits


@pytest.mark.parametrize(
    "draft, argmaxes, accepted, tokens",
    [
        ([], [4], [], [4]),
        ([7, 8, 9], [7, 8, 9, 2], [0, 1, 2], [7, 8, 9, 2]),
        ([7, 8, 9], [7, 8, 4, 2], [0, 1], [7, 8, 4]),
        ([7, 8, 9], [1, 8, 9, 2], [], [1]),
    ],
)
def test_greedy_chain(draft, argmaxes, accepted, tokens):
    result = verify_greedy(Draft(tokens=draft), one_hot_logits(argmaxes))
    assert (result.accepted, result.tokens) == (accepted, tokens)


@pytest.mark.parametrize(
    "tokens, parents, argmaxes, accepted, committed",
    [
        # root ─┬─ 5 ─┬─ 6          argmax after root = 5, after node0 = 7 -> path 0, 2
        #       │     └─ 7 ── 8     after node2 = 8 -> path 0, 2, 3; after node3 = 1
        #       └─ 9
        ([5, 6, 7, 8, 9], [-1, 0, 0, 2, -1], [5, 7, 0, 8, 1, 0], [0, 2, 3], [5, 7, 8, 1]),
        # the second root child matches
        ([5, 6, 7, 8, 9], [-1, 0, 0, 2, -1], [9, 0, 0, 0, 0, 3], [4], [9, 3]),
        # nothing matches
        ([5, 6], [-1, -1], [2, 0, 0], [], [2]),
    ],
)
def test_greedy_tree(tokens, parents, argmaxes, accepted, committed):
    result = verify_greedy(Draft(tokens=tokens, parents=parents), one_hot_logits(argmaxes))
    assert (result.accepted, result.tokens) == (accepted, committed)


def test_greedy_sampling_config_matches_greedy_verifier():
    """Zero temperature through the sampler gives the same tokens as the greedy verifier."""
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    draft = Draft(tokens=logits.argmax(-1)[:2].tolist() + [3])
    sampled = verify_sampled(draft, logits, SamplingConfig(), SeededRandomness(0), position=0)
    assert sampled.tokens == verify_greedy(draft, logits).tokens


def total_variation(counts: Counter, probs: torch.Tensor, n: int) -> float:
    empirical = torch.zeros_like(probs)
    for token, c in counts.items():
        empirical[token] = c / n
    return 0.5 * float((empirical - probs).abs().sum())


TARGET_LOGITS = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.0], [0.0, 1.0, 3.0, 0.2, 0.1], [2.0, 0.0, 0.0, 1.0, 0.5]])
SETTINGS = [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=3),
            SamplingConfig(temperature=1.3, top_p=0.9)]


def draws(draft, logits, sampling, n, seed=123):
    """n independent verifications: each at its own position, so each gets fresh draws."""
    rng = SeededRandomness(seed)
    return [verify_sampled(draft, logits, sampling, rng, position=i) for i in range(n)]


@pytest.mark.parametrize("sampling", SETTINGS)
@pytest.mark.parametrize("draft_tokens", [[1], [3], [2, 2]])
def test_point_mass_chain_reproduces_target(sampling, draft_tokens):
    """First emitted token of a deterministic draft is distributed as the target's first row,
    whatever the draft proposes (likely, unlikely, or filtered-out tokens)."""
    logits = TARGET_LOGITS[: len(draft_tokens) + 1]
    n = 20000
    counts = Counter(r.tokens[0] for r in draws(Draft(tokens=draft_tokens), logits, sampling, n))
    assert total_variation(counts, probabilities(logits[0], sampling), n) < 0.02


def test_point_mass_second_token_conditional_distribution():
    """Given the first draft token was accepted, the next token follows the target's next row."""
    sampling = SamplingConfig(temperature=1.0)
    second = Counter(r.tokens[1] for r in draws(Draft(tokens=[1, 2]), TARGET_LOGITS, sampling, 30000) if r.tokens[0] == 1)
    n_first = sum(second.values())
    assert total_variation(second, probabilities(TARGET_LOGITS[1], sampling), n_first) < 0.02


def test_point_mass_tree_reproduces_target():
    """Several children of one node: the emitted token still follows the target."""
    sampling = SamplingConfig(temperature=1.0)
    draft = Draft(tokens=[1, 0, 2], parents=[-1, -1, -1])
    n = 20000
    counts = Counter(r.tokens[0] for r in draws(draft, TARGET_LOGITS[[0, 1, 1, 1]], sampling, n))
    assert total_variation(counts, probabilities(TARGET_LOGITS[0], sampling), n) < 0.02


def test_sampled_draft_chain_reproduces_target():
    """Drafts drawn from q (a draft model) keep the target distribution too."""
    sampling = SamplingConfig(temperature=1.0)
    q = torch.tensor([0.4, 0.1, 0.1, 0.3, 0.1])
    rng = SeededRandomness(9)
    g = torch.Generator().manual_seed(9)
    counts = Counter()
    n = 20000
    for i in range(n):
        token = int(torch.multinomial(q, 1, generator=g))
        counts[verify_sampled(Draft(tokens=[token], draft_probs=q[None]), TARGET_LOGITS[:2], sampling, rng, i).tokens[0]] += 1
    assert total_variation(counts, probabilities(TARGET_LOGITS[0], sampling), n) < 0.02


def test_seeded_sampling_is_reproducible():
    draft = Draft(tokens=[1, 2])
    run = lambda seed: [r.tokens for r in draws(draft, TARGET_LOGITS, SETTINGS[0], 50, seed)]
    assert run(5) == run(5)
    assert run(5) != run(6)


def test_point_mass_verification_emits_what_plain_sampling_draws():
    """With the same seed, a deterministic draft changes nothing: the tokens are the ones
    plain sampling (an empty draft) draws at the same positions."""
    sampling = SETTINGS[1]
    rng = SeededRandomness(77)
    for position in range(200):
        plain = verify_sampled(Draft(), TARGET_LOGITS[:1], sampling, rng, position).tokens[0]
        drafted = verify_sampled(Draft(tokens=[1, 2]), TARGET_LOGITS, sampling, rng, position).tokens[0]
        assert drafted == plain


class FixedUniforms:
    """Injected randomness: every draw returns the same u."""

    def __init__(self, u: float):
        self.u = u

    def uniform(self, position: int, stream: int = 0) -> float:
        return self.u


@pytest.mark.parametrize("u", [0.05, 0.3, 0.55, 0.8, 0.99])
def test_acceptance_is_min_one_ratio_exactly(u):
    """With draft probabilities q, token x is accepted iff u < min(1, p(x) / q(x)), and the
    token after a rejection comes from norm(max(p - q, 0))."""
    target = torch.tensor([[0.0, 1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    p = probabilities(target[0], SamplingConfig(temperature=1.0))
    q = torch.tensor([0.1, 0.6, 0.2, 0.1])
    residual = (p - q).clamp_min(0)
    for token in range(4):
        result = verify_sampled(Draft(tokens=[token], draft_probs=q[None]), target, SamplingConfig(temperature=1.0), FixedUniforms(u), 0)
        assert (result.num_accepted == 1) == (u < min(1.0, float(p[token] / q[token])))
        if result.num_accepted == 0:
            assert result.tokens[0] == inverse_cdf(residual, u)
            assert residual[result.tokens[0]] > 0


def test_point_mass_acceptance_is_target_probability():
    """Over a fine grid of injected uniforms, a point-mass draft x is accepted on a fraction
    p(x) of them, and rejected drafts never re-emit x."""
    target = torch.tensor([[0.0, 1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    p = probabilities(target[0], SamplingConfig(temperature=1.0))
    grid = [(i + 0.5) / 10000 for i in range(10000)]
    for token in range(4):
        results = [verify_sampled(Draft(tokens=[token]), target, SamplingConfig(temperature=1.0), FixedUniforms(u), 0) for u in grid]
        accepted = sum(r.num_accepted for r in results) / len(grid)
        assert abs(accepted - float(p[token])) <= 1e-4
        assert all(r.tokens[0] != token for r in results if r.num_accepted == 0)
