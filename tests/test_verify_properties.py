"""Property-based tests of the verifiers and of the decode loop around them: random draft trees,
random target logits and random uniforms, checked against invariants that hold for every input
(the statistical tests in test_verify.py check the distributions)."""

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from tiny import ARCHITECTURES, VOCAB, tiny_backend

from decodekit.budget import Budget
from decodekit.drafters import NoDrafter
from decodekit.loop import decode
from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft
from decodekit.verify import SeededRandomness, verify_greedy, verify_sampled

# Verification takes about a millisecond, so more examples than the default are cheap.
VERIFY_SETTINGS = settings(max_examples=150, deadline=None)


def parents_of(draft: Draft) -> list[int]:
    """Written here rather than taken from Draft, so a wrong parent_list cannot hide a bug."""
    return list(range(-1, len(draft) - 1)) if draft.parents is None else list(draft.parents)


@st.composite
def drafts(draw, vocab: int, max_nodes: int = 8) -> Draft:
    """Chains and parents-first trees of 0..max_nodes nodes; a small vocab makes sibling
    duplicates and argmax matches common."""
    size = draw(st.integers(0, max_nodes))
    tokens = draw(st.lists(st.integers(0, vocab - 1), min_size=size, max_size=size))
    if draw(st.booleans()):
        return Draft(tokens=tokens)
    return Draft(tokens=tokens, parents=[draw(st.integers(-1, node - 1)) for node in range(size)])


@st.composite
def target_logits(draw, draft: Draft, vocab: int) -> torch.Tensor:
    """[1 + len(draft), vocab] finite logits. Some draft tokens get a large boost in their
    parent's row, so that walks several nodes deep are common rather than rare."""
    value = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32) | st.sampled_from([0.0, 1.0])
    rows = draw(st.lists(st.lists(value, min_size=vocab, max_size=vocab), min_size=len(draft) + 1, max_size=len(draft) + 1))
    logits = torch.tensor(rows, dtype=torch.float32)
    for node, parent in enumerate(parents_of(draft)):
        if draw(st.booleans()):
            logits[parent + 1, draft.tokens[node]] += 30.0
    return logits


@st.composite
def draft_probs(draw, draft: Draft, vocab: int) -> torch.Tensor:
    """[len(draft), vocab]: a normalised q per node, positive at the node's own token (a drafter
    cannot sample a token it gives no mass) and possibly zero elsewhere."""
    rows = []
    for token in draft.tokens:
        weights = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=vocab, max_size=vocab))
        weights[token] = max(weights[token], draw(st.floats(1e-3, 1)))
        rows.append(weights)
    q = torch.tensor(rows, dtype=torch.float32).reshape(len(draft), vocab)
    q = q / q.sum(-1, keepdim=True)
    assert all(q[node, token] > 0 for node, token in enumerate(draft.tokens))
    return q


SAMPLINGS = st.builds(
    SamplingConfig,
    temperature=st.floats(0.05, 4.0),
    top_k=st.integers(0, 6),
    top_p=st.floats(0.05, 1.0),
    min_p=st.just(0.0) | st.floats(0.0, 0.9),
    typical_p=st.just(1.0) | st.floats(0.05, 1.0),
)


class DrawnUniforms:
    """Randomness whose draws hypothesis chooses, so it can push them to 0 and just below 1.
    Memoised, because the protocol promises the same draw for the same (position, stream)."""

    def __init__(self, data):
        self.data = data
        self.drawn: dict[tuple[int, int], float] = {}

    def uniform(self, position: int, stream: int = 0) -> float:
        key = (position, stream)
        if key not in self.drawn:
            self.drawn[key] = self.data.draw(st.floats(0.0, 1.0, exclude_max=True), label=f"uniform{key}")
        return self.drawn[key]


