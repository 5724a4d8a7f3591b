"""The load test on the tiny model: 8 clients x 10 requests, mixed streaming and plain, some
hanging up mid-stream; then a burst that overflows the queue. No 5xx, every completed answer
equal to its answer alone, 429s for the overflow, and nothing left behind afterwards."""

from __future__ import annotations

import gc

import psutil
from serving import serving
from tiny import tiny_backend

from decodekit.server.engine import Job
from decodekit.server.loadtest import burst, run_load, single_answers

PROMPTS = ["abc abc abc abc abc", "the cat sat on the mat, the cat", "1 2 3 4 5 6 7 8", "hello", "xyz xyz"]
BODIES = [{"model": "tiny", "messages": [{"role": "user", "content": p}], "max_tokens": 24, "temperature": 0}
          for p in PROMPTS]


def test_load_then_burst():
    process = psutil.Process()
    with serving(tiny_backend("llama"), "tiny", "prompt-lookup", max_queue=8, max_tokens=64) as url:
        expected = single_answers(url, BODIES)
        run_load(url, BODIES, expected, clients=8, per_client=2)  # warm up before the baseline
        gc.collect()
        baseline = process.memory_info().rss
        report = run_load(url, BODIES, expected, clients=8, per_client=10)
        summary = report.summary()
        print(summary)
        assert not [o for o in report.outcomes if o.status >= 500], summary
        assert report.mismatches == [], summary
        assert summary["left_early"] >= 5
        assert len(report.completed) + summary["left_early"] == 80
        statuses = burst(url, BODIES[0], count=20)
        assert statuses[429] >= 1 and set(statuses) <= {200, 429}, statuses
        gc.collect()
        assert [o for o in gc.get_objects() if type(o) is Job] == []  # every request's job let go
        # Memory back to baseline: within 64 MiB (allocator noise), not growing with requests.
        assert process.memory_info().rss - baseline < 64 * 2**20
