"""PEARL (decodekit/drafters/pearl.py): the draft model drafts in a background thread while the
target verifies. Tokens prepared there are used when the text went where they assumed and thrown
away when it did not; sampled drafts carry the distribution they were drawn from; a seed gives
the same text however far the background thread got; resets and copies never leave or duplicate
a running thread. That greedy decoding equals plain decoding is tests/test_exactness.py."""

from __future__ import annotations

import copy
import random
import threading
import time

import pytest
import torch
from test_loop import run
from tiny import VOCAB, byte_tokenizer, tiny_backend
from tiny_pairs import tiny_draft_backend

from decodekit.api import Decoder
from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import METHODS, NoDrafter, PearlDrafter
from decodekit.drafters.self_spec import layer_skip_view
from decodekit.errors import DecodekitError
from decodekit.models.hf import HFBackend
from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft, VerifyResult
from decodekit.verify import SeededRandomness

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})
HISTORY = list(b"Hello, world")  # the tiny llama draft's greedy continuation holds no EOS for a while
SAMPLED = SamplingConfig(temperature=0.7, top_k=5)
GREEDY = SamplingConfig()
NO_LOGITS = torch.zeros(1, VOCAB)  # PEARL does not read the target's logits


class Recorder:
    """Wraps a backend's forward: notes whether each ran in the test's thread ("main") or in the
    background ("worker") and with how many torch threads; can slow or hold background forwards."""

    def __init__(self, backend, delay: float = 0.0):
        self.calls: list[str] = []
        self.threads: list[int] = []
        self.delay = delay
        self.open = threading.Event()
        self.open.set()
        self.main = threading.get_ident()
        self.inner = backend.forward
        backend.forward = self

    def __call__(self, pending, draft, cache):
        background = threading.get_ident() != self.main
        self.calls.append("worker" if background else "main")
        self.threads.append(torch.get_num_threads())
        if background:
            assert self.open.wait(timeout=30), "held forever"
            time.sleep(self.delay)
        return self.inner(pending, draft, cache)

    def count(self, where: str) -> int:
        return self.calls.count(where)


@pytest.fixture(autouse=True)
def no_thread_left():
    before = threading.active_count()
    yield
    for thread in threading.enumerate():
        if thread.name == "pearl-draft":
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert threading.active_count() == before


def attached(drafter: PearlDrafter, sampling: SamplingConfig = GREEDY, seed: int = 0) -> PearlDrafter:
    drafter.attach(tiny_backend("llama"))
    drafter.reset(HISTORY[:4], sampling, SeededRandomness(seed))
    return drafter


def finish_background(drafter: PearlDrafter):
    """Wait until the background run stops by itself (its cap); its chain."""
    worker = drafter._background.worker
    assert worker is not None, "no background run"
    worker.thread.join(timeout=30)
    return worker.chain


def reference_logits(history: list[int], tokens: list[int]) -> torch.Tensor:
    """The draft model's logits after `history` and after each of `tokens`, from a fresh cache."""
    backend = tiny_draft_backend("llama")
    return backend.forward(history, Draft(tokens), backend.new_cache())


def test_registered():
    assert METHODS["pearl"] is PearlDrafter


def test_after_a_full_acceptance_with_the_guessed_bonus_the_next_draft_was_drafted_in_the_background():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=4, first_draft=3))
    recorder = Recorder(backend)
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    assert len(draft) == 3 and drafter.last_prepared == 0 and recorder.count("main") >= 1  # drafted now
    chain = finish_background(drafter)
    # In the background: feed the last draft token (-> the guessed bonus token), then max_draft more.
    assert recorder.count("worker") == 1 + 4 and len(chain.tokens) == 3 + 1 + 4
    guess = int(reference_logits(HISTORY, draft.tokens)[-1].argmax())
    assert chain.tokens[3] == guess
    drafter.observe(draft, VerifyResult([0, 1, 2], draft.tokens + [guess]), NO_LOGITS)
    assert drafter.stats.fully_accepted == drafter.stats.guessed == 1

    committed = HISTORY + draft.tokens + [guess]
    recorder.calls.clear()
    following = drafter.propose(committed, Budget(8, FLAT))
    assert recorder.count("main") == 0  # no draft-model forward inside propose: it was all ready
    assert drafter.last_prepared == len(following) == 4
    reference = reference_logits(committed, following.tokens)
    assert following.tokens == reference[:-1].argmax(-1).tolist()  # the draft model's own greedy chain
    drafter.observe(following, VerifyResult([], [following.tokens[0] ^ 1]), NO_LOGITS)


def test_prepared_tokens_respect_the_loops_budget_and_the_rest_stays_prepared():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=4, first_draft=2))
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    chain = finish_background(drafter)
    committed = HISTORY + chain.tokens[:3]  # both draft tokens accepted, the guess was right
    drafter.observe(draft, VerifyResult([0, 1], chain.tokens[:3]), NO_LOGITS)
    short = drafter.propose(committed, Budget(2, FLAT))
    assert short.tokens == chain.tokens[3:5] and drafter.last_prepared == 2
    drafter.propose(committed, Budget(0, FLAT))  # nothing fits: an empty draft, the chain kept
    again = drafter.propose(committed, Budget(8, FLAT))
    assert again.tokens == chain.tokens[3:7] and drafter.last_prepared == 4
    drafter.reset(HISTORY[:4], GREEDY, SeededRandomness(0))


