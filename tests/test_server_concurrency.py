"""One model, a bounded FIFO queue: 429 when full, a departed client frees the worker at once,
a per-request time limit, and a graceful stop on SIGTERM."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving import SlowBackend, free_port, serving
from tiny import tiny_backend

DELAY = 0.05  # seconds added to every forward: a 64-token answer takes over 3 s
LONG = {"model": "tiny", "prompt": "abc abc abc", "max_tokens": 64, "decoding": {"method": "ar"}}


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def read_stream(url: str, body: dict, chunks: int | None = None) -> list[str]:
    """The first `chunks` data lines of a stream (all of them if None); leaving early closes the connection."""
    lines = []
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
                if chunks is not None and len(lines) >= chunks:
                    break
    return lines


@pytest.fixture
def slow():
    return SlowBackend(tiny_backend("llama"), DELAY)


def test_a_full_queue_answers_429_with_retry_after(slow):
    with serving(slow, max_queue=1, max_tokens=64) as url:
        threads = [threading.Thread(target=lambda: read_stream(url, LONG)),
                   threading.Thread(target=lambda: httpx.post(f"{url}/v1/completions", json=LONG, timeout=60))]
        threads[0].start()
        wait_for(lambda: metric(url, "decodekit_requests_running") == 1, "the first request to run")
        threads[1].start()
        wait_for(lambda: httpx.get(f"{url}/health").json()["queue_depth"] == 1, "the second request to wait")
        refused = httpx.post(f"{url}/v1/completions", json=LONG, timeout=60)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
        for thread in threads:
            thread.join(60)
        assert httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 2}, timeout=60).status_code == 200


def test_a_client_that_leaves_mid_stream_frees_the_worker(slow):
    with serving(slow, max_tokens=64) as url:
        read_stream(url, LONG, chunks=4)  # role-less completions stream: 4 text chunks, then hang up
        wait_for(lambda: metric(url, "decodekit_requests_cancelled_total") == 1, "the generation to be cancelled")
        wait_for(lambda: metric(url, "decodekit_requests_running") == 0, "the worker to be free")
        # It stopped within a step or two of the hang-up, far short of the 64 tokens asked for.
        assert slow.forwards <= 4 + 3
        assert metric(url, "decodekit_generated_tokens_total") == 0  # a cancelled generation records nothing
        follow = httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 3}, timeout=60).json()
        assert follow["usage"]["completion_tokens"] == 3


def test_a_client_that_leaves_a_plain_request_frees_the_worker(slow):
    with serving(slow, max_tokens=64) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json=LONG, timeout=httpx.Timeout(60, read=0.5))
        wait_for(lambda: metric(url, "decodekit_requests_cancelled_total") == 1, "the generation to be cancelled")
        wait_for(lambda: metric(url, "decodekit_requests_running") == 0, "the worker to be free")
        assert slow.forwards < 64 // 2


def test_a_request_that_waits_and_leaves_is_never_run(slow):
    with serving(slow, max_tokens=64) as url:
        first = threading.Thread(target=lambda: read_stream(url, {**LONG, "max_tokens": 30}))
        first.start()
        wait_for(lambda: metric(url, "decodekit_requests_running") == 1, "the first request to run")
        with pytest.raises(httpx.ReadTimeout):  # queued behind the first, then gone
            httpx.post(f"{url}/v1/completions", json=LONG, timeout=httpx.Timeout(60, read=0.3))
        first.join(60)
        wait_for(lambda: metric(url, "decodekit_requests_running") == 0, "the worker to be free")
        assert slow.forwards == 30  # the first request's steps only


def test_the_time_limit(slow):
    with serving(slow, max_tokens=64, timeout_s=0.5) as url:
        plain = httpx.post(f"{url}/v1/completions", json=LONG, timeout=60)
        assert plain.status_code == 504 and "--timeout" in plain.json()["error"]["message"]
        events = read_stream(url, LONG)
        assert "time limit" in json.loads(events[-1])["error"]["message"]
        assert slow.forwards < 64  # both stopped early


def test_the_time_limit_holds_for_a_request_still_in_the_queue_and_stops_a_search_midway(slow):
    with serving(slow, max_tokens=64, timeout_s=1.0) as url:
        # A search yields only at its end; the worker stops it between its steps instead.
        search = {**LONG, "max_tokens": 60, "decoding": {"method": "beam", "options": {"num_beams": 2}}}
        answers = []
        first = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/v1/completions", json=search,
                                                                          timeout=60)))
        first.start()
        wait_for(lambda: metric(url, "decodekit_requests_running") == 1, "the search to run")
        queued = httpx.post(f"{url}/v1/completions", json=LONG, timeout=60)
        assert queued.status_code == 504
        first.join(60)
        assert answers[0].status_code == 504 and "--timeout" in answers[0].json()["error"]["message"]
        assert metric(url, "decodekit_requests_running") == 0


def test_sigterm_finishes_the_request_in_flight_then_exits():
    port = free_port()
    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    server = subprocess.Popen([sys.executable, str(root / "tests" / "serve_tiny.py"), str(port), str(DELAY)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), "the server to start", timeout=120)
        lines: list[str] = []
        with httpx.stream("POST", f"{url}/v1/completions", timeout=60,
                          json={"prompt": "abc abc", "max_tokens": 40, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
                    if len(lines) == 2:
                        server.send_signal(signal.SIGTERM)
        assert lines[-1] == "[DONE]"  # the request in flight ran to its end
        completion = json.loads(lines[-2])
        assert completion["metrics"]["speculative_decoding"]["num_spec_steps"] == 40
        # uvicorn shuts down cleanly, then re-raises the signal, so the exit status says SIGTERM.
        assert server.wait(60) in (0, -signal.SIGTERM)
        assert b"Traceback" not in server.stdout.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


def test_serve_listens_on_loopback_by_default():
    from decodekit.cli.serve import serve

    assert inspect.signature(serve).parameters["host"].default.default == "127.0.0.1"
