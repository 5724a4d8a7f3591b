"""Verifiers: crafted greedy tables, statistical checks against the target distribution,
and exact acceptance rates with injected uniforms."""

from itertools import repeat

import numpy as np
import pytest
import torch
from stats import THRESHOLD, distribution_gap, total_variation

from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft, VerifyResult
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


# Distribution checks. Each test runs n independent verifications through verify_sampled and
# compares what they emit with the exact target distribution (stats.distribution_gap): the 0.01
# threshold and each test's n make a correct verifier pass and a verifier off by 0.02 in total
# variation fail, each with probability >= 0.999. distribution_gap asserts that n is big enough
# for the distribution at hand, so shrinking an n fails loudly instead of weakening the test;
# each n is about the smallest round number that passes that check (verifications are slow).

TARGET_LOGITS = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.0], [0.0, 1.0, 3.0, 0.2, 0.1], [2.0, 0.0, 0.0, 1.0, 0.5]])
SETTINGS = [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=3),
            SamplingConfig(temperature=1.3, top_p=0.9)]

# For drafts deeper than one token the target must say what follows each drafted token: a model
# with one token of memory over V = 4, ROOT_LOGITS after the committed text and NEXT_LOGITS[x]
# after token x. The draft model q has the same shape and is mismatched on purpose (at the root
# it over-proposes tokens 1 and 2), so that rejections and residuals carry real mass.
V = 4
ROOT_LOGITS = torch.tensor([1.0, 0.2, -0.5, 0.6])
NEXT_LOGITS = torch.tensor([[-0.5, 1.2, 0.3, 0.0], [0.8, -1.0, 0.4, 1.1], [0.0, 0.5, 1.5, -0.5], [1.3, 0.1, -0.8, 0.4]])
Q_ROOT = torch.tensor([0.15, 0.45, 0.25, 0.15])
Q_NEXT = torch.tensor([[0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25], [0.2, 0.5, 0.2, 0.1]])
TEMPERATURE_1 = SamplingConfig(temperature=1.0)
TOP_K = SamplingConfig(temperature=0.7, top_k=3)  # removes a token from every row; q still proposes it

STRIDE = 4  # positions per trial: one verification here decides at most 3 tokens


class UniformTable:
    """Pre-drawn uniforms: seeding a generator per draw would dominate the run time. Trial i
    owns positions [i * STRIDE, (i + 1) * STRIDE), so no two trials share a draw."""

    def __init__(self, seed: int, trials: int, streams: int = 8):
        self.table = np.random.default_rng(seed).random((trials * STRIDE, streams))

    def uniform(self, position: int, stream: int = 0) -> float:
        return float(self.table[position, stream])


def verify_trials(drafts, logits, sampling, seed, verifier=verify_sampled) -> list[list[int]]:
    """The committed tokens of one verification per (draft, logits) pair."""
    rng = UniformTable(seed, len(drafts))
    return [verifier(d, rows, sampling, rng, i * STRIDE).tokens for i, (d, rows) in enumerate(zip(drafts, logits))]


def tree_logits(tokens: torch.Tensor) -> torch.Tensor:
    """Target logits [..., 1 + n, V] for drafts with tokens [..., n]: the root's row, then the row
    after each node's own token (the model remembers one token, so the path above it is moot)."""
    root = ROOT_LOGITS.expand(*tokens.shape[:-1], 1, V)
    return torch.cat([root, NEXT_LOGITS[tokens]], dim=-2)


