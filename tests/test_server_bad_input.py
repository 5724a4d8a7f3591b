"""Bad requests get a 4xx with OpenAI's error body naming the problem, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest
from serving import serving
from tiny import tiny_backend

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
OK = {"model": "tiny", "messages": [{"role": "user", "content": "abc abc abc"}], "max_tokens": 4}


def chat(**changes) -> dict:
    body = {**OK, **changes}
    return {key: value for key, value in body.items() if value is not ...}


BAD_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                             "properties": {"a": {"type": "nonsense"}}}}}

# (path, body, status, words in the message, the field it names)
CASES = [
    (CHAT, b'{"messages": [', 400, "not valid JSON", None),
    (CHAT, b"[1, 2]", 400, "must be a JSON object", None),
    (COMPLETIONS, b'{"prompt": "' + b"a" * (5 * 2**20) + b'"}', 413, "over 4 MiB", None),
    (CHAT, chat(messages=...), 400, "Field required", "messages"),
    (CHAT, chat(messages=[]), 400, "at least 1 item", "messages"),
    (CHAT, chat(messages=[{"role": "wizard", "content": "hi"}]), 400, "Input should be", "messages.0.role"),
    (CHAT, chat(messages=[{"role": "user", "content": 42}]), 400, "valid string", "messages.0.content.str"),
    (CHAT, chat(max_tokens="10"), 400, "valid integer", "max_tokens"),
    (CHAT, chat(max_tokens=-5), 400, "at least 1", "max_tokens"),
    (CHAT, chat(max_tokens=0), 400, "at least 1", "max_tokens"),
    (CHAT, chat(max_tokens=100_000), 400, "--max-tokens-limit", "max_tokens"),
    (CHAT, chat(max_tokens=..., max_completion_tokens=-1), 400, "at least 1", "max_completion_tokens"),
    (CHAT, chat(temperature="hot"), 400, "valid number", "temperature"),
    (CHAT, chat(temperature=-1.0), 400, "temperature", "temperature"),
    (CHAT, chat(top_p=1.5), 400, "top_p", "top_p"),
    (CHAT, chat(seed=-3), 400, "seed", "seed"),
    (CHAT, chat(stop=[1, 2]), 400, "valid string", "stop.str"),
    (CHAT, chat(n=0), 400, "n must be between", "n"),
    (CHAT, chat(stream="yes"), 400, "valid boolean", "stream"),
    (CHAT, chat(stream_options={"include_usage": True}), 400, "goes with stream", "stream_options"),
    (CHAT, chat(logprobs=True), 400, "not supported", "logprobs"),
    (CHAT, chat(tools=[{"type": "function", "function": {"name": "f"}}]), 400, "not supported", "tools"),
    (CHAT, chat(decoding={"method": "warp-drive"}), 400, "unknown method 'warp-drive'", "decoding.method"),
    (CHAT, chat(decoding={"method": "prompt-lookup", "options": {"max_draft": "many"}}), 400, "max_draft",
     "decoding.method"),
    (CHAT, chat(decoding={"method": "ar", "speed": "fast"}), 400, "Extra inputs", "decoding.speed"),
    (CHAT, chat(messages=[{"role": "user", "content": "abc " * 200}]), 400, "context", "messages"),
    (CHAT, chat(response_format={"type": "yaml"}), 400, "response_format type", "response_format"),
    (CHAT, chat(response_format=BAD_SCHEMA), 400, "nonsense", "response_format"),
    (CHAT, chat(model="gpt-4o"), 404, "not served here", "model"),
    (COMPLETIONS, {"model": "tiny", "max_tokens": 4}, 400, "Field required", "prompt"),
    (COMPLETIONS, {"prompt": ["one", "two"]}, 400, "one prompt per request", "prompt"),
    (COMPLETIONS, {"prompt": [1, 99999]}, 400, "not a token id", "prompt"),
    (COMPLETIONS, {"prompt": ""}, 400, "empty", "prompt"),
    (COMPLETIONS, {"prompt": "x", "echo": True}, 400, "not supported", "echo"),
    # nothing a request sends can crash the parser or reach the tokenizer unchecked
    (CHAT, b'{"x": ' + b"[" * 70 + b"]" * 70 + b"}", 400, "nests deeper than 64 levels", "x" + ".0" * 63),
    (CHAT, b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", 400, "nests deeper than 64 levels", None),
    (COMPLETIONS, b'{"prompt": "a\\ud800b", "max_tokens": 4}', 400, "lone surrogate (U+D800) at character 1",
     "prompt"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi \\udfff"}]}', 400, "lone surrogate", "messages.0.content"),
    (CHAT, chat(stop=["a", "b", "c", "d", "e"]), 400, "5 strings, over this server's limit of 4", "stop"),
    (CHAT, chat(stop="x" * 65), 400, "65 characters, over this server's limit of 64", "stop"),
    (CHAT, chat(n=17), 400, "between 1 and 16 (--max-n)", "n"),
    # the operator chooses every model and file; a request only picks within the limits
    (CHAT, chat(decoding={"method": "draft-model", "options": {"draft": "/etc/passwd"}}), 400,
     "this server has none; leave draft out", "decoding.options.draft"),
    (CHAT, chat(decoding={"method": "contrastive-decoding", "options": {"amateur": "someone/model"}}), 400,
     "which the server's operator chooses", "decoding.options.amateur"),
    (CHAT, chat(decoding={"method": "draft-model", "options": {"draft_dtype": "fp16"}}), 400,
     "names a model or file", "decoding.options.draft_dtype"),
    (CHAT, chat(decoding={"method": "draft-model", "options": {"predictor": "head"}}), 400,
     "names a model or file", "decoding.options.predictor"),
    (CHAT, chat(decoding={"method": "beam", "options": {"num_beams": 1000}}), 400,
     "num_beams is 1000, over this server's limit of 8 (--max-beams)", "decoding.options.num_beams"),
    (CHAT, chat(decoding={"method": "superposed", "options": {"num_drafts": 64}}), 400, "(--max-drafts)",
     "decoding.options.num_drafts"),
    (CHAT, chat(decoding={"method": "token-recycling[k=100000]"}), 400, "k is 100000, over this server's limit "
     "of 32 (--max-k)", "decoding.options.k"),
    (CHAT, chat(decoding={"method": "token-recycling", "options": {"max_nodes": 5000}}), 400, "(--max-tree-nodes)",
     "decoding.options.max_nodes"),
    (CHAT, chat(decoding={"method": "mirostat", "drafter": "aded[max_nodes=4096]"}), 400, "(--max-tree-nodes)",
     "decoding.drafter.max_nodes"),
    (CHAT, chat(decoding={"method": "lookahead", "options": {"pool_size": 10**9}}), 400, "a fixed bound",
     "decoding.options.pool_size"),
    (CHAT, chat(decoding={"method": "self-spec", "options": {"exit_layer": 10**6}}), 400,
     "the bound on any integer option", "decoding.options.exit_layer"),
]


@pytest.fixture(scope="module")
def server():
    with serving(tiny_backend("llama"), "tiny", "prompt-lookup", max_tokens=64) as url:
        yield url


@pytest.mark.parametrize(("path", "body", "status", "words", "param"), CASES,
                         ids=[f"{i}-{case[3][:24]}" for i, case in enumerate(CASES)])
def test_bad_request_is_named_and_the_server_keeps_serving(server, path, body, status, words, param):
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(server + path, headers={"Content-Type": "application/json"}, timeout=30, **sent)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"], error
    assert error["param"] == param
    assert error["type"] in ("invalid_request_error", "not_found_error")
    assert httpx.post(server + CHAT, json=OK, timeout=30).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_only_json_bodies_are_read(server, content_type):
    """A web page can POST text/plain (or a form) to a local server without a CORS preflight."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(server + CHAT, content=json.dumps(OK).encode(), headers=headers, timeout=30)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]["message"]
    charset = httpx.post(server + CHAT, content=json.dumps(OK).encode(), timeout=30,
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 200, charset.text


def test_enough_cases():
    assert len(CASES) >= 15


def test_requests_use_the_operators_draft_model_and_no_other(tmp_path):
    from tiny import byte_tokenizer
    from tiny_pairs import noisy_copy

    draft = tmp_path / "draft"
    noisy_copy("llama").save_pretrained(draft)
    byte_tokenizer().save_pretrained(draft)
    with serving(tiny_backend("llama"), "tiny", "prompt-lookup", limits={"draft": str(draft)}) as url:
        def ask(options: dict) -> httpx.Response:
            return httpx.post(url + CHAT, json={**OK, "max_tokens": 48, "messages": [
                {"role": "user", "content": "abc abc abc abc abc abc"}],
                "decoding": {"method": "draft-model", "options": options}}, timeout=60)

        filled = ask({})  # the operator's --draft, filled in
        assert filled.status_code == 200, filled.text
        assert filled.json()["metrics"]["speculative_decoding"]["method"] == f"draft-model[draft={draft}]"
        assert ask({"draft": str(draft)}).status_code == 200  # naming the operator's own is fine
        other = ask({"draft": str(tmp_path / "elsewhere")})
        assert other.status_code == 400 and f"started with '{draft}'" in other.json()["error"]["message"]
