"""Multiple-choice scoring: one tree forward gives each choice's log-probability, and
calibration (Zhao et al., 2021) makes a content-free input's scores uniform."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import save_tiny_model, tiny_backend
from typer.testing import CliRunner

from decodekit.api import Decoder
from decodekit.cli import app
from decodekit.scoring import CONTENT_FREE

PROMPT = "Review: the plot was dull. Sentiment:"
CHOICES = [" positive", " negative", " neutral"]


def _direct_log_prob(backend, prompt: str, choice: str) -> float:
    """log p(choice | prompt) by one plain forward over prompt + choice."""
    prompt_ids, full = backend.encode(prompt), backend.encode(prompt + choice)
    assert full[: len(prompt_ids)] == prompt_ids  # the byte tokenizer never merges across the boundary
    with torch.no_grad():
        logits = backend.model(torch.tensor([full])).logits[0].float()
    log_probs = torch.log_softmax(logits, -1)
    return float(sum(log_probs[i - 1, full[i]] for i in range(len(prompt_ids), len(full))))


def test_each_choice_gets_its_log_probability_from_one_tree_forward():
    backend = tiny_backend("llama")
    scores = Decoder(backend, "ar").score_choices(PROMPT, CHOICES)
    for choice, log_prob in zip(CHOICES, scores.log_probs, strict=True):
        assert log_prob == pytest.approx(_direct_log_prob(backend, PROMPT, choice), abs=1e-4)
    expected = torch.softmax(torch.tensor(scores.log_probs, dtype=torch.float64), 0).tolist()
    assert scores.probs == pytest.approx(expected)
    assert scores.calibrated is None


def test_calibration_makes_the_content_free_input_uniform():
    decoder = Decoder(tiny_backend("llama"), "ar")
    content_free_prompt = PROMPT.replace("the plot was dull.", "N/A")
    raw = decoder.score_choices(content_free_prompt, CHOICES)
    assert max(raw.probs) - min(raw.probs) > 0.01  # the prompt alone is biased: calibration has work to do
    calibrated = decoder.score_choices(content_free_prompt, CHOICES, calibrate=True, content="N/A",
                                       content_free=("N/A",))
    assert calibrated.calibrated == pytest.approx([1 / 3] * 3, abs=1e-9)


def test_calibration_divides_by_the_mean_content_free_probability():
    decoder = Decoder(tiny_backend("llama"), "ar")
    scores = decoder.score_choices(PROMPT, CHOICES, calibrate=True, content="the plot was dull.")
    free = torch.tensor([decoder.score_choices(PROMPT.replace("the plot was dull.", text), CHOICES).log_probs
                         for text in CONTENT_FREE], dtype=torch.float64).exp()
    p_cf = free.mean(0) / free.mean(0).sum()
    p = torch.tensor(scores.probs, dtype=torch.float64)
    expected = (p / p_cf) / (p / p_cf).sum()
    assert scores.calibrated == pytest.approx(expected.tolist(), rel=1e-6)
    assert scores.best == CHOICES[int(expected.argmax())]


def test_generate_cli_runs_a_strategy_with_a_drafter(tmp_path, isolated_cache):
    folder = save_tiny_model(tmp_path / "tiny")
    runner = CliRunner()
    outputs = []
    for extra in ([], ["--drafter", "prompt-lookup"]):
        result = runner.invoke(app, ["generate", "abcabcabcabcabc", "--model", str(folder), "--raw", "--json", "-n", "24",
                                     "--method", "dola[dola_layers=low,repetition_penalty=1.0]", *extra])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    assert outputs[0]["token_ids"] == outputs[1]["token_ids"]
    assert outputs[1]["stats"]["steps"] <= outputs[0]["stats"]["steps"]
