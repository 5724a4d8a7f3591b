"""Random bodies and headers against every endpoint: the server answers each with a status it
means (never a 5xx), and a good request still succeeds afterwards."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import serving
from tiny import tiny_backend

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
GETS = ["/", "/health", "/metrics", "/v1/models", "/decodekit/methods"]
OK = {"messages": [{"role": "user", "content": "abc abc"}], "max_tokens": 4}
METHODS = ["ar", "prompt-lookup", "copy-spec", "token-recycling", "aded", "lookahead", "beam", "superposed",
           "contrastive-search", "mirostat", "dola", "draft-model", "warp", "prompt-lookup[max_draft=3]", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
small_numbers = st.integers(-3, 80) | st.floats(-2, 3, allow_nan=False) | st.text(max_size=4) | st.none()
options = st.dictionaries(st.sampled_from(["max_draft", "k", "num_beams", "num_drafts", "tau", "max_nodes", "window",
                                           "draft", "temperature", "exit_layer", "zzz"]), small_numbers, max_size=3)
near_valid = st.fixed_dictionaries({}, optional={
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                                "content": st.text(max_size=30) | json_values}), max_size=3),
    "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 300), max_size=5) | json_values,
    "max_tokens": small_numbers, "temperature": small_numbers, "top_p": small_numbers, "top_k": small_numbers,
    "seed": small_numbers, "n": st.integers(-1, 20), "stream": st.booleans() | json_values,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}, {"type": "nope"}]) | json_values,
    "decoding": st.fixed_dictionaries({"method": st.sampled_from(METHODS)}, optional={"options": options}) | json_values,
    "model": st.sampled_from(["tiny", "other"]),
})
content_types = st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8",
                                 "multipart/form-data; boundary=x"])


@pytest.fixture(scope="module")
def server():
    with serving(tiny_backend("llama"), "tiny", "prompt-lookup", max_tokens=24, timeout_s=20) as url:
        yield url


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([CHAT, COMPLETIONS]), body=near_valid | json_values, content_type=content_types,
       raw=st.booleans(), junk=st.binary(max_size=40))
def test_random_posts_never_get_a_server_error(server, path, body, content_type, raw, junk):
    content = junk if raw else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(server + path, content=content, headers=headers, timeout=60)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(GETS), headers=st.dictionaries(st.sampled_from(["authorization", "accept", "x-y"]),
                                                         st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                                 max_size=20), max_size=3))
def test_random_gets_never_get_a_server_error(server, path, headers):
    assert httpx.get(server + path, headers=headers, timeout=30).status_code < 500


def test_a_good_request_succeeds_after_the_fuzzing(server):
    response = httpx.post(server + CHAT, json=OK, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None
