"""Search methods against transformers 4.55.4, the last release that shipped them in the library:
group (diverse) beam search ids and scores on tiny random models (golden ids committed with the
script that made them, tools/golden_hf455.py)."""

from __future__ import annotations

import pytest
from golden_hf455 import case_eos, case_id, cases, golden, golden_backend

from decodekit.search import ContrastiveSearch, DiverseBeamSearch, run_search

MAX_NEW_TOKENS = golden()["base_generate_kwargs"]["max_new_tokens"]
PAD = golden()["base_generate_kwargs"]["pad_token_id"]
GROUP_OPTIONS = ("num_beams", "num_beam_groups", "diversity_penalty", "length_penalty", "early_stopping",
                 "num_return_sequences")


def _prompt(case: dict) -> list[int]:
    return golden()["prompts"][case["prompt_index"]]


@pytest.mark.parametrize("case", cases("group_beam"), ids=case_id)
def test_diverse_beam_search_equals_transformers_4_55(case):
    search = DiverseBeamSearch(**{k: case["kwargs"][k] for k in GROUP_OPTIONS})
    ours = run_search(golden_backend(case["arch"], case_eos(case)), _prompt(case), search, MAX_NEW_TOKENS).hypotheses
    assert len(ours) == len(case["output_ids"])
    for rank, (hypothesis, expected, score) in enumerate(zip(ours, case["output_ids"], case["sequences_scores"])):
        n = len(hypothesis.token_ids)
        assert expected[:n] == hypothesis.token_ids and set(expected[n:]) <= {PAD}, f"hypothesis {rank}"
        assert hypothesis.score == pytest.approx(score, abs=1e-4), f"hypothesis {rank}"


@pytest.mark.parametrize("case", cases("contrastive"), ids=case_id)
def test_contrastive_search_equals_transformers_4_55(case):
    search = ContrastiveSearch(alpha=case["kwargs"]["penalty_alpha"], top_k=case["kwargs"]["top_k"])
    ours = run_search(golden_backend(case["arch"], case_eos(case)), _prompt(case), search, MAX_NEW_TOKENS)
    assert ours.hypotheses[0].token_ids == case["output_ids"]
