"""method="auto": measure the candidates on a sample of the workload, keep the fastest.

Which drafter pays depends on the model, the machine (a CPU's forward cost grows with the
number of tokens, a GPU's barely does) and the text (copy-heavy tasks favour copying). So
rather than guess, each candidate decodes the sample prompts once and the one with the best
mean tokens/s wins. The budget (how many tokens each step drafts) is sized inside each method
from this machine's measured cost curve and the acceptance it learned on the sample
(budget.py); the winner is handed over with that learned state, so decoding starts from the
budget that was measured, not from priors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from statistics import mean

from decodekit.backend import Backend
from decodekit.drafters import make_drafter
from decodekit.drafters.base import Drafter
from decodekit.errors import DecodekitError
from decodekit.loop import decode
from decodekit.sampling import SamplingConfig
from decodekit.types import GenerationStats
from decodekit.verify import SeededRandomness

CANDIDATES = ["ar", "prompt-lookup", "copy-spec", "token-recycling", "copy-spec+token-recycling"]


@dataclass
class AutoChoice:
    method: str
    drafter: Drafter  # the pick's drafter, with what it learned on the sample
    tokens_per_s: dict[str, float] = field(default_factory=dict)  # candidate -> measured mean
    draft_per_step: float = 0.0  # the pick's mean drafted tokens per step: its budget in use
    tau: float = 1.0  # the pick's mean tokens committed per step on the sample

    def describe(self) -> str:
        ranked = sorted(self.tokens_per_s.items(), key=lambda kv: -kv[1])
        budget = f" (drafting {self.draft_per_step:.1f} tokens/step, tau {self.tau:.2f})" if self.method != "ar" else ""
        return f"auto picked {self.method}{budget}: " + ", ".join(f"{m} {v:.1f} tok/s" for m, v in ranked)


def run_once(backend: Backend, drafter: Drafter, prompt_ids: list[int], max_new_tokens: int,
             sampling: SamplingConfig, seed: int = 0) -> GenerationStats:
    """Decode one prompt to the end; only the stats are kept."""
    stats = GenerationStats(prompt_tokens=len(prompt_ids))
    start = time.perf_counter()
    for step in decode(backend, prompt_ids, drafter, sampling, SeededRandomness(seed), max_new_tokens):
        stats.add(step)
    stats.wall_s = time.perf_counter() - start
    return stats


def choose_method(backend: Backend, sample: list[list[int]], candidates: list[str] | None = None,
                  max_new_tokens: int = 48, sampling: SamplingConfig | None = None) -> AutoChoice:
    """Decode every sample prompt (token ids) with every candidate; return the fastest."""
    candidates = candidates or CANDIDATES
    sampling = sampling or SamplingConfig()
    if not sample:
        raise DecodekitError("method='auto' needs at least one sample prompt to measure on")
    drafters = {m: make_drafter(m) for m in candidates}
    # One untimed round first: first calls pay for allocations and lazy initialisation.
    for drafter in drafters.values():
        run_once(backend, drafter, sample[0], 8, sampling)
    speeds: dict[str, list[float]] = {m: [] for m in candidates}
    totals = {m: GenerationStats() for m in candidates}
    for ids in sample:
        for method, drafter in drafters.items():
            stats = run_once(backend, drafter, ids, max_new_tokens, sampling)
            speeds[method].append(stats.tokens_per_s)
            totals[method].new_tokens += stats.new_tokens
            totals[method].steps += stats.steps
            totals[method].drafted_tokens += stats.drafted_tokens
    measured = {m: mean(v) for m, v in speeds.items()}
    best = max(measured, key=lambda m: measured[m])
    total = totals[best]
    return AutoChoice(best, drafters[best], measured, draft_per_step=total.drafted_tokens / max(total.steps, 1),
                      tau=total.tau or 1.0)
