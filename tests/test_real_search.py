"""Every search method runs on the real default model (smollm2-135m) from the CLI, and gives
what it promises there: beam search's n-best ranked, exact-extract's answer a span of the
passage."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from decodekit.cli import app

pytestmark = pytest.mark.slow

PASSAGE = "Marie Curie was born in Warsaw in 1867 and moved to Paris in 1891."
METHODS = {
    "beam[num_beams=3]": 3,
    "diverse-beam[num_beams=4,num_beam_groups=2]": 4,
    "contrastive-search": 1,
    "momentum": 1,
    "superposed[num_drafts=3]": 3,
    f"exact-extract[passage={PASSAGE}]": 1,
}


@pytest.mark.parametrize("method", METHODS)
def test_search_runs_on_smollm2_from_the_cli(method):
    prompt = f"{PASSAGE}\nWhere was Marie Curie born?" if method.startswith("exact") else "Write a haiku about rain."
    result = CliRunner().invoke(app, ["generate", prompt, "--method", method, "-n", "16", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    candidates = payload["candidates"]
    assert len(candidates) == METHODS[method] and all(c["token_ids"] for c in candidates)
    scores = [c["score"] for c in candidates]
    if method.startswith("superposed"):  # ranked by mean score per token
        scores = [c["score"] / len(c["token_ids"]) for c in candidates]
    assert scores == sorted(scores, reverse=True)
    if method.startswith("exact"):
        assert payload["text"].strip() and payload["text"].strip() in PASSAGE
