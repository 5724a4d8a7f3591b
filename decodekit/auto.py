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

from dataclasses import dataclass, field
from statistics import mean

from decodekit.errors import DecodekitError

CANDIDATES = ["ar", "prompt-lookup", "copy-spec", "token-recycling", "copy-spec+token-recycling"]


@dataclass
class AutoChoice:
    method: str
    tokens_per_s: dict[str, float] = field(default_factory=dict)  # candidate -> measured mean
    draft_per_step: float = 0.0  # the pick's mean drafted tokens per step: its budget in use
    tau: float = 1.0  # the pick's mean tokens committed per step on the sample
    drafter: object = None  # the pick's drafter, with what it learned on the sample

    def describe(self) -> str:
        ranked = sorted(self.tokens_per_s.items(), key=lambda kv: -kv[1])
        budget = f" (drafting {self.draft_per_step:.1f} tokens/step, tau {self.tau:.2f})" if self.method != "ar" else ""
        return f"auto picked {self.method}{budget}: " + ", ".join(f"{m} {v:.1f} tok/s" for m, v in ranked)


def choose_method(backend, sample: list[list[int]], candidates: list[str] | None = None,
                  max_new_tokens: int = 48, sampling: dict | None = None) -> AutoChoice:
    """Decode every sample prompt (token ids) with every candidate; return the fastest."""
    from decodekit.api import Decoder

    candidates = candidates or CANDIDATES
    if not sample:
        raise DecodekitError("method='auto' needs at least one sample prompt to measure on")
    decoders = {m: Decoder(backend, m) for m in candidates}
    # One untimed round first: first calls pay for allocations and lazy initialisation.
    for decoder in decoders.values():
        decoder.generate(prompt_ids=sample[0], max_new_tokens=8, **(sampling or {}))
    speeds: dict[str, list[float]] = {m: [] for m in candidates}
    totals = {m: [0, 0, 0] for m in candidates}  # new tokens, steps, drafted tokens
    for ids in sample:
        for method, decoder in decoders.items():
            stats = decoder.generate(prompt_ids=ids, max_new_tokens=max_new_tokens, **(sampling or {})).stats
            speeds[method].append(stats.tokens_per_s)
            for i, value in enumerate((stats.new_tokens, stats.steps, stats.drafted_tokens)):
                totals[method][i] += value
    measured = {m: mean(v) for m, v in speeds.items()}
    best = max(measured, key=measured.get)
    new_tokens, steps, drafted = totals[best]
    return AutoChoice(best, measured, draft_per_step=drafted / max(steps, 1), tau=new_tokens / max(steps, 1),
                      drafter=decoders[best].drafter)
