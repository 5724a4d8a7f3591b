"""Multiple-choice scoring, optionally calibrated (Zhao et al., 2021, "Calibrate Before Use").

A choice's score is the log-probability of its tokens after the prompt, as the tokenizer splits
prompt + choice. All choices are scored in one forward: they are the branches of one draft tree
over the prompt, and row 1 + i of the tree forward predicts what follows node i.

Calibration removes the prompt's bias towards some answers. The same prompt with its content (the
test input) replaced by content-free strings ("N/A", "", "[MASK]") gives the probabilities the
prompt alone assigns; their average, normalised, is p_cf. A choice's calibrated probability is
p(choice) / p_cf(choice), normalised: the affine map W = diag(p_cf)⁻¹, b = 0. A content-free input
therefore gets uniform calibrated scores when it is the only one calibrated against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from decodekit.backend import Backend
from decodekit.errors import DecodekitError
from decodekit.prompts import check_text
from decodekit.types import Draft

CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs


@dataclass
class ChoiceScores:
    choices: list[str]
    log_probs: list[float]  # log p(choice | prompt), summed over its tokens
    probs: list[float]  # normalised over the choices
    calibrated: list[float] | None  # normalised p / p_cf, when calibrated

    @property
    def best(self) -> str:
        """The choice with the highest (calibrated, where calibrated) probability."""
        scores = self.calibrated if self.calibrated is not None else self.probs
        return self.choices[max(range(len(scores)), key=scores.__getitem__)]


def score_choices(backend: Backend, prompt: str, choices: Sequence[str], calibrate: bool = False,
                  content: str | None = None, content_free: Sequence[str] = CONTENT_FREE) -> ChoiceScores:
    """Score `choices` as continuations of `prompt` (raw text, no chat template).

    With `calibrate`, `content` is the part of `prompt` that is the test input: the content-free
    prompts replace its last occurrence by each of `content_free`."""
    prompt = check_text(prompt, "the prompt")
    if isinstance(choices, str) or not isinstance(choices, Sequence) or len(choices) < 2:
        raise DecodekitError(f"choices must be a list of at least two strings, got {choices!r}")
    choices = [check_text(choice, "a choice") for choice in choices]
    if len(set(choices)) != len(choices):
        raise DecodekitError(f"choices must differ from each other, got {choices!r}")
    log_probs = _log_probs(backend, prompt, choices)
    log_p = torch.log_softmax(torch.tensor(log_probs, dtype=torch.float64), 0)  # in logs: long choices underflow
    calibrated = None
    if calibrate:
        if not content or content not in prompt:
            raise DecodekitError("calibrate=True needs content=, the part of the prompt that is the test input "
                                 "(it is replaced by content-free strings such as 'N/A')")
        if isinstance(content_free, str) or not content_free:
            raise DecodekitError(f"content_free must be a non-empty list of strings, got {content_free!r}")
        head, _, tail = prompt.rpartition(content)
        free = torch.tensor([_log_probs(backend, head + text + tail, choices) for text in content_free],
                            dtype=torch.float64)
        log_p_cf = torch.log_softmax(torch.logsumexp(free, 0), 0)  # the raw probabilities' mean, normalised
        calibrated = torch.softmax(log_p - log_p_cf, 0).tolist()
    return ChoiceScores(choices, log_probs, log_p.exp().tolist(), calibrated)


def _log_probs(backend: Backend, prompt: str, choices: list[str]) -> list[float]:
    """log p(choice | prompt) for every choice, from one tree forward over the shared prefix."""
    prompt_ids = backend.encode(prompt)
    full = [backend.encode(prompt + choice) for choice in choices]
    # Choices may merge with the prompt's last token: the prefix is what every split shares.
    shared = min(_common_prefix(prompt_ids, ids) for ids in full)
    if shared == 0:
        raise DecodekitError("the prompt and a choice tokenize with no common first token: add a separator "
                             "(a space or a newline) between them")
    branches = [ids[shared:] for ids in full]
    if any(not branch for branch in branches):
        raise DecodekitError("a choice adds no tokens to the prompt: choices must be non-empty text")
    tokens: list[int] = []
    parents: list[int] = []
    rows: list[list[int]] = []
    for branch in branches:
        start = len(tokens)
        tokens.extend(branch)
        parents.extend([-1] + list(range(start, start + len(branch) - 1)))
        rows.append([0] + [1 + i for i in range(start, start + len(branch) - 1)])
    if shared + max(map(len, branches)) > backend.context_length:
        raise DecodekitError(f"the prompt and a choice take more than the model's {backend.context_length} tokens")
    logits = backend.forward(prompt_ids[:shared], Draft(tokens, parents), backend.new_cache())
    log_softmax = torch.log_softmax(logits.float(), -1)
    return [float(sum(log_softmax[row, token] for row, token in zip(branch_rows, branch, strict=True)))
            for branch_rows, branch in zip(rows, branches, strict=True)]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def continuation_nll(backend: Backend, prompt_ids: list[int], ids: list[int]) -> float:
    """−log p(ids | prompt_ids), summed, from one forward (the ids as a draft chain)."""
    if not ids:
        return 0.0
    logits = backend.forward(prompt_ids, Draft(list(ids)), backend.new_cache())[:-1]  # row i predicts ids[i]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -float(log_probs[torch.arange(len(ids)), torch.tensor(ids)].sum())