def test_a_rejection_discards_the_prepared_tokens_and_the_cache_follows_the_committed_text():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=4, first_draft=3))
    recorder = Recorder(backend)
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    finish_background(drafter)
    wrong = (draft.tokens[1] + 1) % (VOCAB - 2)
    drafter.observe(draft, VerifyResult([0], [draft.tokens[0], wrong]), NO_LOGITS)
    assert drafter._background.chain is None  # nothing prepared continues the committed text

    committed = HISTORY + [draft.tokens[0], wrong]
    recorder.open.clear()  # hold the next background run before its first forward
    following = drafter.propose(committed, Budget(8, FLAT))
    assert drafter.last_prepared == 0 and len(following) == 3
    model = drafter.model
    # The cache rolled back past the rejected tokens: it holds the committed text, then the new
    # draft but for its last token (the background run feeds that one).
    assert model.fed == committed + following.tokens[:-1] and len(model.cache) == len(model.fed)
    assert following.tokens == reference_logits(committed, following.tokens)[:-1].argmax(-1).tolist()
    recorder.open.set()
    drafter.observe(following, VerifyResult([], [following.tokens[0] ^ 1]), NO_LOGITS)


def test_a_wrong_guess_of_the_bonus_token_discards_what_was_drafted_past_it():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=4, first_draft=2))
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    chain = finish_background(drafter)
    other = (chain.tokens[2] + 1) % (VOCAB - 2)
    drafter.observe(draft, VerifyResult([0, 1], draft.tokens + [other]), NO_LOGITS)
    assert drafter._background.chain is None
    assert drafter.stats.fully_accepted == 1 and drafter.stats.guessed == 0
    committed = HISTORY + draft.tokens + [other]
    following = drafter.propose(committed, Budget(8, FLAT))
    assert drafter.last_prepared == 0
    assert following.tokens == reference_logits(committed, following.tokens)[:-1].argmax(-1).tolist()
    drafter.reset(HISTORY[:4], GREEDY, SeededRandomness(0))


def check_rows(draft: Draft, history: list[int]) -> None:
    assert draft.draft_probs is not None and draft.draft_probs.shape == (len(draft), VOCAB)
    reference = reference_logits(history, draft.tokens)
    for i, token in enumerate(draft.tokens):
        expected = probabilities(reference[i], SAMPLED)
        assert torch.allclose(draft.draft_probs[i], expected, atol=1e-5), f"row {i}"
        assert draft.draft_probs[i][token] > 0
        assert int((draft.draft_probs[i] > 0).sum()) <= SAMPLED.top_k  # the call's settings, top-k included


def test_sampled_rows_are_the_draft_distribution_for_tokens_drafted_now_and_in_the_background():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=3, first_draft=2), sampling=SAMPLED)
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    assert len(draft) == 2 and drafter.last_prepared == 0
    check_rows(draft, HISTORY)
    chain = finish_background(drafter)
    guess = chain.tokens[2]  # drawn from the draft model: the test plays a target that drew it too
    drafter.observe(draft, VerifyResult([0, 1], draft.tokens + [guess]), NO_LOGITS)
    committed = HISTORY + draft.tokens + [guess]
    following = drafter.propose(committed, Budget(8, FLAT))
    # Under sampling the length is first_draft whatever was ready; these two were drawn in the
    # background, given the guessed token that the target then produced.
    assert len(following) == 2 and drafter.last_prepared == 2
    check_rows(following, committed)
    drafter.reset(HISTORY[:4], SAMPLED, SeededRandomness(0))


def slow_target(arch: str, delay) -> object:
    """A tiny target whose forwards take `delay()` seconds longer: time for the background run."""
    target = tiny_backend(arch)
    forward = target.forward

    def slow(pending, draft, cache):
        time.sleep(delay())
        return forward(pending, draft, cache)

    target.forward = slow
    return target


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_decoding_uses_background_drafts_and_equals_plain_decoding(arch):
    target = slow_target(arch, lambda: 0.03)
    backend = tiny_draft_backend(arch)
    drafter = PearlDrafter(backend)
    drafter.attach(target)
    recorder = Recorder(backend)
    in_propose = []  # draft-model forwards each propose() ran itself
    propose = drafter.propose

    def counted(history, budget):
        before = recorder.count("main")
        draft = propose(history, budget)
        in_propose.append(recorder.count("main") - before)
        return draft

    drafter.propose = counted
    got, steps = run(target, HISTORY, drafter, 40)
    assert got == run(tiny_backend(arch), HISTORY, NoDrafter(), 40)[0]
    stats = drafter.stats
    assert stats.prepared_tokens > 0 and stats.guessed > 0
    # Some steps drafted nothing in propose: their drafts came out of the background run.
    assert in_propose.count(0) >= 1 and recorder.count("worker") > 0
    assert max(s.draft_len for s in steps) > drafter.first_draft  # the length followed what was ready


