"""Hugging Face `generate()` on the very model object a backend drives: the baselines the
benchmark compares decodekit with (plain greedy, its prompt lookup, its assisted decoding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from decodekit.models.hf.backend import HFBackend
from decodekit.sampling import SamplingConfig


class _FirstToken(BaseStreamer):
    """Calls `callback` when generate() hands over its first new tokens (its first put() is the
    prompt itself)."""

    def __init__(self, callback: Callable[[], None]):
        self.callback, self.puts = callback, 0

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:
            self.callback()

    def end(self) -> None:
        pass


def hf_generate(backend: HFBackend, prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig,
                seed: int, prompt_lookup_tokens: int | None = None, assistant: HFBackend | None = None,
                on_first_token: Callable[[], None] | None = None) -> list[int]:
    """The new token ids `generate()` produces, with the backend's EOS tokens and no other
    generation-config extras (so greedy means plain argmax decoding). `on_first_token` is
    called once the first new token exists (the benchmark times the prefill with it)."""
    options: dict = {}
    if on_first_token is not None:
        options["streamer"] = _FirstToken(on_first_token)
    if prompt_lookup_tokens:
        options["prompt_lookup_num_tokens"] = prompt_lookup_tokens
    if assistant is not None:
        options["assistant_model"] = assistant.model
    if sampling.greedy:
        options["do_sample"] = False
    else:
        options.update(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k,  # 0 turns top-k off here too
                       top_p=sampling.top_p, min_p=sampling.min_p or None, typical_p=sampling.typical_p,
                       epsilon_cutoff=sampling.epsilon_cutoff, eta_cutoff=sampling.eta_cutoff)
    eos = sorted(backend.eos_token_ids)
    torch.manual_seed(seed)
    model: Any = backend.model  # transformers types generate() through a decorator mypy cannot follow
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids], device=backend.device), max_new_tokens=max_new_tokens,
                                     eos_token_id=eos, pad_token_id=eos[0] if eos else 0, **options)
    return out[0, len(prompt_ids) :].tolist()
