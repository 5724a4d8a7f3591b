"""The decode loop on tiny random models, driven by scripted drafters: wrong tokens anywhere
in a draft never change the greedy output, the cache always holds exactly the committed tokens,
and sampling is seeded. That every registered drafter is exact is tests/test_exactness.py."""

import random

import pytest
from tiny import ARCHITECTURES, VOCAB, tiny_backend

from decodekit.budget import Budget
from decodekit.drafters import NoDrafter, PromptLookupDrafter
from decodekit.loop import decode
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft
from decodekit.verify import SeededRandomness

GREEDY = SamplingConfig()


def prompts(count: int, seed: int = 0) -> list[list[int]]:
    """Prompts with repeats in them, so prompt lookup finds matches."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        words = [[rng.randrange(VOCAB - 2) for _ in range(rng.randint(1, 4))] for _ in range(5)]
        result.append([t for _ in range(rng.randint(3, 12)) for t in rng.choice(words)])
    return result


def run(backend, prompt, drafter, max_new_tokens, sampling=GREEDY, seed=0):
    steps = list(decode(backend, prompt, drafter, sampling, SeededRandomness(seed), max_new_tokens))
    return [t for s in steps for t in s.tokens], steps


class Scripted:
    """Proposes a fixed continuation of the prompt, with tokens replaced where `corrupt` says."""

    name = "scripted"

    def __init__(self, prompt_len: int, continuation: list[int], corrupt=lambda i, t: t, tree=False):
        self.prompt_len, self.continuation, self.corrupt, self.tree = prompt_len, continuation, corrupt, tree

    def reset(self, prompt_ids, sampling=None, rng=None):
        pass

    def propose(self, history, budget: Budget):
        done = len(history) - self.prompt_len
        true = self.continuation[done : done + budget.max_tokens]
        tokens = [self.corrupt(done + i, t) for i, t in enumerate(true)]
        if not self.tree or not tokens:
            return Draft(tokens=tokens)
        # A tree: a garbage first branch, then the (possibly corrupted) chain as the second.
        decoy = [(tokens[0] + 1) % (VOCAB - 2), (tokens[0] + 2) % (VOCAB - 2)]
        return Draft(tokens=decoy + tokens, parents=[-1, 0, -1] + list(range(2, len(tokens) + 1))[: len(tokens) - 1])

    def observe(self, draft, result, target_logits):
        pass


@pytest.fixture(params=ARCHITECTURES)
def backend(request):
    return tiny_backend(request.param)


@pytest.mark.parametrize("tree", [False, True])
def test_one_wrong_token_at_every_position(backend, tree):
    prompt = prompts(1, seed=3)[0]
    expected, _ = run(backend, prompt, NoDrafter(), 24)
    for j in range(len(expected)):
        wrong = lambda i, t, j=j: (t + 1) % (VOCAB - 2) if i == j else t
        got, _ = run(backend, prompt, Scripted(len(prompt), expected, wrong, tree=tree), 24)
        assert got == expected, f"wrong token at {j}"


def test_garbage_drafts_still_give_greedy(backend):
    prompt = prompts(1, seed=4)[0]
    expected, _ = run(backend, prompt, NoDrafter(), 24)
    garbage = lambda i, t: (t * 7 + 3) % (VOCAB - 2)
    for tree in (False, True):
        got, _ = run(backend, prompt, Scripted(len(prompt), expected, garbage, tree=tree), 24)
        assert got == expected


def test_target_as_its_own_drafter_is_always_accepted(backend):
    prompt = prompts(1, seed=5)[0]
    expected, _ = run(backend, prompt, NoDrafter(), 30)
    got, steps = run(backend, prompt, Scripted(len(prompt), expected), 30)
    assert got == expected
    assert sum(s.num_accepted for s in steps) == sum(s.draft_len for s in steps) > 0


class CacheRecording:
    """Wraps a backend and records the cache length at the start of every forward."""

    def __init__(self, inner):
        self.inner = inner
        self.lengths = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, pending, draft, cache):
        self.lengths.append(len(cache))
        return self.inner.forward(pending, draft, cache)


@pytest.mark.parametrize("tree", [False, True])
def test_cache_length_equals_committed_after_every_step(backend, tree):
    prompt = prompts(1, seed=6)[0]
    expected, _ = run(backend, prompt, NoDrafter(), 30)
    wrapped = CacheRecording(backend)
    drafter = Scripted(len(prompt), expected, lambda i, t: (t + 1) % (VOCAB - 2) if i % 5 == 3 else t, tree=tree)
    got, steps = run(wrapped, prompt, drafter, 30)
    assert got == expected
    assert any(0 < s.num_accepted < s.draft_len for s in steps)  # partial acceptances happened
    # Before step i the cache holds every committed token but the newest (which is pending).
    committed = len(prompt)
    assert wrapped.lengths[0] == 0
    for step, length in zip(steps, wrapped.lengths[1:]):
        committed += len(step.tokens)
        assert length == committed - 1


def test_cache_keeps_accepted_tokens_after_step(backend):
    prompt = prompts(1, seed=8)[0]
    expected, _ = run(backend, prompt, NoDrafter(), 12)
    cache = backend.new_cache()
    history, pending = list(prompt), list(prompt)
    from decodekit.verify import verify

    for _ in range(4):
        draft = Draft(tokens=expected[len(history) - len(prompt) :][:3])
        logits = backend.forward(pending, draft, cache)
        result = verify(draft, logits, GREEDY, SeededRandomness(0), len(history))
        cache.keep(len(cache) - len(draft), result.accepted)
        history += result.tokens
        pending = result.tokens[-1:]
        assert len(cache) == len(history) - 1


def test_seeded_sampling_is_reproducible_and_independent_of_drafts(backend):
    prompt = prompts(1, seed=9)[0]
    sampling = SamplingConfig(temperature=1.0, top_k=20)
    plain, _ = run(backend, prompt, NoDrafter(), 30, sampling, seed=11)
    a, _ = run(backend, prompt, PromptLookupDrafter(), 30, sampling, seed=11)
    b, _ = run(backend, prompt, PromptLookupDrafter(), 30, sampling, seed=11)
    assert a == b == plain  # deterministic drafts draw exactly what plain sampling draws
    # Other seeds sample other text (a sharp model may agree on one seed: EOS after a token or two).
    others = {tuple(run(backend, prompt, PromptLookupDrafter(), 30, sampling, seed=s)[0]) for s in (12, 13, 14, 15)}
    assert others - {tuple(a)}


def test_stops_at_eos():
    backend = tiny_backend("llama")
    eos = next(iter(backend.eos_token_ids))
    prompt = next(p for p in prompts(20, seed=10) if len(run(backend, p, NoDrafter(), 10)[0]) == 10)
    expected, _ = run(backend, prompt, NoDrafter(), 10)
    # Make the model's 4th token count as EOS: generation must end right there.
    backend.eos_token_ids = {eos, expected[3]}
    try:
        got, _ = run(backend, prompt, PromptLookupDrafter(), 10)
    finally:
        backend.eos_token_ids = {eos}
    assert got == expected[: expected.index(expected[3]) + 1]


def test_context_limit_ends_generation():
    backend = tiny_backend("qwen2")
    prompt = prompts(1, seed=11)[0]
    original = backend.context_length
    backend.context_length = len(prompt) + 5
    try:
        got, _ = run(backend, prompt, PromptLookupDrafter(), 50)
    finally:
        backend.context_length = original
    assert len(got) == 5