def test_seeded_sampling_does_not_depend_on_how_far_the_background_got():
    rng = random.Random(0)
    outputs, prepared = [], []
    for delay in (lambda: 0.0, lambda: rng.uniform(0.0, 0.02), lambda: 0.02):
        target = slow_target("llama", delay)
        drafter = PearlDrafter(tiny_draft_backend("llama"))
        drafter.attach(target)
        got, _ = run(target, HISTORY * 2, drafter, 30, SamplingConfig(temperature=1.0), seed=3)
        outputs.append(got)
        prepared.append(drafter.stats.prepared_tokens)
    assert outputs[0] == outputs[1] == outputs[2]
    assert prepared[2] > 0  # background tokens were really used on the slow target


def test_under_sampling_the_guess_is_drawn_with_the_verifiers_uniform():
    # A draft model with the target's very weights: every draft token is accepted, and a guess
    # drawn with the uniform the verifier draws the target's token with is that token.
    target = slow_target("llama", lambda: 0.02)
    twin = HFBackend(model=copy.deepcopy(target.model), tokenizer=byte_tokenizer(), name="twin")
    drafter = PearlDrafter(twin)
    drafter.attach(target)
    run(target, HISTORY, drafter, 30, SamplingConfig(temperature=1.0), seed=5)
    stats = drafter.stats
    assert stats.fully_accepted >= stats.steps - 1 and stats.guessed >= stats.fully_accepted - 2
    assert stats.prepared_tokens > 0


def test_reset_stops_a_running_background_draft():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend))  # 4 + 1 + 16 background forwards if left alone
    recorder = Recorder(backend, delay=0.05)
    before = threading.active_count()
    drafter.propose(HISTORY, Budget(8, FLAT))
    worker = drafter._background.worker
    assert worker is not None and worker.thread.is_alive() and threading.active_count() == before + 1
    drafter.reset(HISTORY[:4], GREEDY, SeededRandomness(0))
    assert not worker.thread.is_alive() and threading.active_count() == before
    assert recorder.count("worker") <= 2  # it stopped after its current forward
    assert drafter._background.worker is None and drafter._background.chain is None
    recorder.delay = 0.0
    draft = drafter.propose(HISTORY, Budget(8, FLAT))  # works as new
    assert draft.tokens == reference_logits(HISTORY, draft.tokens)[:-1].argmax(-1).tolist()
    drafter.reset(HISTORY[:4], GREEDY, SeededRandomness(0))


def test_a_copy_made_while_the_background_runs_shares_the_model_and_no_thread():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=6))
    forward = backend.forward

    def slow(pending, draft, cache):
        time.sleep(0.02)
        return forward(pending, draft, cache)

    backend.forward = slow
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    assert drafter._background.worker is not None and drafter._background.worker.thread.is_alive()
    clone = copy.deepcopy(drafter)
    assert clone.model.backend is drafter.model.backend and clone.target is drafter.target
    assert clone._background.worker is None and clone._background.chain is None
    assert clone.model is not drafter.model and clone.model.fed == []
    assert clone.stats == drafter.stats and clone.stats is not drafter.stats
    drafter.observe(draft, VerifyResult([], [draft.tokens[0] ^ 1]), NO_LOGITS)  # stops the original's run
    assert clone.propose(HISTORY, Budget(8, FLAT)).tokens == draft.tokens  # the copy drafts on its own
    clone.reset(HISTORY[:4], GREEDY, SeededRandomness(0))


def test_draft_threads_sets_the_background_threads_only():
    backend = tiny_draft_backend("llama")
    drafter = attached(PearlDrafter(backend, max_draft=2, first_draft=1, draft_threads=2))
    recorder = Recorder(backend)
    main = torch.get_num_threads()
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    finish_background(drafter)
    assert {n for n, where in zip(recorder.threads, recorder.calls) if where == "worker"} == {2}
    assert {n for n, where in zip(recorder.threads, recorder.calls) if where == "main"} == {main}
    assert torch.get_num_threads() == main
    drafter.observe(draft, VerifyResult([], [draft.tokens[0] ^ 1]), NO_LOGITS)


@pytest.mark.parametrize("options, message", [
    ({"max_draft": 0}, "max_draft must be >= 1"),
    ({"first_draft": 0}, "first_draft must be between 1 and max_draft"),
    ({"first_draft": 9, "max_draft": 8}, "first_draft must be between 1 and max_draft"),
    ({"draft_threads": -1}, "draft_threads must be >= 0"),
])
def test_bad_options(options, message):
    with pytest.raises(DecodekitError, match=message):
        PearlDrafter("some-model", **options)


def test_without_a_draft_model_it_says_so():
    with pytest.raises(DecodekitError, match="needs a draft model"):
        Decoder(tiny_backend("llama"), "pearl")


def test_the_target_or_a_view_of_it_is_refused_as_the_draft():
    target = tiny_backend("llama", num_layers=4)
    for draft in (target, layer_skip_view(target, speedup=2.0, exit_layer=2)):
        with pytest.raises(DecodekitError, match="must be a separate model"):
            Decoder(target, "pearl", draft=draft)
