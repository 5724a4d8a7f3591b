"""method="auto": measure the candidates on a sample of the workload, keep the fastest.

Which drafter pays depends on the model, the machine (a CPU's forward cost grows with the
number of tokens, a GPU's barely does) and the text (copy-heavy tasks favour copying). So
rather than guess, each candidate decodes the sample prompts once and the one with the best
mean tokens/s wins; draft lengths inside each method adapt by themselves (budget.py).
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

    def describe(self) -> str:
        ranked = sorted(self.tokens_per_s.items(), key=lambda kv: -kv[1])
        return f"auto picked {self.method}: " + ", ".join(f"{m} {v:.1f} tok/s" for m, v in ranked)


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
    for ids in sample:
        for method, decoder in decoders.items():
            result = decoder.generate(prompt_ids=ids, max_new_tokens=max_new_tokens, **(sampling or {}))
            speeds[method].append(result.stats.tokens_per_s)
    measured = {m: mean(v) for m, v in speeds.items()}
    return AutoChoice(max(measured, key=measured.get), measured)
