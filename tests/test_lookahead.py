import pytest
import torch
from test_loop import prompts, run
from tiny import tiny_backend

from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import LookaheadDrafter, NoDrafter
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import VerifyResult

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})


def logits_with_argmax(tokens, vocab=50):
    logits = torch.zeros(len(tokens), vocab)
    logits[torch.arange(len(tokens)), torch.tensor(tokens)] = 1.0
    return logits


def test_jacobi_update_and_diagonal_ngrams():
    drafter = LookaheadDrafter(window=3, ngram=3, guesses=2)
    history = [1, 2, 3]  # root position 2
    first = drafter.propose(history, Budget(10, FLAT))
    assert first.tokens == [3, 3, 3]  # nothing guessed yet: the window starts as copies
    # the model predicts 10 at position 3, then 11, 12, 13 after the window tokens
    drafter.observe(first, VerifyResult([], [10]), logits_with_argmax([10, 11, 12, 13]))
    assert drafter.iterates[-1] == {3: 10, 4: 11, 5: 12, 6: 13}
    second = drafter.propose(history + [10], Budget(10, FLAT))  # root position 3
    assert second.tokens[:3] == [11, 12, 13]  # the iterate, shifted past the committed token
    drafter.observe(second, VerifyResult([], [20]), logits_with_argmax([20, 21, 22, 23]))
    # diagonal from the older iterate: 11 at 4 -> the newer guessed 21 at 5 -> then 22 at 6
    assert (21, 22) in drafter.pool[11]


def test_verification_branch_uses_the_pool():
    drafter = LookaheadDrafter(window=2, ngram=3, guesses=2)
    drafter.pool[7] = [(8, 9), (5, 6)]
    draft = drafter.propose([4, 7], Budget(10, FLAT))
    assert draft.tokens == [7, 7, 5, 6, 8, 9]
    assert draft.parents == [-1, 0, -1, 2, -1, 4]


def test_cpu_budget_verifies_only_what_pays():
    drafter = LookaheadDrafter(window=4, ngram=3, guesses=2)
    drafter.pool[7] = [(8, 9), (5, 6)]
    for _ in range(50):  # window guesses never accepted, n-gram guesses always
        drafter.window_estimate.update(0, 4)
        drafter.guess_estimate.update(2, 2)
    cpu = LatencyCurve(prior={1: 1.0, 2: 1.1, 4: 1.3, 8: 1.7, 16: 2.4})
    draft = drafter.propose([4, 7], Budget(16, cpu))
    # one window token (Jacobi must go on) and the two n-gram chains
    assert draft.tokens == [7, 5, 6, 8, 9] and draft.parents == [-1, -1, 1, -1, 3]
    assert drafter._window_nodes == [0]
    # guesses that never pay are cut, and their estimate drifts back so they get retried
    for _ in range(50):
        drafter.guess_estimate.update(0, 2)
    low = drafter.guess_estimate.first.value
    assert drafter.propose([4, 7], Budget(16, cpu)).tokens == [7]
    assert drafter.guess_estimate.first.value > low
    whole = LookaheadDrafter(window=4, ngram=3, guesses=2, adaptive=False)
    whole.pool[7] = [(8, 9), (5, 6)]
    assert len(whole.propose([4, 7], Budget(16, cpu))) == 8


def test_bad_options():
    with pytest.raises(DecodekitError):
        LookaheadDrafter(ngram=1)


def test_sampling_reproduces_plain_sampling():
    backend = tiny_backend("gemma3")
    sampling = SamplingConfig(temperature=0.9, top_p=0.95)
    for prompt in prompts(3, seed=52):
        plain = run(backend, prompt, NoDrafter(), 30, sampling, seed=8)[0]
        assert run(backend, prompt, LookaheadDrafter(), 30, sampling, seed=8)[0] == plain
