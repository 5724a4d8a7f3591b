"""SmolLM2-135M from the zoo: prompt lookup equals greedy on real Spec-Bench prompts."""

import json
from pathlib import Path

import pytest

from decodekit import Decoder
from decodekit.models.hf import load_backend

pytestmark = pytest.mark.slow

SPEC_BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spec_bench" / "question.jsonl"
CATEGORIES = ["summarization", "translation", "qa", "math_reasoning", "rag"]


@pytest.fixture(scope="module")
def backend():
    return load_backend("smollm2-135m", threads=2)


def spec_bench_prompts() -> list[str]:
    if not SPEC_BENCH.is_file():
        pytest.fail(f"Spec-Bench prompts not found at {SPEC_BENCH} (the workspace's shared/data)")
    questions = [json.loads(line) for line in SPEC_BENCH.read_text().splitlines()]
    return [next(q["turns"][0] for q in questions if q["category"] == c) for c in CATEGORIES]


@pytest.fixture(scope="module")
def greedy_reference(backend):
    ar = Decoder(backend, "ar")
    prompts = [ar.prompt_ids(messages=[{"role": "user", "content": p}]) for p in spec_bench_prompts()]
    return [(ids, ar.generate(prompt_ids=ids, max_new_tokens=128).token_ids) for ids in prompts]


METHODS = ["prompt-lookup", "copy-spec", "token-recycling", "lookahead", "aded", "copy-spec+token-recycling"]


@pytest.mark.parametrize("method", METHODS)
def test_method_equals_greedy_on_spec_bench(backend, greedy_reference, method):
    decoder = Decoder(backend, method)
    accepted = 0
    for ids, expected in greedy_reference:
        got = decoder.generate(prompt_ids=ids, max_new_tokens=128)
        assert got.token_ids == expected
        accepted += got.stats.new_tokens - got.stats.steps
    assert accepted > 0  # the method really drafted and was accepted somewhere


def test_generate_text_and_stream_agree(backend):
    decoder = Decoder(backend, "prompt-lookup")
    messages = [{"role": "user", "content": "List three colours, then repeat the list."}]
    result = decoder.generate(messages=messages, max_new_tokens=40)
    streamed = "".join(decoder.stream(messages=messages, max_new_tokens=40))
    assert streamed == result.text
    assert result.text == backend.tokenizer.decode(result.token_ids, skip_special_tokens=True)
