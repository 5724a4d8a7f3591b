"""DoLa's ids equal transformers 4.55.4's on tiny random models (golden ids committed with the
script that made them, tools/golden_hf455.py), with and without drafters."""

from __future__ import annotations

import pytest
from golden_hf455 import case_eos, case_id, cases, golden, golden_backend

from decodekit.api import Decoder

MAX_NEW_TOKENS = golden()["base_generate_kwargs"]["max_new_tokens"]


def _run(case: dict, method: str, drafter: str | None = None, **options) -> list[int]:
    backend = golden_backend(case["arch"], case_eos(case))
    decoder = Decoder(backend, method, drafter=drafter, **options)
    prompt = golden()["prompts"][case["prompt_index"]]
    return decoder.generate(prompt_ids=prompt, max_new_tokens=MAX_NEW_TOKENS).token_ids


@pytest.mark.parametrize("case", cases("greedy"), ids=case_id)
def test_the_golden_models_load_as_they_were_made(case):
    """Plain greedy ids equal 4.55's: the weights and the config came through intact."""
    assert _run(case, "ar") == case["output_ids"]


@pytest.mark.parametrize("case", cases("dola"), ids=case_id)
def test_dola_equals_transformers_4_55(case):
    options = {"dola_layers": case["kwargs"]["dola_layers"],
               "repetition_penalty": case["kwargs"].get("repetition_penalty", 1.0)}
    assert _run(case, "dola", **options) == case["output_ids"]


@pytest.mark.parametrize("case", cases("dola")[::5], ids=case_id)
@pytest.mark.parametrize("drafter", ["prompt-lookup", "token-recycling"])
def test_dola_equals_transformers_4_55_with_a_drafter(case, drafter):
    options = {"dola_layers": case["kwargs"]["dola_layers"],
               "repetition_penalty": case["kwargs"].get("repetition_penalty", 1.0)}
    assert _run(case, "dola", drafter, **options) == case["output_ids"]
