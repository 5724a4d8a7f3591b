"""The model forms a benchmark ran on (the loaded model and each `NAME@VARIANT` row's copy),
and what each costs in quality: a form that decodes faster is only a better choice if its
output is as good, so the report puts every form's perplexity on one fixed text beside it.

The fixed text is the copy-heavy set's ten rewriting texts (CPython module docstrings, about
3,700 tokens), shipped with the package; each is scored in one forward.
"""

from __future__ import annotations

import math

from decodekit.backend import Backend
from decodekit.bench.dataset import COPY_HEAVY, load_questions
from decodekit.scoring import continuation_nll

# llama.cpp weight types that hold 8 bits or more per weight: re-quantising a 4- or 5-bit file
# to one of them keeps its rounding (nothing is rounded again), so its quality is the file's.
WIDE_TYPES = {"Q8_0", "F16", "BF16", "F32"}


def fixed_texts() -> list[str]:
    """The rewriting questions' texts, without their one-line instruction."""
    return [q.turns[0].split("\n\n", 1)[1] for q in load_questions(COPY_HEAVY, categories=["rewriting"])]


def perplexity(backend: Backend) -> float:
    """exp(mean negative log-likelihood per token) of the fixed texts, each from its first token."""
    nll, tokens = 0.0, 0
    for text in fixed_texts():
        ids = backend.encode(text)[: backend.context_length]  # a small test model's context holds less
        nll += continuation_nll(backend, ids[:1], ids[1:])
        tokens += len(ids) - 1
    return math.exp(nll / tokens)


def quality_class(weight_type: str, source_type: str) -> str:
    """What a form is, in a few words, for the report.

    >>> quality_class("Q8_0", "Q4_1")
    "re-quantised from Q4_1 to 8+ bits: keeps the file's rounding"
    >>> quality_class("Q4_0", "Q4_1")
    'Q4_1 rounded again to Q4_0: lower quality'
    """
    if weight_type == source_type:
        return "the file's own weights"
    if weight_type in WIDE_TYPES:
        return f"re-quantised from {source_type} to 8+ bits: keeps the file's rounding"
    return f"{source_type} rounded again to {weight_type}: lower quality"


def describe_forms(backend: Backend, variants: dict[str, Backend]) -> list[dict]:
    """One entry per form the rows ran on: its name, the backend's identity, the perplexity of
    the fixed texts and its quality class. On llama.cpp the variants are re-quantised from the
    loaded file (models/llamacpp/quantize.py), whose weight type is the reference."""
    source = getattr(backend, "weight_type", None)
    entries = []
    for name, model in [("(as loaded)", backend), *variants.items()]:
        kind = getattr(model, "weight_type", None)
        if source and kind:
            quality = quality_class(kind, source)
        else:
            quality = "the loaded model" if model is backend else f"the model in {name}"
        entries.append({"form": name, "identity": model.identity, "perplexity": perplexity(model),
                        "quality": quality})
    return entries
