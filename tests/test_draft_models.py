"""Drafters built on a second model: the draft model's cache follows the committed text, sampled
drafts carry the distribution they were drawn from under the call's settings, the length rules
do what they say, multi-draft trees have the shape their verifiers assume, and bad pairings fail
with a clear message. That they are exact is tests/test_exactness.py; that their verifiers keep
the target's distribution is tests/test_verify_multi_draft.py."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import VOCAB, tiny_backend
from tiny_pairs import tiny_draft_backend

from decodekit.api import Decoder
from decodekit.budget import Budget, LatencyCurve
from decodekit.drafters import DraftModelDrafter, RsdDrafter, SpecTrDrafter
from decodekit.drafters.second_model import SecondModel
from decodekit.drafters.self_spec import SelfSpecDrafter
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig, probabilities
from decodekit.tree import ROOT, children
from decodekit.types import Draft, VerifyResult
from decodekit.verify import SeededRandomness

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})
HISTORY = [5, 9, 5, 9, 5, 9, 17, 23, 5, 9, 5]
SAMPLED = SamplingConfig(temperature=0.7, top_k=5)
GREEDY = SamplingConfig()


def draft_logits(draft, history: list[int], tree: Draft | None = None) -> torch.Tensor:
    """Reference: the draft model's logits after `history` (and tree nodes), from a fresh cache."""
    return draft.forward(history, tree or Draft.empty(), draft.new_cache())


def attached(drafter, arch: str = "llama", sampling: SamplingConfig = GREEDY, seed: int = 0):
    target = tiny_backend(arch)
    drafter.attach(target)
    drafter.reset(HISTORY[:4], sampling, SeededRandomness(seed))
    return drafter


def test_second_model_follows_the_text_through_rollbacks():
    draft = tiny_draft_backend("qwen2")
    model = SecondModel(draft, VOCAB)
    texts = [HISTORY[:6], HISTORY[:9], HISTORY[:7] + [40, 41], HISTORY[:7] + [40, 41, 42], HISTORY[:3], HISTORY]
    for history in texts:
        got = model.logits_after(history)
        assert torch.allclose(got, draft_logits(draft, history)[-1], atol=1e-5), history
        assert model.fed == history and len(model.cache) == len(history)
    step = model.extend(77)
    assert torch.allclose(step, draft_logits(draft, HISTORY + [77])[-1], atol=1e-5)


def test_second_model_tree_logits_and_cache_left_at_the_text():
    draft = tiny_draft_backend("gemma3")
    model = SecondModel(draft, VOCAB)
    tree = Draft([3, 4, 6, 8], [ROOT, 0, 0, ROOT])
    got = model.tree_logits(HISTORY, tree)
    assert torch.allclose(got, draft_logits(draft, HISTORY, tree), atol=1e-5)
    assert len(model.cache) == len(HISTORY)
    path = HISTORY + [3, 6]  # the node at index 2, reached through node 0
    assert torch.allclose(got[3], draft_logits(draft, path)[-1], atol=1e-4)


def test_draft_vocabulary_padded_or_cut_to_the_targets():
    draft = tiny_draft_backend("llama")
    wider = SecondModel(draft, VOCAB + 6).logits_after(HISTORY)
    assert wider.shape == (VOCAB + 6,) and torch.isinf(wider[VOCAB:]).all()
    assert SecondModel(draft, VOCAB - 2).logits_after(HISTORY).shape == (VOCAB - 2,)


@pytest.mark.parametrize("stop", ["fixed", "threshold", "cost"])
def test_sampled_draft_rows_are_the_draft_distribution_under_the_calls_settings(stop):
    drafter = attached(DraftModelDrafter(tiny_draft_backend("llama"), stop=stop, max_draft=4), sampling=SAMPLED)
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    assert len(draft) >= 1 and draft.draft_probs is not None
    reference = draft_logits(tiny_draft_backend("llama"), HISTORY, Draft(draft.tokens))  # [1 + n, vocab]
    for i, token in enumerate(draft.tokens):
        expected = probabilities(reference[i], SAMPLED)
        assert torch.allclose(draft.draft_probs[i], expected, atol=1e-5), f"row {i}"
        assert draft.draft_probs[i][token] > 0
        assert int((draft.draft_probs[i] > 0).sum()) <= SAMPLED.top_k  # top-k applied to the draft too