def reference_greedy(draft: Draft, logits: torch.Tensor) -> tuple[list[int], list[int]]:
    """Greedy verification written out plainly: from the root, follow the first child in draft
    order whose token is the argmax (first maximum) of the current row."""
    rows = logits.tolist()
    parents = parents_of(draft)
    node, path = -1, []
    while True:
        row = rows[node + 1]
        best = row.index(max(row))
        match = next((c for c in range(len(draft)) if parents[c] == node and draft.tokens[c] == best), None)
        if match is None:
            return path, [draft.tokens[i] for i in path] + [best]
        path.append(match)
        node = match


def assert_root_path(draft: Draft, accepted: list[int]) -> None:
    parents = parents_of(draft)
    previous = -1
    for node in accepted:
        assert 0 <= node < len(draft)
        assert parents[node] == previous, f"accepted {accepted} is not a path from the root"
        previous = node


def assert_commits_path_plus_one(draft: Draft, result) -> None:
    assert_root_path(draft, result.accepted)
    assert result.tokens[:-1] == [draft.tokens[i] for i in result.accepted]
    assert len(result.tokens) == len(result.accepted) + 1


@VERIFY_SETTINGS
@given(data=st.data())
def test_greedy_matches_reference_walk(data):
    vocab = data.draw(st.integers(2, 6), label="vocab")
    draft = data.draw(drafts(vocab), label="draft")
    logits = data.draw(target_logits(draft, vocab), label="logits")
    result = verify_greedy(draft, logits)
    assert (result.accepted, result.tokens) == reference_greedy(draft, logits)
    assert_commits_path_plus_one(draft, result)


@pytest.mark.parametrize("sampled_draft", [False, True], ids=["point-mass", "draft-probs"])
@VERIFY_SETTINGS
@given(data=st.data())
def test_sampled_commits_a_path_and_one_possible_token(sampled_draft, data):
    vocab = data.draw(st.integers(2, 6), label="vocab")
    draft = data.draw(drafts(vocab), label="draft")
    logits = data.draw(target_logits(draft, vocab), label="logits")
    sampling = data.draw(SAMPLINGS, label="sampling")
    if sampled_draft:
        draft.draft_probs = data.draw(draft_probs(draft, vocab), label="draft_probs")
    position = data.draw(st.integers(0, 10**6), label="position")
    result = verify_sampled(draft, logits, sampling, DrawnUniforms(data), position)
    assert_commits_path_plus_one(draft, result)
    # Every committed token, drafted or the model's own, must be possible under the target's
    # filtered distribution at its place: a token that top-k/top-p/min-p rules out never appears.
    for row, token in zip([0] + [node + 1 for node in result.accepted], result.tokens):
        assert probabilities(logits[row], sampling)[token] > 0, f"token {token} impossible after row {row}"


@pytest.mark.parametrize("sampled_draft", [False, True], ids=["point-mass", "draft-probs"])
@VERIFY_SETTINGS
@given(data=st.data())
def test_sampled_at_zero_temperature_is_greedy(sampled_draft, data):
    """Greedy is the zero-temperature limit of sampling: whatever the uniforms and q, the
    sampler must then commit exactly what the greedy verifier commits."""
    vocab = data.draw(st.integers(2, 6), label="vocab")
    draft = data.draw(drafts(vocab), label="draft")
    logits = data.draw(target_logits(draft, vocab), label="logits")
    if sampled_draft:
        draft.draft_probs = data.draw(draft_probs(draft, vocab), label="draft_probs")
    result = verify_sampled(draft, logits, SamplingConfig(), DrawnUniforms(data), position=0)
    expected = verify_greedy(draft, logits)
    assert (result.accepted, result.tokens) == (expected.accepted, expected.tokens)


# ---- The decode loop: the cache holds exactly the committed tokens, whatever is drafted ----


@functools.cache
def backend_for(arch: str):
    return tiny_backend(arch)


