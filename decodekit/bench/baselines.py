"""What a user would pick instead of decodekit, run on the same model object and prompts.

Each runner turns prompt ids into a TurnResult. The Hugging Face ones call `generate()` on the
very model decodekit drives, with the same EOS tokens, so speed ratios compare decoding loops
and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from decodekit.bench.records import TurnResult
from decodekit.errors import DecodekitError
from decodekit.models.hf import HFBackend
from decodekit.models.hf.baseline import hf_generate
from decodekit.sampling import SamplingConfig

TurnRunner = Callable[[list[int]], TurnResult]

HF_BASELINES = {
    "hf-greedy": "transformers generate(), plain decoding",
    "hf-prompt-lookup": "transformers generate(prompt_lookup_num_tokens=10)",
    "hf-assisted": "transformers generate(assistant_model=DRAFT)",
}


def hf_runner(name: str, backend: HFBackend, max_new_tokens: int, sampling: SamplingConfig,
              seed: int, draft: HFBackend | None = None) -> TurnRunner:
    if name not in HF_BASELINES:
        raise DecodekitError(f"unknown baseline '{name}': choose one of {', '.join(HF_BASELINES)}")
    if name == "hf-assisted" and draft is None:
        raise DecodekitError("hf-assisted needs a draft model: pass --draft NAME")
    lookup = 10 if name == "hf-prompt-lookup" else None
    assistant = draft if name == "hf-assisted" else None

    def run(prompt_ids: list[int]) -> TurnResult:
        start = time.perf_counter()
        ids = hf_generate(backend, prompt_ids, max_new_tokens, sampling, seed, lookup, assistant)
        backend.synchronize()
        wall = time.perf_counter() - start
        return TurnResult(prompt_tokens=len(prompt_ids), new_tokens=len(ids), wall_s=wall, token_ids=ids,
                          text=backend.decode(ids))

    return run