def test_greedy_draft_is_the_draft_models_argmax_chain():
    drafter = attached(DraftModelDrafter(tiny_draft_backend("qwen2"), stop="fixed", max_draft=5))
    draft = drafter.propose(HISTORY, Budget(8, FLAT))
    reference = draft_logits(tiny_draft_backend("qwen2"), HISTORY, Draft(draft.tokens))
    assert draft.tokens == reference[:-1].argmax(-1).tolist() and draft.draft_probs is None
    assert len(draft) == 5


def test_fixed_length_respects_the_loops_budget():
    drafter = attached(DraftModelDrafter(tiny_draft_backend("llama"), stop="fixed", max_draft=6))
    assert len(drafter.propose(HISTORY, Budget(2, FLAT))) == 2
    assert len(drafter.propose(HISTORY, Budget(0, FLAT))) == 0


def test_threshold_stops_once_a_rejection_is_likely_enough():
    drafter = attached(DraftModelDrafter(tiny_draft_backend("llama"), stop="threshold", threshold=0.5, max_draft=10))
    draft = drafter.propose(HISTORY, Budget(10, FLAT))
    predicted = [drafter.calibration.predict(c) for c in drafter._confidences]
    survival = torch.tensor(predicted).cumprod(0)
    # Stopped at the first token after which P(some token rejected) passed the threshold.
    passed = [i for i, s in enumerate(survival.tolist()) if 1 - s > 0.5]
    assert len(draft) == (passed[0] + 1 if passed else 10)


def test_catch_up_after_a_fully_accepted_draft():
    drafter = attached(DraftModelDrafter(tiny_draft_backend("llama"), stop="fixed", max_draft=3))
    draft = drafter.propose(HISTORY, Budget(3, FLAT))
    # The last draft token was never fed to the draft model: the next step feeds it and the
    # target's own token together, and the cache then holds the whole text.
    assert drafter.model.fed == HISTORY + draft.tokens[:-1]
    committed = HISTORY + draft.tokens + [11]
    drafter.observe(draft, VerifyResult([0, 1, 2], draft.tokens + [11]), torch.zeros(4, VOCAB))
    drafter.propose(committed, Budget(1, FLAT))
    assert drafter.model.fed == committed and len(drafter.model.cache) == len(committed)


def test_spectr_draws_iid_sequences_into_a_trie():
    drafter = attached(SpecTrDrafter(tiny_draft_backend("llama"), num_drafts=4, depth=3),
                       sampling=SamplingConfig(temperature=1.5))
    draft = drafter.propose(HISTORY, Budget(32, FLAT))
    assert draft.rule == "k-seq" and draft.draws is not None and draft.draft_probs is not None
    assert len(draft.draws[ROOT]) == 4  # every sequence passes through the root
    kids = children(draft.parent_list())
    for node, drawn in draft.draws.items():
        assert set(drawn) == set(kids.get(node, []))  # every child was drawn, and only children
        tokens = [draft.tokens[c] for c in set(drawn)]
        assert len(tokens) == len(set(tokens))  # identical prefixes share a node
        rows = draft.draft_probs[drawn]
        assert torch.equal(rows, rows[:1].expand_as(rows))  # siblings drawn from one distribution
        if node != ROOT:  # sequences through a node: as many as draws reached it
            assert len(drawn) == draft.draws[draft.parents[node]].count(node)


def test_spectr_greedy_is_one_chain():
    draft = attached(SpecTrDrafter(tiny_draft_backend("llama"), num_drafts=3, depth=4)).propose(HISTORY, Budget(32, FLAT))
    assert draft.is_chain and len(draft) == 4


def test_rsd_siblings_are_drawn_without_replacement():
    drafter = attached(RsdDrafter(tiny_draft_backend("qwen2"), width=4, branch=2, depth=2),
                       sampling=SamplingConfig(temperature=2.0))
    draft = drafter.propose(HISTORY, Budget(32, FLAT))
    assert len(draft) == 4 + 8 and draft.draft_probs is not None
    for kids in children(draft.parent_list()).values():
        tokens = [draft.tokens[c] for c in kids]
        assert len(set(tokens)) == len(tokens)
        first = draft.draft_probs[kids[0]]
        for i, child in enumerate(kids):
            # Each sibling's row: the draft distribution with the earlier siblings removed.
            expected = first.clone()
            expected[tokens[:i]] = 0
            assert torch.allclose(draft.draft_probs[child], expected / expected.sum(), atol=1e-6)


