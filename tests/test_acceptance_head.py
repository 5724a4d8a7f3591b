"""SpecDec++'s acceptance head: collection labels every draft token with the target's verdict,
the trainer learns a separable signal, and a saved head drives the draft-model drafter."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_backend
from tiny_pairs import tiny_draft_backend

from decodekit.api import Decoder
from decodekit.drafters.acceptance_head import head_path, load_head, save_head, train_head
from decodekit.errors import DecodekitError
from decodekit.training import collect_acceptance, training_questions


def test_training_questions_come_from_the_end_of_each_category():
    from decodekit.bench.dataset import load_questions

    taken = training_questions(2)
    first = {q.question_id for q in load_questions(per_category=10)}
    assert len(taken) == 2 * len({q.category for q in taken})
    assert not first & {q.question_id for q in taken}  # never a question the benchmark times first


def test_collected_labels_are_the_targets_greedy_verdicts():
    target, draft = tiny_backend("llama"), tiny_draft_backend("llama")
    features, labels = collect_acceptance(target, draft, training_questions(1)[:2], max_new_tokens=12, draft_len=4)
    assert features.shape[0] == labels.shape[0] > 0 and features.shape[1] == 64
    assert set(labels.tolist()) <= {0, 1} and 0 < labels.float().mean() < 1  # both outcomes occur


def test_the_head_learns_a_separable_signal():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2000, 16, generator=generator)
    labels = (features[:, 3] > -0.5).long()  # about 70% accepted, decided by one direction
    result = train_head(features, labels, epochs=30)
    assert result.metrics["held_out_accuracy"] > 0.85  # the base rate is 0.70
    assert result.metrics["held_out_brier"] < result.metrics["base_rate_brier"] / 2


def test_too_few_tokens_is_an_error():
    with pytest.raises(DecodekitError, match="too few"):
        train_head(torch.zeros(5, 4), torch.ones(5))


def test_a_saved_head_drives_the_drafter_and_stays_exact():
    target, draft = tiny_backend("qwen2"), tiny_draft_backend("qwen2")
    features, labels = collect_acceptance(target, draft, training_questions(2), max_new_tokens=16, draft_len=4)
    result = train_head(features, labels, epochs=5)
    path = head_path(draft.name, target.name, "fp32")
    save_head(result.head, path, result.metrics)
    assert torch.equal(load_head(path, draft.name, target.name).net[1].weight, result.head.net[1].weight)
    decoder = Decoder(target, "draft-model", draft=draft, predictor="head", stop="threshold", threshold=0.5)
    assert decoder.drafter.head is not None
    prompt = list(range(40, 70))
    expected = Decoder(target, "ar").generate(prompt_ids=prompt, max_new_tokens=24).token_ids
    got = decoder.generate(prompt_ids=prompt, max_new_tokens=24)
    assert got.token_ids == expected and got.stats.drafted_tokens > 0


def test_a_missing_head_says_how_to_train_one():
    with pytest.raises(DecodekitError, match="decodekit train acceptance-head --model tiny-llama --draft"):
        Decoder(tiny_backend("llama"), "draft-model", draft=tiny_draft_backend("llama"), predictor="head")