def sampled_drafts(parents, size, n, seed, q_root=Q_ROOT):
    """n drafts of `size` nodes shaped by `parents` (None: a chain) with tokens drawn from q, as a
    draft model would: children of the root from q_root, any other node from Q_NEXT[its parent's
    token], each independently (so siblings are i.i.d., as multi-draft verification assumes)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, size, dtype=torch.long)
    probs = torch.zeros(n, size, V)
    for node, parent in enumerate(list(range(-1, size - 1)) if parents is None else parents):
        probs[:, node] = q_root if parent == -1 else Q_NEXT[tokens[:, parent]]
        tokens[:, node] = torch.multinomial(probs[:, node], 1, generator=g)[:, 0]
    drafts = [Draft(tokens=t, parents=parents, draft_probs=q) for t, q in zip(tokens.tolist(), probs)]
    return drafts, tree_logits(tokens)


def first_tokens(committed: list[list[int]]) -> list[int]:
    return [tokens[0] for tokens in committed]


def first_pairs(committed: list[list[int]], sampling: SamplingConfig, seed: int) -> list[int]:
    """The first two emitted tokens (x, y) as x * V + y. A verification that emitted x alone is
    completed with y ~ p(. | x) from an independent generator, the draw the next decode step
    would make, so the pairs must follow p_root(x) p(y | x) exactly, whatever the tree."""
    g = torch.Generator().manual_seed(seed)
    after = probabilities(NEXT_LOGITS, sampling)  # [V, V]
    completion = torch.multinomial(after, len(committed), replacement=True, generator=g).T.tolist()  # [N, V]
    return [t[0] * V + (t[1] if len(t) > 1 else completion[i][t[0]]) for i, t in enumerate(committed)]


def exact_pairs(sampling: SamplingConfig) -> torch.Tensor:
    return (probabilities(ROOT_LOGITS, sampling)[:, None] * probabilities(NEXT_LOGITS, sampling)).flatten()


@pytest.mark.parametrize("sampling, n", zip(SETTINGS, [34_000, 24_000, 34_000]))
@pytest.mark.parametrize("draft_tokens", [[1], [3], [2, 2]])
def test_point_mass_chain_reproduces_target(sampling, n, draft_tokens):
    """First emitted token of a deterministic draft is distributed as the target's first row,
    whatever the draft proposes (likely, unlikely, or filtered-out tokens)."""
    logits = TARGET_LOGITS[: len(draft_tokens) + 1]
    committed = verify_trials([Draft(tokens=draft_tokens)] * n, repeat(logits), sampling, seed=123)
    assert distribution_gap(first_tokens(committed), probabilities(logits[0], sampling)) < THRESHOLD


def test_point_mass_siblings_reproduce_target():
    """Several children of the root, one of them twice and one filtered out by top-p: the emitted
    token still follows the target."""
    sampling = SETTINGS[2]
    assert probabilities(TARGET_LOGITS[0], sampling)[3] == 0
    draft = Draft(tokens=[1, 0, 1, 3], parents=[-1, -1, -1, -1])
    committed = verify_trials([draft] * 34_000, repeat(TARGET_LOGITS[[0, 1, 1, 1, 1]]), sampling, seed=5)
    assert distribution_gap(first_tokens(committed), probabilities(TARGET_LOGITS[0], sampling)) < THRESHOLD


def test_point_mass_tree_pairs_follow_target():
    """Siblings at two depths, some of them ruled out by top-k: the first two emitted tokens
    follow p_root(x) p(y | x) jointly, which also pins down the second token given the first."""
    draft = Draft(tokens=[1, 3, 0, 2, 1], parents=[-1, -1, 0, 0, 1])
    logits = tree_logits(torch.tensor(draft.tokens))
    committed = verify_trials([draft] * 50_000, repeat(logits), TOP_K, seed=6)
    assert distribution_gap(first_pairs(committed, TOP_K, seed=7), exact_pairs(TOP_K)) < THRESHOLD


def test_sampled_draft_chain_reproduces_target():
    """Drafts drawn from q (a draft model) keep the target distribution too."""
    sampling = SamplingConfig(temperature=1.0)
    q = torch.tensor([0.4, 0.1, 0.1, 0.3, 0.1])
    tokens = torch.multinomial(q, 34_000, replacement=True, generator=torch.Generator().manual_seed(9)).tolist()
    drafts = [Draft(tokens=[token], draft_probs=q[None]) for token in tokens]
    committed = verify_trials(drafts, repeat(TARGET_LOGITS[:2]), sampling, seed=9)
    assert distribution_gap(first_tokens(committed), probabilities(TARGET_LOGITS[0], sampling)) < THRESHOLD


@pytest.mark.parametrize("sampling, n", [(TEMPERATURE_1, 36_000), (TOP_K, 32_000)])
def test_sampled_siblings_reproduce_target(sampling, n):
    """Multi-draft: three children of the root drawn i.i.d. from q, tried in turn against the
    shrinking residual."""
    drafts, logits = sampled_drafts([-1, -1, -1], 3, n, seed=10)
    committed = verify_trials(drafts, logits, sampling, seed=11)
    assert distribution_gap(first_tokens(committed), probabilities(ROOT_LOGITS, sampling)) < THRESHOLD


def test_sampled_chain_pairs_follow_target():
    """Depth 2: the second draft token is drawn from q(. | first token); the first two emitted
    tokens must follow the target jointly."""
    drafts, logits = sampled_drafts(None, 2, 70_000, seed=12)
    committed = verify_trials(drafts, logits, TEMPERATURE_1, seed=13)
    assert distribution_gap(first_pairs(committed, TEMPERATURE_1, seed=14), exact_pairs(TEMPERATURE_1)) < THRESHOLD


def test_sampled_tree_pairs_follow_target():
    """Siblings at both depths (root ─┬─ a ─┬─ c, └─ d; └─ b ── e), under top-k so that q proposes
    tokens the target rules out: the first two emitted tokens still follow the target."""
    drafts, logits = sampled_drafts([-1, -1, 0, 0, 1], 5, 50_000, seed=15)
    committed = verify_trials(drafts, logits, TOP_K, seed=16)
    assert distribution_gap(first_pairs(committed, TOP_K, seed=17), exact_pairs(TOP_K)) < THRESHOLD


def flawed_verifier(flaw: str):
    """Speculative sampling over sibling drafts at the root, with one classic mistake:
    'resample-from-p': after the rejections the token is drawn from p, not the residual;
    'stale-target': every sibling is judged against p, not the residual its rejected elder
    siblings leave (the correct rule for one draft, wrong for several)."""

    def verify(draft, target_logits, sampling, rng, position):
        assert all(parent == -1 for parent in draft.parent_list())
        p = probabilities(target_logits[0], sampling).double().numpy()
        target = p
        for stream, (token, q) in enumerate(zip(draft.tokens, draft.draft_probs.double().numpy()), start=1):
            judge = p if flaw == "stale-target" else target
            if rng.uniform(position, stream) < min(1.0, judge[token] / q[token]):
                return VerifyResult([stream - 1], [token])  # the harness reads the first token only
            residual = np.maximum((p if flaw == "stale-target" else target) - q, 0)
            target = residual / residual.sum()
        final = p if flaw == "resample-from-p" else target
        cumulative = np.cumsum(final)
        token = int(np.searchsorted(cumulative, rng.uniform(position, 0) * cumulative[-1], side="right"))
        return VerifyResult([], [min(token, len(p) - 1)])

    return verify


def flawed_exact(flaw: str, p: np.ndarray, q: np.ndarray, siblings: int) -> np.ndarray:
    """What flawed_verifier emits, in closed form: overlap m = min(p, q) of mass beta is accepted
    per try, and a try is rejected with probability 1 - beta."""
    m = np.minimum(p, q)
    beta = m.sum()
    residual = (p - m) / (1 - beta)
    if flaw == "resample-from-p":  # one draft
        return m + (1 - beta) * p
    return m * (1 - (1 - beta) ** siblings) / beta + (1 - beta) ** siblings * residual


@pytest.mark.parametrize("flaw, siblings", [("resample-from-p", 1), ("stale-target", 3)])
def test_distribution_check_catches_a_small_verifier_error(flaw, siblings):
    """The harness above must fail a verifier that is wrong by only a little: a draft model close
    to the target (q = 0.8 p + 0.2 q_root) keeps each flaw's error between 0.02 and 0.03 TV."""
    p = probabilities(ROOT_LOGITS, TEMPERATURE_1)
    q_root = 0.8 * p + 0.2 * Q_ROOT
    error = total_variation(flawed_exact(flaw, p.double().numpy(), q_root.double().numpy(), siblings), p)
    assert 0.02 <= error <= 0.03
    drafts, logits = sampled_drafts([-1] * siblings, siblings, 36_000, seed=18, q_root=q_root)
    committed = verify_trials(drafts, logits, TEMPERATURE_1, seed=19, verifier=flawed_verifier(flaw))
    assert distribution_gap(first_tokens(committed), p) >= THRESHOLD
    # The same drafts through decodekit's verifier pass, so it is the flaw that is caught.
    committed = verify_trials(drafts, logits, TEMPERATURE_1, seed=19)
    assert distribution_gap(first_tokens(committed), p) < THRESHOLD


def draws(draft, logits, sampling, n, seed=123):
    """n independent verifications: each at its own position, so each gets fresh draws."""
    rng = SeededRandomness(seed)
    return [verify_sampled(draft, logits, sampling, rng, position=i) for i in range(n)]


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
        draft = Draft(tokens=[token], draft_probs=q[None])
        result = verify_sampled(draft, target, SamplingConfig(temperature=1.0), FixedUniforms(u), 0)
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
        sampling = SamplingConfig(temperature=1.0)
        results = [verify_sampled(Draft(tokens=[token]), target, sampling, FixedUniforms(u), 0) for u in grid]
        accepted = sum(r.num_accepted for r in results) / len(grid)
        assert abs(accepted - float(p[token])) <= 1e-4
        assert all(r.tokens[0] != token for r in results if r.num_accepted == 0)
