"""How far a verification forward's logits drift from one-token steps, per backend and form.

A batched forward (the verification of a draft) and one-token forwards compute the same
logits in different orders of floating-point work, and on llama.cpp with quantized weights
with activations quantized per batch. The lossless judge (bench/divergence.py) excuses a
divergence only within the drift actually measured for that backend and form, on what can flip
a greedy choice: the gaps between AR's top token and its runners-up, in logits. Not the whole
vocabulary, whose far tail drifts more and would excuse anything, and not single logits, whose
common shift cancels out of every gap (on SmolLM2 Q4_1 single top logits move by up to 0.8).

`measure_drift` decodes a few prompts greedily one token at a time, then runs the same tokens
again as one verification chain, and as a tree around the same path, on the same cache, and
compares the rows. The table the judge
reads (`bench/data/drift.json`) is written by `benchmarks/measure_drift.py`, which names the
models, the CPU and the command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import torch

from decodekit.backend import Backend
from decodekit.tree import ROOT
from decodekit.types import Draft

TOP_GAPS = 4  # the gaps that can flip a greedy choice: AR's top token against its next three
MARGIN = 1.5  # the judge's bound: half again the largest gap drift measured


@dataclass
class DriftMeasure:
    gap_drift: float  # largest change, in logits, of a gap between AR's top token and its next ones
    rows: int  # rows compared
    swapped: int  # rows whose top token differed between the two forwards


def gap_drift(one_token: torch.Tensor, batched: torch.Tensor, others: int = TOP_GAPS) -> float:
    """The largest change between two forwards of the gap from the one-token row's top token to
    each of its next `others` tokens. A shift common to all logits cancels: only what can flip
    the choice counts.

    >>> gap_drift(torch.tensor([4.0, 3.5, 1.0, -9.0]), torch.tensor([4.5, 3.75, 1.5, 2.0]), others=2)
    0.25
    """
    ids = torch.topk(one_token.float(), min(others + 1, one_token.numel())).indices
    a, b = one_token.float()[ids], batched.float()[ids]
    return round(float(((b[0] - b[1:]) - (a[0] - a[1:])).abs().max()), 9)


def measure_drift(backend: Backend, prompts: list[list[int]], length: int = 32) -> DriftMeasure:
    """Greedy one-token steps from each prompt, then the same tokens as one verification chain."""
    worst, rows, swapped = 0.0, 0, 0
    for ids in prompts:
        cache = backend.new_cache()
        row = backend.forward(ids, Draft.empty(), cache)[-1]
        tokens, one_token_rows = [], []
        for _ in range(length):
            tokens.append(int(row.argmax()))
            row = backend.forward([tokens[-1]], Draft.empty(), cache)[0]
            one_token_rows.append(row)  # after tokens[-1]
        # a chain, and a tree around the same path
        for draft in (Draft(tokens[2:]), _with_siblings(tokens[2:], backend.vocab_size)):
            cache.crop(len(ids) + 1)  # the prompt and the first token stay; the rest is verified at once
            logits = backend.forward([tokens[1]], draft, cache)  # row 0 after tokens[1], then one per node
            cache.crop(len(ids) + 1)  # a tree's branches are dropped before the next forward
            path = [0] + [1 + node for node, parent in enumerate(draft.parent_list()) if node % 2 == 0 or
                          draft.parents is None]
            for one, index in zip(one_token_rows[1:], path):
                worst = max(worst, gap_drift(one, logits[index]))
                rows += 1
                swapped += int(one.argmax() != logits[index].argmax())
    return DriftMeasure(worst, rows, swapped)


def _with_siblings(path: list[int], vocab_size: int) -> Draft:
    """`path` as a tree in which every node has a sibling leaf beside it (a different token), so
    the rows along the path are computed under a tree's attention mask, as tree drafters verify."""
    tokens, parents = [], []
    previous = ROOT
    for token in path:
        tokens += [token, (token + 1) % vocab_size]
        parents += [previous, previous]
        previous = len(tokens) - 2
    return Draft(tokens, parents=parents)


@cache
def drift_table() -> dict:
    return json.loads(resources.files("decodekit.bench").joinpath("data/drift.json").read_text("utf-8"))


def form_of(backend: Backend) -> tuple[str, str]:
    """(backend kind, form) as drift.json keys them: ('hf', 'bf16'), ('llama.cpp', 'Q4_1')."""
    kind = getattr(backend, "kind", "hf")
    return kind, (getattr(backend, "weight_type", None) or backend.dtype_name)


def measured_drift(kind: str, form: str) -> tuple[float, str]:
    """The gap drift measured for this backend and form (logits), and where the figure comes
    from; a form never measured takes the largest measured on its backend (and says so)."""
    table = drift_table()["forms"]
    entries = table.get(kind, {})
    if form in entries:
        return entries[form]["gap_drift"], f"measured for {kind} {form}"
    if not entries:
        raise KeyError(f"no drift measured for the {kind} backend (bench/data/drift.json)")
    widest = max(entries, key=lambda name: entries[name]["gap_drift"])
    return entries[widest]["gap_drift"], f"{kind} {form} not measured: the largest on {kind} ({widest})"


def gap_bound(backend: Backend) -> float:
    """How far a gap between AR's top token and a runner-up may move between a verification and
    a one-token step on this backend and form: MARGIN x the largest measured."""
    return MARGIN * measured_drift(*form_of(backend))[0]
