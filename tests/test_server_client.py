"""The server driven by the official `openai` client: what it answers equals the library's own
generate() for the same request (greedy), streamed or not, and its extras are where documented."""

from __future__ import annotations

import httpx
import openai
import pytest
from serving import serving
from tiny import tiny_backend

from decodekit.api import Decoder

PROMPT = "abc abc abc abc abc abc abc abc"
MESSAGES = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def backend():
    return tiny_backend("llama")


@pytest.fixture(scope="module")
def server(backend):
    with serving(backend, "tiny", "prompt-lookup", max_tokens=64) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def library(backend, method: str = "prompt-lookup", **options):
    return Decoder(backend, method).generate(**options)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_equals_generate(client, backend):
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0)
    expected = library(backend, messages=MESSAGES, max_new_tokens=40)
    assert response.choices[0].message.content == expected.text
    assert response.choices[0].message.role == "assistant"
    assert response.usage.completion_tokens == len(expected.token_ids)
    assert response.usage.prompt_tokens == len(expected.prompt_ids)
    assert response.choices[0].finish_reason == ("stop" if expected.stats.stop_reason == "eos" else "length")


def test_completion_equals_generate(client, backend):
    response = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=30, temperature=0)
    expected = library(backend, prompt=PROMPT, max_new_tokens=30)
    assert response.choices[0].text == expected.text
    assert response.usage.completion_tokens == len(expected.token_ids)


def test_completion_takes_token_ids(client, backend):
    ids = backend.encode(PROMPT)
    response = client.completions.create(model="tiny", prompt=ids, max_tokens=12, temperature=0)
    assert response.choices[0].text == library(backend, prompt_ids=ids, max_new_tokens=12).text


def test_chat_stream_equals_generate_and_ends_with_stats(client, backend):
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = library(backend, messages=MESSAGES, max_new_tokens=40)
    assert text == expected.text
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == len(expected.token_ids)
    # The statistics ride on the last chunk only, under vLLM's and llama.cpp's names.
    # (Step counts are not compared with the library's run: the drafter sizes drafts by a latency
    # curve that learns as it goes; the per-chunk step figures must add up instead.)
    steps = [c.model_extra["decodekit"] for c in chunks if "decodekit" in (c.model_extra or {})]
    stats = usage_chunk.model_extra["metrics"]["speculative_decoding"]
    assert stats["num_spec_steps"] == sum(1 for step in steps if step["tokens"])
    assert stats["num_draft_tokens"] == sum(step["drafted"] for step in steps)
    assert stats["num_accepted_draft_tokens"] == sum(step["accepted"] for step in steps)
    assert usage_chunk.model_extra["timings"]["draft_n"] == stats["num_draft_tokens"]
    assert all("metrics" not in (c.model_extra or {}) for c in chunks[:-1])


def test_stream_spans_cover_the_text_and_mark_accepted_drafts(client, backend):
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=48, temperature=0,
                                                 stream=True))
    texts = [c for c in chunks if c.choices and c.choices[0].delta.content]
    for chunk in texts:
        spans = chunk.model_extra["decodekit"]["spans"]
        assert "".join(text for text, _ in spans) == chunk.choices[0].delta.content
    sources = {source for c in texts for _, source in c.model_extra["decodekit"]["spans"]}
    assert sources == {"draft", "model"}  # the repetitive prompt gets drafts accepted
    accepted = sum(c.model_extra["decodekit"]["accepted"] for c in chunks if "decodekit" in (c.model_extra or {}))
    assert accepted == chunks[-1].model_extra["metrics"]["speculative_decoding"]["num_accepted_draft_tokens"]


def test_stream_without_usage_puts_stats_on_the_finish_chunk(client):
    chunks = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=0, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].model_extra["metrics"]["speculative_decoding"]["num_spec_steps"] >= 1
    assert not any(getattr(c, "usage", None) for c in chunks)


def test_statistics_add_up(client):
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0)
    spec = response.model_extra["metrics"]["speculative_decoding"]
    tokens, steps = response.usage.completion_tokens, spec["num_spec_steps"]
    assert spec["num_draft_tokens"] > 0 and spec["num_accepted_draft_tokens"] > 0
    assert spec["mean_acceptance_length"] == pytest.approx(tokens / steps, abs=1e-4)
    assert spec["num_accepted_draft_tokens"] == tokens - steps  # each step adds the model's own token
    assert sum(spec["acceptance_histogram"]) == steps
    assert sum(j * count for j, count in enumerate(spec["acceptance_histogram"])) == spec["num_accepted_draft_tokens"]
    assert spec["draft_acceptance_rate"] == pytest.approx(spec["num_accepted_draft_tokens"] / spec["num_draft_tokens"],
                                                          abs=1e-4)
    timings = response.model_extra["timings"]
    assert (timings["predicted_n"], timings["draft_n"], timings["draft_n_accepted"]) == (
        tokens, spec["num_draft_tokens"], spec["num_accepted_draft_tokens"])


