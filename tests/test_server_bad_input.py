"""Bad requests get a 4xx with OpenAI's error body naming the problem, and the server keeps serving."""

from __future__ import annotations

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


def test_enough_cases():
    assert len(CASES) >= 15
