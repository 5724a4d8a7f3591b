"""SmolLM2-135M under grammars: constrained greedy output is the same with and without a
drafter, JSON outputs validate, and token healing completes a word cut by the prompt's end."""

import json

import jsonschema
import pytest

from decodekit import Decoder
from decodekit.bench.divergence import first_divergence, is_bug, logit_gap, tie_tolerance
from decodekit.models.hf import load_backend
from decodekit.types import Draft

pytestmark = pytest.mark.slow

PERSON = {
    "type": "object",
    "properties": {
        "full_name": {"type": "string", "maxLength": 40},
        "email_address": {"type": "string", "maxLength": 40},
        "favourite_colours": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
        "postal_address": {"type": "object", "properties": {"street": {"type": "string", "maxLength": 40},
                                                           "city": {"type": "string", "maxLength": 20}},
                           "required": ["street", "city"], "additionalProperties": False},
    },
    "required": ["full_name", "email_address", "favourite_colours", "postal_address"],
    "additionalProperties": False,
}
EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string", "enum": ["meeting", "call", "lunch"]},
                   "day": {"type": "string", "pattern": "^(Mon|Tue|Wed|Thu|Fri)$"},
                   "attendees": {"type": "integer", "minimum": 1, "maximum": 20}},
    "required": ["event", "day", "attendees"], "additionalProperties": False,
}
CASES = [
    ("Alice Smith (alice@example.com) lives at 12 Oak Street, Springfield, and likes red and teal. "
     "Write her record as JSON, then write it again.", PERSON),
    ("Lunch with 4 people on Tuesday. Give the event as JSON.", EVENT),
    ("Bob Jones, bob@jones.org, 7 Elm Road in Leeds; he likes green. Return JSON.", PERSON),
]


@pytest.fixture(scope="module")
def backend():
    return load_backend("smollm2-135m", threads=2)


def response_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "record", "schema": schema}}


@pytest.fixture(scope="module")
def constrained_ar(backend):
    decoder = Decoder(backend, "ar")
    results = []
    for prompt, schema in CASES:
        ids = decoder.user_prompt_ids(prompt)
        results.append((ids, schema, decoder.generate(prompt_ids=ids, response_format=response_format(schema),
                                                      max_new_tokens=160)))
    return results


def test_constrained_ar_output_validates_and_is_fast_forwarded(constrained_ar):
    for _, schema, result in constrained_ar:
        assert result.completed and result.stats.stop_reason == "eos"
        jsonschema.validate(json.loads(result.text), schema)
        # Key names are forced: committed without a forward of their own.
        assert result.stats.forced_tokens >= 5
        assert result.stats.steps == result.stats.new_tokens - result.stats.forced_tokens


@pytest.mark.parametrize("method", ["prompt-lookup", "copy-spec", "token-recycling"])
def test_constrained_greedy_with_a_drafter_equals_constrained_ar(backend, constrained_ar, method):
    # Not adaptive: always draft, so that drafts are verified under the grammar (the adaptive
    # defaults rightly stop drafting where half the tokens are forced anyway).
    decoder = Decoder(backend, method, adaptive=False)
    identical = accepted = 0
    for ids, schema, expected in constrained_ar:
        result = decoder.generate(prompt_ids=ids, response_format=response_format(schema), max_new_tokens=160)
        accepted += result.stats.new_tokens - result.stats.steps - result.stats.forced_tokens
        position = first_divergence(expected.token_ids, result.token_ids)
        if position is None:
            identical += 1
            continue
        # A tree forward may differ from one-token decoding in the last bits: only a tie explains a divergence.
        # Both tokens were allowed there, so the raw logits' gap is the masked logits' gap.
        context = ids + expected.token_ids[:position]
        row = backend.forward(context, Draft.empty(), backend.new_cache())[0]
        gap = logit_gap(row, expected.token_ids[position], result.token_ids[position])
        assert not is_bug(gap, tie_tolerance(row, backend)), f"{method} diverged at {position}: gap {gap:.2e}"
    assert identical >= len(constrained_ar) - 1
    assert accepted > 0


def test_token_healing_completes_a_word_as_the_unsplit_prompt_would(backend):
    decoder = Decoder(backend, "ar")
    whole = decoder.generate("The capital of France is", max_new_tokens=12)
    assert whole.text.startswith(" Paris")  # the premise: the unsplit prompt goes on with " Paris"
    cut = "The capital of France is Par"
    healed = decoder.generate(cut, max_new_tokens=12, heal=True)
    plain = decoder.generate(cut, max_new_tokens=12)
    # Healed: the prompt's " Par" is rewritten as the " Paris" token, and the text goes on exactly
    # as after the unsplit prompt; the caller sees only what follows "Par".
    assert healed.stats.healed_tokens == 1
    assert cut + healed.text == ("The capital of France is" + whole.text)[: len(cut + healed.text)]
    assert len(healed.text) > 8
    # Without healing the prompt ends on a token the model rarely saw inside a word.
    assert plain.token_ids[0] != healed.token_ids[0]
