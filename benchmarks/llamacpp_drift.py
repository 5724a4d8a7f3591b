"""How far llama.cpp's batched forward drifts from one-token forwards (the `q8` tie tolerance in
bench/divergence.py comes from this): per zoo model, 12 Spec-Bench prompts (2 per category), 32
greedy tokens one at a time, then the same 32 positions in one batched forward.

    python benchmarks/llamacpp_drift.py smollm2-135m gemma3-270m qwen2.5-coder-0.5b
"""

import sys

import torch

from decodekit.bench.dataset import load_questions
from decodekit.models.llamacpp import load_llamacpp
from decodekit.prompts import conversation_ids
from decodekit.types import Draft

TOKENS = 32

for name in sys.argv[1:]:
    backend = load_llamacpp(name, calibrate=False, progress=False)
    worst, swapped = 0.0, 0
    questions = load_questions("spec-bench", None, 2)
    for question in questions:
        ids = conversation_ids(backend, [{"role": "user", "content": question.turns[0]}])
        cache, pending, tokens, rows = backend.new_cache(), ids, [], []
        for _ in range(TOKENS):
            logits = backend.forward(pending, Draft.empty(), cache)[-1]
            cache.keep(len(cache), [])
            rows.append(logits)
            tokens.append(int(logits.argmax()))
            pending = [tokens[-1]]
        single = torch.stack(rows)
        batched = backend.forward(ids, Draft(tokens[:-1]), backend.new_cache())
        drift = (batched - single).abs().max(-1).values / single.abs().max(-1).values.clamp(min=1)
        worst = max(worst, float(drift.max()))
        swapped += int((batched.argmax(-1) != single.argmax(-1)).sum())
    print(f"{name} ({backend.weight_type}): largest drift {worst:.2e} of the largest logit; "
          f"top token differs at {swapped} of {TOKENS * len(questions)} positions")