class Recording:
    """Delegates to a backend, recording len(cache) as each forward starts and the logits row
    that predicts the step's first new token. Only `forward` and len(cache) are relied on, so the
    backend's other API can change underneath."""

    def __init__(self, inner):
        self.inner = inner
        self.lengths: list[int] = []
        self.first_rows: list[torch.Tensor] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, pending, draft, cache):
        self.lengths.append(len(cache))
        logits = self.inner.forward(pending, draft, cache)
        self.first_rows.append(logits[0].clone())
        return logits


@functools.cache
def plain_greedy(arch: str, prompt: tuple[int, ...], max_new_tokens: int) -> tuple[list[int], torch.Tensor]:
    """Tokens of one-token-at-a-time greedy decoding, and the logits that chose each of them."""
    backend = Recording(backend_for(arch))
    steps = decode(backend, list(prompt), NoDrafter(), SamplingConfig(), SeededRandomness(0), max_new_tokens)
    return [token for step in steps for token in step.tokens], torch.stack(backend.first_rows)


class DrawnDrafter:
    """Proposes hypothesis-chosen chains and trees within the budget, each node either the true
    greedy token at its depth (so whole paths get accepted) or an arbitrary token."""

    name = "drawn"

    def __init__(self, data, prompt_len: int, truth: list[int]):
        self.data, self.prompt_len, self.truth = data, prompt_len, truth

    def reset(self, prompt_ids, sampling=None, rng=None):
        pass

    def propose(self, history, budget: Budget) -> Draft:
        draw = self.data.draw
        size = draw(st.integers(0, min(budget.max_tokens, 6)), label="draft size")
        chain = draw(st.booleans(), label="chain")
        parents = list(range(-1, size - 1)) if chain else [draw(st.integers(-1, node - 1)) for node in range(size)]
        done = len(history) - self.prompt_len
        tokens, depths = [], []
        for parent in parents:
            depths.append(1 if parent == -1 else depths[parent] + 1)
            true_index = done + depths[-1] - 1
            if true_index < len(self.truth) and draw(st.integers(0, 3), label="true token?") != 0:
                tokens.append(self.truth[true_index])
            else:
                tokens.append(draw(st.integers(0, VOCAB - 1), label="token"))
        return Draft(tokens=tokens, parents=None if chain else parents)

    def observe(self, draft, result, target_logits):
        pass


@pytest.mark.parametrize("arch", ARCHITECTURES)
# The fixture only pins the thread count, so sharing it across examples is fine.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cache_holds_committed_tokens_before_every_forward(arch, data):
    prompt = data.draw(st.lists(st.integers(0, VOCAB - 3), min_size=1, max_size=20), label="prompt")
    max_new = data.draw(st.integers(1, 16), label="max_new_tokens")
    truth, truth_logits = plain_greedy(arch, tuple(prompt), max_new)
    backend = Recording(backend_for(arch))
    steps = list(decode(backend, prompt, DrawnDrafter(data, len(prompt), truth), SamplingConfig(), SeededRandomness(0), max_new))
    assert [token for step in steps for token in step.tokens] == truth
    # Before each forward the cache holds every committed token but the newest, which is fed
    # (pending) with the draft; before the first, nothing (the whole prompt is pending).
    assert len(backend.lengths) == len(steps)
    committed = len(prompt)
    assert backend.lengths[0] == 0
    for step, length in zip(steps, backend.lengths[1:]):
        committed += len(step.tokens)
        assert length == committed - 1
    # Right length is not enough: a cache that kept a rejected sibling instead of the accepted
    # node has the length but the wrong keys, which a tiny model's argmax often shrugs off. The
    # logits that open each step must equal plain decoding's at that position.
    produced = 0
    for step, row in zip(steps, backend.first_rows):
        torch.testing.assert_close(row, truth_logits[produced], atol=1e-4, rtol=1e-4)
        produced += len(step.tokens)
    target(float(sum(step.num_accepted for step in steps)), label="accepted draft tokens")