def test_decoding_field_chooses_the_method(client, backend):
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0,
                                              extra_body={"decoding": {"method": "ar"}})
    spec = response.model_extra["metrics"]["speculative_decoding"]
    assert spec["method"] == "ar" and spec["num_draft_tokens"] == 0
    assert response.choices[0].message.content == library(backend, "ar", messages=MESSAGES, max_new_tokens=24).text
    bracketed = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0,
                                               extra_body={"decoding": {"method": "prompt-lookup[max_draft=2]"}})
    assert bracketed.model_extra["metrics"]["speculative_decoding"]["method"] == "prompt-lookup[max_draft=2]"
    assert bracketed.choices[0].message.content == response.choices[0].message.content  # lossless


def test_a_strategy_runs_with_the_drafter_the_request_names(client, backend):
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0,
                                              extra_body={"decoding": {"method": "dola", "drafter": "prompt-lookup"}})
    spec = response.model_extra["metrics"]["speculative_decoding"]
    assert spec["method"] == "dola drafted by prompt-lookup" and spec["num_draft_tokens"] > 0
    expected = Decoder(backend, "dola", drafter="prompt-lookup").generate(messages=MESSAGES, max_new_tokens=24).text
    assert response.choices[0].message.content == expected


def test_a_search_method_answers_its_best_candidate(client, backend):
    response = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8,
                                         extra_body={"decoding": {"method": "beam", "options": {"num_beams": 2}}})
    assert response.choices[0].text == Decoder(backend, "beam", num_beams=2).generate(PROMPT, max_new_tokens=8).text


def test_seeded_sampling_is_reproducible_and_n_choices_differ(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=16, temperature=1.0, seed=7, n=3)
    first = client.chat.completions.create(**kwargs)
    second = client.chat.completions.create(**kwargs)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in second.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert len(set(texts)) > 1  # choice i draws with seed + i


def test_stop_strings_cut_the_text(client, backend):
    full = library(backend, messages=MESSAGES, max_new_tokens=40).text
    stop = full[5:7]
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0, stop=stop)
    assert response.choices[0].message.content == full[: full.index(stop)]
    assert response.choices[0].finish_reason == "stop"


def test_json_schema_response_format(client):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
    response = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    text = response.choices[0].message.content
    assert text.startswith('{"a": ') or text.startswith('{"a":')


def test_errors_reach_the_client_as_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=-3)
    assert "max_tokens" in error.value.message and error.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_api_key_is_required_when_set(backend):
    with serving(backend, api_key="s3cret") as url:
        anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "x"}).status_code == 401
        keyed = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert keyed.completions.create(model="tiny", prompt=PROMPT, max_tokens=4).usage.completion_tokens == 4
        assert httpx.get(f"{url}/health").status_code == 200  # health and metrics stay open for probes


def test_health_and_metrics(server, client):
    client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0)
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    text = httpx.get(f"{server}/metrics").text
    for name in ("decodekit_requests_total", "decodekit_generated_tokens_total", "decodekit_draft_tokens_total",
                 "decodekit_accepted_draft_tokens_total", "decodekit_request_tau_bucket", "decodekit_queue_depth",
                 "decodekit_request_latency_seconds_bucket", "decodekit_time_to_first_token_seconds_bucket"):
        assert name in text, name
    ok = [line for line in text.splitlines()
          if line.startswith('decodekit_requests_total{endpoint="/v1/completions",status="200"}')]
    assert ok and float(ok[0].split()[-1]) >= 1


def test_stream_marks_what_a_grammar_forced(client):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    chunks = list(client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=40, temperature=0, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}))
    spans = [span for c in chunks if "decodekit" in (c.model_extra or {}) for span in c.model_extra["decodekit"]["spans"]]
    forced = "".join(text for text, source in spans if source == "grammar")
    assert '"answer"' in forced  # the key is the only choice the schema leaves
    assert "".join(text for text, _ in spans) == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
