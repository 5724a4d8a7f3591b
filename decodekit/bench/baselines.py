"""What a user would pick instead of decodekit, run on the same model and prompts.

Each runner turns prompt ids into a TurnResult. The Hugging Face ones call `generate()` on the
very model decodekit drives, with the same EOS tokens; the llama.cpp ones run llama-cpp-python's
own `Llama.generate` on the same GGUF with the same threads. So speed ratios compare decoding
loops and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from decodekit.backend import Backend
from decodekit.bench.records import TurnResult
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig

TurnRunner = Callable[[list[int]], TurnResult]

HF_BASELINES = {
    "hf-greedy": "transformers generate(), plain decoding",
    "hf-prompt-lookup": "transformers generate(prompt_lookup_num_tokens=10)",
    "hf-assisted": "transformers generate(assistant_model=DRAFT)",
}
LLAMA_BASELINES = {
    "llama-greedy": "llama-cpp-python Llama.generate(), plain decoding",
    "llama-prompt-lookup": "llama-cpp-python Llama.generate() with LlamaPromptLookupDecoding(10)",
}
BASELINES = {**HF_BASELINES, **LLAMA_BASELINES}


def baseline_backend(name: str) -> str:
    """The backend kind a baseline runs on: "hf" or "llama.cpp"."""
    return "hf" if name in HF_BASELINES else "llama.cpp"


def check_baseline(name: str, backend_kind: str) -> None:
    """A baseline runs on its own library's model: hf-* on transformers, llama-* on llama.cpp."""
    if name not in BASELINES:
        raise DecodekitError(f"unknown baseline '{name}': choose one of {', '.join(BASELINES)}")
    if baseline_backend(name) != backend_kind:
        same = [b for b in BASELINES if baseline_backend(b) == backend_kind]
        raise DecodekitError(f"baseline '{name}' runs on the {baseline_backend(name)} backend, and this benchmark "
                             f"runs on {backend_kind}: use {', '.join(same)}")


def baseline_runner(name: str, backend: Backend, max_new_tokens: int, sampling: SamplingConfig, seed: int,
                    draft: Backend | None = None) -> TurnRunner:
    check_baseline(name, getattr(backend, "kind", "hf"))
    if name in HF_BASELINES:
        return _hf_runner(name, backend, max_new_tokens, sampling, seed, draft)
    return _llama_runner(name, backend, max_new_tokens, sampling, seed)


# generate(prompt_ids, on_first_token) -> new token ids; it calls on_first_token() once, as soon
# as the first new token exists, so the prefill can be timed apart from the decoding.
Generate = Callable[[list[int], Callable[[], None]], list[int]]


def _timed(backend: Backend, generate: Generate) -> TurnRunner:
    def run(prompt_ids: list[int]) -> TurnResult:
        first: list[float] = []
        start = time.perf_counter()
        ids = generate(prompt_ids, lambda: first.append(time.perf_counter()))
        backend.synchronize()
        wall = time.perf_counter() - start
        # Both libraries' first step commits one token (their prompt lookup drafts from step 2).
        prefill = first[0] - start if first and ids else None
        return TurnResult(prompt_tokens=len(prompt_ids), new_tokens=len(ids), wall_s=wall, token_ids=ids,
                          text=backend.decode(ids), prefill_s=prefill, prefill_tokens=1 if prefill is not None else None)

    return run


def _hf_runner(name: str, backend, max_new_tokens: int, sampling: SamplingConfig, seed: int,
               draft) -> TurnRunner:
    from decodekit.models.hf.baseline import hf_generate

    if name == "hf-assisted" and draft is None:
        raise DecodekitError("hf-assisted needs a draft model: pass --draft NAME")
    lookup = 10 if name == "hf-prompt-lookup" else None
    assistant = draft if name == "hf-assisted" else None
    return _timed(backend, lambda ids, on_first: hf_generate(backend, ids, max_new_tokens, sampling, seed, lookup,
                                                             assistant, on_first))


def _llama_runner(name: str, backend, max_new_tokens: int, sampling: SamplingConfig, seed: int) -> TurnRunner:
    from decodekit.models.llamacpp.baseline import LOOKUP_TOKENS, LlamaCppOwn

    own = LlamaCppOwn(backend, lookup=LOOKUP_TOKENS if name == "llama-prompt-lookup" else None)
    return _timed(backend, lambda ids, on_first: own.generate(ids, max_new_tokens, sampling, seed, on_first))
