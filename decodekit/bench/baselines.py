"""What a user would pick instead of decodekit, run on the same model object and prompts.

Each runner turns prompt ids into a TurnResult. The Hugging Face ones call `generate()` on the
very model decodekit drives, with the same EOS tokens, so speed ratios compare decoding loops
and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from decodekit.bench.records import TurnResult
from decodekit.errors import DecodekitError
from decodekit.models.hf import HFBackend

TurnRunner = Callable[[list[int]], TurnResult]

HF_BASELINES = {
    "hf-greedy": "transformers generate(), plain decoding",
    "hf-prompt-lookup": "transformers generate(prompt_lookup_num_tokens=10)",
    "hf-assisted": "transformers generate(assistant_model=DRAFT)",
}


def hf_runner(name: str, backend: HFBackend, max_new_tokens: int, temperature: float,
              seed: int, draft: HFBackend | None = None) -> TurnRunner:
    if name not in HF_BASELINES:
        raise DecodekitError(f"unknown baseline '{name}': choose one of {', '.join(HF_BASELINES)}")
    options: dict = {}
    if name == "hf-prompt-lookup":
        options["prompt_lookup_num_tokens"] = 10
    if name == "hf-assisted":
        if draft is None:
            raise DecodekitError("hf-assisted needs a draft model: pass --draft NAME")
        options["assistant_model"] = draft.model
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    eos = sorted(backend.eos_token_ids)
    pad = eos[0] if eos else 0

    def run(prompt_ids: list[int]) -> TurnResult:
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.inference_mode():
            out = backend.model.generate(
                torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, eos_token_id=eos,
                pad_token_id=pad, **sampling, **options,
            )
        wall = time.perf_counter() - start
        ids = out[0, len(prompt_ids) :].tolist()
        return TurnResult(prompt_tokens=len(prompt_ids), new_tokens=len(ids), wall_s=wall, token_ids=ids,
                          text=backend.tokenizer.decode(ids, skip_special_tokens=True))

    return run
