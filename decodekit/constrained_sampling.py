"""n samples of one prompt under one grammar: grammar-aligned (ASAp, aligned.py) or plain
constrained sampling.

    results = sample_constrained("Pick a number: ", model="smollm2-135m", n=50, regex=r"[0-9]{2}", seed=0)

With aligned=True the samples share one EFG trie: sample i is drawn with what samples 0..i-1
learned, so the later samples follow the model conditioned on the grammar ever more closely (the
first is plain constrained sampling). Each sample runs through Decoder's one decode loop.
"""

from __future__ import annotations

import dataclasses

from decodekit.api import Decoder, _decoder
from decodekit.backend import Backend
from decodekit.constraints.aligned import AlignedConstraint, ExpectedGrammaticality, check_aligned_sampling
from decodekit.errors import DecodekitError
from decodekit.grammar import Grammar
from decodekit.models.zoo import DEFAULT_MODEL
from decodekit.settings import DEFAULT_MAX_NEW_TOKENS, GenerationSettings, is_int
from decodekit.types import GenerationResult, GenerationStats


def sample_constrained(prompt: str | None = None, *, model: str | Backend | Decoder = DEFAULT_MODEL, n: int,
                       aligned: bool = True, response_format: dict | None = None, regex: str | None = None,
                       grammar: str | Grammar | None = None, temperature: float = 1.0,
                       max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, seed: int | None = None,
                       messages: list[dict] | None = None, prompt_ids: list[int] | None = None,
                       top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, typical_p: float = 1.0,
                       trie: ExpectedGrammaticality | None = None) -> list[GenerationResult]:
    """`n` samples of the prompt (`prompt`, `messages` or `prompt_ids`) under the grammar given by
    exactly one of `response_format`, `regex` or `grammar`.

    aligned=True: grammar-aligned sampling (ASAp), method "ar" and plain temperature sampling only
    (top_k/top_p/min_p/typical_p off); grammar-forced tokens cost a forward each. Pass `trie` (an
    ExpectedGrammaticality) to keep learning across calls, or to inspect what was learned; it
    must only ever see this prompt, grammar, model and temperature.
    aligned=False: independent constrained samples with the Decoder's own method and settings.
    Sample i uses seed `seed + i` when `seed` is given (a fresh random seed each otherwise).
    """
    if not is_int(n) or n < 1:
        raise DecodekitError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(aligned, bool):
        raise DecodekitError(f"aligned must be True or False, got {aligned!r}")
    settings = GenerationSettings.from_options(dict(
        response_format=response_format, regex=regex, grammar=grammar, temperature=temperature,
        max_new_tokens=max_new_tokens, seed=seed, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p))
    if settings.grammar is None:
        raise DecodekitError("sample_constrained needs a constraint: pass response_format= (a JSON schema), regex= "
                             "or grammar=")
    if aligned:
        check_aligned_sampling(settings.sampling)
        if trie is not None and not isinstance(trie, ExpectedGrammaticality):
            raise DecodekitError(f"trie must be an ExpectedGrammaticality, got {type(trie).__name__}")
    elif trie is not None:
        raise DecodekitError("trie= is for aligned sampling: plain constrained samples learn nothing")
    decoder = _resolve_decoder(model)
    if aligned and decoder.method != "ar":
        raise DecodekitError(f"aligned sampling decodes one token at a time: it needs method 'ar', this Decoder uses "
                             f"{decoder.method!r} (pass aligned=False for plain constrained sampling with it)")
    ids = decoder._resolve_ids(prompt, messages, prompt_ids)
    trie = trie if trie is not None else ExpectedGrammaticality()
    results = []
    for i in range(n):
        run = dataclasses.replace(settings, seed=None if seed is None else seed + i)
        stats, token_ids = GenerationStats(), list[int]()
        constraint = None
        if aligned:
            grammar_state = decoder.constraint(settings.grammar)
            assert grammar_state is not None  # settings.grammar is set
            constraint = AlignedConstraint(grammar_state, trie, settings.sampling)
        try:
            text = "".join(chunk.text for chunk in decoder._chunks(ids, run, stats, token_ids, constraint))
        finally:
            if constraint is not None:
                constraint.finish()
        results.append(GenerationResult(text=text, token_ids=token_ids, prompt_ids=ids, stats=stats))
    return results


def _resolve_decoder(model: str | Backend | Decoder) -> Decoder:
    if isinstance(model, Decoder):
        return model
    if isinstance(model, str):
        return _decoder(model, "ar", "hf", "fp32", {})  # loaded once per process, like generate()'s
    return Decoder(model, "ar")
