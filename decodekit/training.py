"""Training what a drafter can learn ahead of time: SpecDec++'s acceptance head.

`collect_acceptance` lets the draft model draft fixed-length chains for the target on real
prompts and records, for every draft token, the draft's hidden state that produced it and
whether the target's greedy choice at that position was that token (acceptance given the draft
prefix, so positions after an earlier rejection count too). `train_head`
(drafters/acceptance_head.py) fits the head on those pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from decodekit.backend import Backend
from decodekit.bench.dataset import Question, read_questions, spec_bench_path
from decodekit.drafters.draft_model import DraftModelDrafter
from decodekit.errors import DecodekitError
from decodekit.loop import decode
from decodekit.prompts import conversation_ids, user_turn
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult
from decodekit.verify import SeededRandomness


class _Collector(DraftModelDrafter):
    """Fixed-length drafts, each token labelled by the target's verdict at its position."""

    def __init__(self, draft, draft_len: int):
        super().__init__(draft, max_draft=draft_len, stop="fixed")
        self.features: list[torch.Tensor] = []
        self.labels: list[int] = []

    def attach(self, target: Backend) -> None:
        super().attach(target)
        assert self.model is not None
        self.model.want_hidden = True

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        super().observe(draft, result, target_logits)
        choices = target_logits[: len(draft)].argmax(-1).tolist()
        for i, token in enumerate(draft.tokens):
            self.features.append(self._hidden[i].float().cpu())
            self.labels.append(int(choices[i] == token))


def training_questions(per_category: int) -> list[Question]:
    """Spec-Bench questions from the END of each category: the benchmark takes the first ones,
    so a head is never trained on a prompt it is then timed on."""
    questions = read_questions(spec_bench_path())
    by_category: dict[str, list[Question]] = {}
    for question in questions:
        by_category.setdefault(question.category, []).append(question)
    return [q for items in by_category.values() for q in items[-per_category:]]


def collect_acceptance(target: Backend, draft: str | Backend, questions: list[Question], max_new_tokens: int,
                       draft_len: int, on_prompt: Callable[[], None] = lambda: None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [n, hidden], labels [n]) over the first turn of every question."""
    collector = _Collector(draft, draft_len)
    collector.attach(target)
    for question in questions:
        ids = conversation_ids(target, user_turn(question.turns[0]))
        if len(ids) + max_new_tokens > target.context_length:
            on_prompt()
            continue  # a prompt that leaves no room to answer teaches nothing
        for _ in decode(target, ids, collector, SamplingConfig(), SeededRandomness(0), max_new_tokens):
            pass
        on_prompt()
    if not collector.labels:
        raise DecodekitError("no draft tokens were collected: the prompts gave no room to draft")
    return torch.stack(collector.features), torch.tensor(collector.labels)