def test_rsd_greedy_is_the_top_tokens_tree_and_levels_fit_the_budget():
    drafter = attached(RsdDrafter(tiny_draft_backend("llama"), width=3, branch=1, depth=4))
    draft = drafter.propose(HISTORY, Budget(7, FLAT))
    assert len(draft) == 6  # two whole levels of 3: a third would pass the budget of 7
    top = draft_logits(tiny_draft_backend("llama"), HISTORY)[-1].topk(3).indices.tolist()
    assert draft.tokens[:3] == top and draft.draft_probs is None


def test_copies_share_the_models_and_copy_what_was_learned():
    drafter = attached(DraftModelDrafter(tiny_draft_backend("llama"), stop="fixed", max_draft=3))
    drafter.calibration.observe([0.95, 0.95], 1)
    clone = copy.deepcopy(drafter)
    assert clone.model.backend is drafter.model.backend and clone.target is drafter.target
    assert clone.calibration.rates[9].value == drafter.calibration.rates[9].value
    clone.calibration.observe([0.95], 1)
    assert clone.calibration.rates[9].value != drafter.calibration.rates[9].value


def test_self_spec_drafts_with_the_targets_own_layers():
    target = tiny_backend("llama", num_layers=4)
    decoder = Decoder(target, "self-spec", exit_layer=3, stop="fixed", max_draft=3)
    skip = decoder.drafter.model.backend
    assert skip.full is target and skip.kept_layers == (0, 1, 2)
    ar = Decoder(target, "ar").generate(prompt_ids=HISTORY, max_new_tokens=20)
    assert decoder.generate(prompt_ids=HISTORY, max_new_tokens=20).token_ids == ar.token_ids


def test_layer_skip_decodes_with_the_skipped_model():
    target = tiny_backend("llama", num_layers=4)
    lossy = Decoder(target, "layer-skip", exit_layer=2)
    assert lossy.full_backend is target and lossy.backend.kept_layers == (0, 1)
    reference = Decoder(lossy.backend, "ar").generate(prompt_ids=HISTORY, max_new_tokens=12)
    assert lossy.generate(prompt_ids=HISTORY, max_new_tokens=12).token_ids == reference.token_ids


class _OtherTokenizer:
    """A stand-in backend whose tokenizer gives other ids."""

    name = "other"
    vocab_size = VOCAB

    def __init__(self):
        self.eos_token_ids = {1}

    def encode(self, text):
        return [7] * len(text)

    def forward(self, *args):
        raise AssertionError("never run")


@pytest.mark.parametrize("method", ["draft-model", "spectr", "rsd"])
def test_a_draft_model_with_another_tokenizer_is_refused(method):
    with pytest.raises(DecodekitError, match="does not share the tokenizer of 'tiny-llama'"):
        Decoder(tiny_backend("llama"), method, draft=_OtherTokenizer())


@pytest.mark.parametrize("method", ["draft-model", "spectr", "rsd"])
def test_a_draft_method_without_a_draft_model_says_so(method):
    with pytest.raises(DecodekitError, match="needs a draft model"):
        Decoder(tiny_backend("llama"), method)


@pytest.mark.parametrize("options, message", [
    ({"stop": "never"}, "stop must be one of"),
    ({"threshold": 1.5}, "threshold must be in"),
    ({"max_draft": 0}, "max_draft must be >= 1"),
])
def test_bad_draft_model_options(options, message):
    with pytest.raises(DecodekitError, match=message):
        DraftModelDrafter("some-model", **options)


@pytest.mark.parametrize("options, message", [({"speedup": 0.5}, "speedup must be"), ({"exit_layer": -1}, "exit_layer")])
def test_bad_layer_skip_options(options, message):
    with pytest.raises(DecodekitError, match=message):
        SelfSpecDrafter(**options)
