"""Measure a backend's forward cost by number of input tokens, once per model and machine.

Draft budgets need cost(n) / cost(1). Decoding refines the curve online, but a first prompt
would otherwise start from a prior measured on another machine; so the curve is measured once
(forwards of 1..64 tokens on a cache of typical length, median of several runs) and cached
under $DECODEKIT_HOME/latency/, keyed by the backend's identity (model, dtype, device,
threads) and the CPU.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

from decodekit.backend import Backend
from decodekit.budget import LatencyCurve
from decodekit.machine import cpu_model
from decodekit.paths import home
from decodekit.types import Draft

SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def timed_forward(backend: Backend, pending: list[int], draft: Draft, cache) -> float:
    """Seconds for one forward, device work included (a GPU forward returns at launch)."""
    backend.synchronize()
    start = time.perf_counter()
    backend.forward(pending, draft, cache)
    backend.synchronize()
    return time.perf_counter() - start


def measure_curve(backend: Backend, context: int = 512, repeats: int = 5, sizes=SIZES) -> dict[int, float]:
    """Relative forward cost {n: median time(n) / median time(1)} on a `context`-token cache."""
    context = max(1, min(context, backend.context_length - max(sizes) - 1))
    cache = backend.new_cache()
    filler = [(i * 7919) % backend.vocab_size for i in range(context)]
    backend.forward(filler, Draft.empty(), cache)
    seconds = {}
    for n in sizes:
        times = []
        for _ in range(repeats + 1):  # the first run of each size warms up
            times.append(timed_forward(backend, [filler[-1]], Draft(tokens=filler[: n - 1]), cache))
            cache.crop(context)
        seconds[n] = statistics.median(times[1:])
    return monotone({n: s / seconds[1] for n, s in seconds.items()})


def monotone(points: dict[int, float]) -> dict[int, float]:
    """More tokens never cost less: a dip is noise (another process took the cores while the
    smaller size ran), so carry the running maximum forward.

    >>> monotone({1: 1.0, 2: 1.3, 4: 0.2, 8: 1.8})
    {1: 1.0, 2: 1.3, 4: 1.3, 8: 1.8}
    """
    result, highest = {}, 0.0
    for n in sorted(points):
        highest = max(highest, points[n])
        result[n] = highest
    return result


def cache_key(backend: Backend) -> str:
    raw = f"{backend.identity}|{cpu_model()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def curve_path(backend: Backend) -> Path:
    return home() / "latency" / f"{cache_key(backend)}.json"


def load_or_measure(backend: Backend, measure_if_missing: bool = True) -> LatencyCurve:
    """The cached curve for this model and machine; measured and cached when missing."""
    path = curve_path(backend)
    if path.is_file():
        try:
            points = {int(k): float(v) for k, v in json.loads(path.read_text())["relative_cost"].items()}
            return LatencyCurve(prior=points)
        except (ValueError, KeyError, json.JSONDecodeError):
            path.unlink(missing_ok=True)  # a damaged cache entry is measured again
    if not measure_if_missing:
        return LatencyCurve()
    points = measure_curve(backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": backend.identity, "relative_cost": points}, indent=1))
    return LatencyCurve(prior=points)
