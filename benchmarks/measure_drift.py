"""Measure how far verification forwards drift from one-token steps, per backend and form, and
write the table the lossless judge reads (decodekit/bench/data/drift.json).

For each model and form (the gap drift: how far the gap between AR's top token and a
runner-up moves): the first turn of 2 Spec-Bench questions per category (12 prompts),
32 greedy one-token steps each, then the same tokens as one verification chain on the same
cache (decodekit/bench/drift.py). A form's figure is the largest over its models.

Run it alone on the machine (it needs both cores); about 10 minutes:

    python benchmarks/measure_drift.py
"""

import json
import sys
import time
from pathlib import Path

from decodekit.bench.dataset import load_questions
from decodekit.bench.drift import TOP_GAPS, form_of, measure_drift
from decodekit.machine import cpu_model
from decodekit.models.backends import load_model
from decodekit.prompts import conversation_ids, user_turn

# (model, backend, form): transformers dtypes, llama.cpp weight types (None: the file's own)
RUNS = [
    ("smollm2-135m", "hf", "fp32"), ("smollm2-135m", "hf", "bf16"),
    ("qwen2.5-coder-0.5b", "hf", "fp32"), ("qwen2.5-coder-0.5b", "hf", "bf16"),
    ("smollm2-135m", "llama.cpp", None), ("smollm2-135m", "llama.cpp", "q8_0"),
    ("smollm2-135m", "llama.cpp", "q4_0"), ("smollm2-135m", "llama.cpp", "bf16"),
    ("qwen2.5-coder-0.5b", "llama.cpp", None), ("qwen2.5-coder-1.5b", "llama.cpp", None),
    ("qwen2.5-coder-1.5b", "llama.cpp", "q4_0"),
]
OUT = Path(__file__).resolve().parent.parent / "decodekit" / "bench" / "data" / "drift.json"


def main() -> None:
    questions = load_questions(per_category=2)
    forms: dict[str, dict[str, dict]] = {}
    for model_name, kind, form in RUNS:
        started = time.perf_counter()
        if kind == "hf":
            backend = load_model(model_name, "hf", dtype=form, threads=2)
        else:
            backend = load_model(model_name, "llama.cpp", quant=form, threads=2)
        prompts = [conversation_ids(backend, user_turn(q.turns[0])) for q in questions]
        measure = measure_drift(backend, prompts)
        key_kind, key_form = form_of(backend)
        entry = forms.setdefault(key_kind, {}).setdefault(key_form, {"gap_drift": 0.0, "rows": 0, "swapped": 0,
                                                                     "models": []})
        entry["gap_drift"] = max(entry["gap_drift"], measure.gap_drift)
        entry["rows"] += measure.rows
        entry["swapped"] += measure.swapped
        entry["models"].append(model_name)
        print(f"{model_name} {key_kind} {key_form}: gap drift {measure.gap_drift:.3g} logits over {measure.rows} rows, "
              f"{measure.swapped} top tokens swapped ({time.perf_counter() - started:.0f} s)", flush=True)
        del backend
    OUT.write_text(json.dumps({
        "about": f"largest change, in logits, of the gap between AR's top token and each of its next {TOP_GAPS}, "
                 "between one-token steps and one verification (a chain, and a tree around the same path); 12 Spec-Bench first turns x 31 rows x 2 per model "
                 "(decodekit/bench/drift.py)",
        "command": "python benchmarks/measure_drift.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_model(), "threads": 2, "forms": forms}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
