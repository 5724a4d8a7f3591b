"""A bounded load test for a running server, on loopback: concurrent clients, mixed streaming
and plain requests, some clients hanging up mid-stream, and a burst that overflows the queue.

Every answer that completes must equal the same request's answer when it ran alone (greedy:
same text), and no request may get a 5xx. `benchmarks/serve_load.py` runs it on a real model
and reports requests/s, latency percentiles and time to first token.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    status: int
    streamed: bool
    left_early: bool = False
    text: str = ""
    expected: str = ""
    latency_s: float = 0.0
    first_token_s: float | None = None


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def statuses(self) -> Counter:
        return Counter(o.status for o in self.outcomes)

    @property
    def completed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200 and not o.left_early]

    @property
    def mismatches(self) -> list[Outcome]:
        return [o for o in self.completed if o.text != o.expected]

    def percentile(self, values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]

    def summary(self) -> dict:
        latencies = [o.latency_s for o in self.completed]
        firsts = [o.first_token_s for o in self.completed if o.first_token_s is not None]
        return {
            "requests": len(self.outcomes), "completed": len(self.completed),
            "left_early": sum(o.left_early for o in self.outcomes), "statuses": dict(self.statuses),
            "mismatches": len(self.mismatches), "wall_s": round(self.wall_s, 2),
            "requests_per_s": round(len(self.completed) / self.wall_s, 3) if self.wall_s else 0.0,
            "latency_p50_s": round(self.percentile(latencies, 50), 3) if latencies else None,
            "latency_p95_s": round(self.percentile(latencies, 95), 3) if latencies else None,
            "first_token_p50_s": round(self.percentile(firsts, 50), 3) if firsts else None,
            "first_token_p95_s": round(self.percentile(firsts, 95), 3) if firsts else None,
        }


def single_answers(url: str, bodies: list[dict], headers: dict | None = None) -> list[str]:
    """Each request's answer when it runs alone: what the load test compares against."""
    answers = []
    for body in bodies:
        response = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, headers=headers,
                              timeout=600)
        response.raise_for_status()
        answers.append(response.json()["choices"][0]["message"]["content"])
    return answers


def run_load(url: str, bodies: list[dict], expected: list[str], clients: int = 8, per_client: int = 10,
             hang_up_every: int = 7, headers: dict | None = None, progress=None) -> LoadReport:
    """`clients` threads each send `per_client` requests, back to back. Request i of client c uses
    body (c + i) % len(bodies), streams when c + i is even, and every `hang_up_every`-th streaming
    request hangs up after its first two text chunks. A 429 is retried after its Retry-After."""
    report = LoadReport()
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(timeout=600, headers=headers) as session:
            for i in range(per_client):
                k = (c + i) % len(bodies)
                stream = (c + i) % 2 == 0
                hang_up = stream and (c * per_client + i) % hang_up_every == 3
                while True:
                    outcome = _send(session, url, bodies[k], stream, hang_up)
                    outcome.expected = expected[k]
                    with lock:
                        report.outcomes.append(outcome)
                    if progress is not None:
                        progress()
                    if outcome.status != 429:
                        break
                    time.sleep(outcome.latency_s)  # _send put Retry-After here

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    report.wall_s = time.perf_counter() - start
    return report


def burst(url: str, body: dict, count: int, headers: dict | None = None) -> Counter:
    """`count` requests at the same moment: with more than the queue holds, some must get 429."""
    barrier = threading.Barrier(count)

    def one(_: int) -> int:
        with httpx.Client(timeout=600, headers=headers) as session:
            barrier.wait()
            return session.post(f"{url}/v1/chat/completions", json=body).status_code

    with ThreadPoolExecutor(count) as pool:
        return Counter(pool.map(one, range(count)))


def _send(session: httpx.Client, url: str, body: dict, stream: bool, hang_up: bool) -> Outcome:
    start = time.perf_counter()
    if not stream:
        response = session.post(f"{url}/v1/chat/completions", json={**body, "stream": False})
        outcome = Outcome(response.status_code, False, latency_s=time.perf_counter() - start)
        if response.status_code == 200:
            outcome.text = response.json()["choices"][0]["message"]["content"]
        elif response.status_code == 429:
            outcome.latency_s = float(response.headers.get("Retry-After", "1"))
        return outcome
    outcome = Outcome(0, True)
    texts = 0
    with session.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            response.read()
            outcome.latency_s = float(response.headers.get("Retry-After", "1")) if response.status_code == 429 else 0
            return outcome
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                outcome.status = chunk["error"]["code"]
                break
            content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if content:
                if outcome.first_token_s is None:
                    outcome.first_token_s = time.perf_counter() - start
                outcome.text += content
                texts += 1
                if hang_up and texts == 2:
                    outcome.left_early = True
                    break
    outcome.latency_s = time.perf_counter() - start
    return outcome
