"""Golden token ids for DoLa, contrastive search and group (diverse) beam search,
produced by transformers 4.55.x -- the last release that shipped these decoding
modes inside the library (transformers 5 removed them; decodekit reimplements
them and tests against the ids written here).

Run it in a throwaway venv, never in the project's own:

    python3.11 -m venv /tmp/hf455
    /tmp/hf455/bin/pip install torch==2.13.0 'transformers==4.55.*' safetensors
    /tmp/hf455/bin/python tools/golden_hf455.py

It writes, under tests/data/golden_hf455/:
  <arch>/config.json        the plain config kwargs (+ model_type) to rebuild the config from
  <arch>/model.safetensors  the tiny random model's weights (fp32)
  golden.json               prompts and every case's output ids (and scores where applicable)

Everything is deterministic: the weights come from torch.manual_seed(0) and are
saved, so a reader never needs to re-create them from the seed.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import sys
import warnings

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

# ---------------------------------------------------------------------------
# Version guard: the modes we want goldens for were removed after 4.55.
# ---------------------------------------------------------------------------
print(f"transformers {transformers.__version__}, torch {torch.__version__}")
_major, _minor = (int(x) for x in transformers.__version__.split(".")[:2])
if (_major, _minor) >= (4, 56):
    sys.exit("refusing to run: needs transformers < 4.56 (DoLa / contrastive / group beam search in-library)")

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "data", "golden_hf455")

ARCHS = ["llama", "qwen2"]
CONFIG_KWARGS = dict(
    vocab_size=258,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    eos_token_id=256,
    bos_token_id=257,
    pad_token_id=None,
    tie_word_embeddings=False,
)
LM_HEAD_SCALE = 8.0  # sharpen the random model's logits so they are not near-uniform
EOS = 256
MAX_NEW_TOKENS = 24

# Common generate() arguments for every case (greedy-family, no sampling).
BASE_KWARGS = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, eos_token_id=EOS, pad_token_id=EOS)

# ---------------------------------------------------------------------------
# Capture every warning transformers emits (its logger, incl. warning_once,
# and Python's warnings module), so it can be recorded per case as "notes".
# ---------------------------------------------------------------------------
_captured: list[str] = []


class _ListHandler(logging.Handler):
    def emit(self, record):
        _captured.append(f"[{record.levelname}] {record.getMessage()}")


transformers.logging.get_logger("transformers").addHandler(_ListHandler())


def _showwarning(message, category, filename, lineno, file=None, line=None):
    _captured.append(f"[{category.__name__}] {message}")


warnings.showwarning = _showwarning
warnings.simplefilter("always")


def take_notes() -> list[str]:
    notes = list(dict.fromkeys(_captured))  # dedupe, keep order
    _captured.clear()
    return notes


# ---------------------------------------------------------------------------
# DoLa trace: wrap the module-level _dola_select_contrast (looked up as a global
# by GenerationMixin._dola_decoding) to log which premature layer it picks,
# recomputing the JS divergence exactly as the library does, then delegating.
# ---------------------------------------------------------------------------
import transformers.generation.utils as gen_utils  # noqa: E402

_orig_select = gen_utils._dola_select_contrast
_dola_trace: list[dict] | None = None  # set to a list to record


def _traced_select(candidate_premature_layers, candidate_premature_logits, final_logits):
    if _dola_trace is not None:
        F = torch.nn.functional
        if len(candidate_premature_layers) == 1:
            _dola_trace.append({"chosen_layer": candidate_premature_layers[0], "js_divs": None})
        else:
            stacked = torch.stack([candidate_premature_logits[i] for i in candidate_premature_layers], dim=0)
            avg = 0.5 * (F.softmax(final_logits, dim=-1)[None] + F.softmax(stacked, dim=-1))
            kl1 = F.kl_div(F.log_softmax(final_logits, dim=-1)[None], avg, reduction="none").mean(-1)
            kl2 = F.kl_div(F.log_softmax(stacked, dim=-1), avg, reduction="none").mean(-1)
            js = (0.5 * (kl1 + kl2)).mean(-1)
            _dola_trace.append(
                {
                    "chosen_layer": candidate_premature_layers[int(js.argmax().item())],
                    "js_divs": {str(l): float(v) for l, v in zip(candidate_premature_layers, js.tolist())},
                }
            )
    return _orig_select(candidate_premature_layers, candidate_premature_logits, final_logits)


gen_utils._dola_select_contrast = _traced_select


# ---------------------------------------------------------------------------
# Models and prompts
# ---------------------------------------------------------------------------
def build_model(arch: str):
    config = AutoConfig.for_model(arch, **CONFIG_KWARGS)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
    return model.eval()


def save_model(arch: str, model) -> None:
    d = os.path.join(OUT_DIR, arch)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": arch, **CONFIG_KWARGS}, f, indent=2)
        f.write("\n")
    # clone: safetensors refuses tensors that share storage (none here, but be safe)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(d, "model.safetensors"))


def make_prompts() -> list[list[int]]:
    rng = random.Random(1234)
    return [[rng.randrange(256) for _ in range(n)] for n in (5, 9, 14)]


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------
def cases(eos_alt: int | None = None):
    """(method, extra generate kwargs) pairs; BASE_KWARGS are added to each (a case's own kwargs win).

    With eos_alt=None: the main cases, all with eos=256. Token 256 is rarely generated by these random
    models, so a second pass (eos_alt = a token the model does generate) exercises the EOS paths:
    early stop, finished-hypothesis bookkeeping, early_stopping=True, padding with pad=256.
    """
    beam_common = dict(output_scores=True, return_dict_in_generate=True, length_penalty=1.0, early_stopping=True)
    group4 = {**beam_common, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "num_return_sequences": 4}
    group6 = {**beam_common, "num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.5, "num_return_sequences": 6}
    if eos_alt is not None:
        eos = {"eos_token_id": eos_alt}
        yield "greedy", {**eos}
        yield "dola", {"dola_layers": "high", "repetition_penalty": 1.2, **eos}
        yield "contrastive", {"penalty_alpha": 0.6, "top_k": 4, **eos}
        yield "group_beam", {**group4, **eos}
        yield "group_beam", {**group6, **eos}
        yield "beam", {**beam_common, "num_beams": 4, "num_return_sequences": 4, **eos}
        return
    yield "greedy", {}
    for layers in ["low", "high", [2, 4]]:
        for rp in [1.0, 1.2]:
            yield "dola", {"dola_layers": layers, "repetition_penalty": rp}
    for alpha, k in [(0.6, 4), (0.3, 6)]:
        yield "contrastive", {"penalty_alpha": alpha, "top_k": k}
    yield "group_beam", group4
    yield "group_beam", group6
    for lp in [1.0, 0.5]:
        yield "beam", {**beam_common, "length_penalty": lp, "num_beams": 4, "num_return_sequences": 4}


def pick_eos_alt(greedy_outputs: list[list[int]]) -> int:
    """The token most often produced by plain greedy over the prompts (ties: smallest id)."""
    counts = collections.Counter(t for out in greedy_outputs for t in out if t != EOS)
    return min(counts, key=lambda t: (-counts[t], t))


def run_case(model, prompt, method, kwargs):
    input_ids = torch.tensor([prompt], dtype=torch.long)
    attn = torch.ones_like(input_ids)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=attn, **{**BASE_KWARGS, **kwargs})
    rec = {}
    if kwargs.get("return_dict_in_generate"):
        seqs = out.sequences
        # beam outputs: each row is prompt + new tokens; a finished hypothesis is followed by its eos,
        # then rows shorter than the longest are padded with pad (256)
        rec["output_ids"] = [row[len(prompt):].tolist() for row in seqs]
        if out.sequences_scores is not None:
            rec["sequences_scores"] = out.sequences_scores.tolist()
    else:
        rec["output_ids"] = out[0, len(prompt):].tolist()
    return rec


def run_all_prompts(result, model, arch, prompts, method, kwargs):
    """Run one case on every prompt (batch size 1 each), append the records to result["cases"]."""
    global _dola_trace
    for pi, prompt in enumerate(prompts):
        trace_this = (
            method == "dola"
            and kwargs["dola_layers"] == "high"
            and kwargs["repetition_penalty"] == 1.0
            and "eos_token_id" not in kwargs
            and pi == 0
        )
        _dola_trace = [] if trace_this else None
        rec = run_case(model, prompt, method, kwargs)
        case = {"arch": arch, "method": method, "prompt_index": pi, "kwargs": kwargs, **rec}
        if trace_this:
            case["dola_trace"] = _dola_trace
        _dola_trace = None
        notes = take_notes()
        if notes:
            case["notes"] = notes
            result["notes"] += [f"{arch} {method} {json.dumps(kwargs)}: {n}" for n in notes]
        result["cases"].append(case)
        first = rec["output_ids"][0] if method in ("beam", "group_beam") else rec["output_ids"]
        print(arch, method, json.dumps(kwargs), pi, first)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    prompts = make_prompts()
    result = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "generator": "tools/golden_hf455.py",
        "config_kwargs": CONFIG_KWARGS,
        "lm_head_scale": LM_HEAD_SCALE,
        "seed": 0,
        "base_generate_kwargs": BASE_KWARGS,
        "prompts": prompts,
        "conventions": (
            "batch size 1 per prompt, attention_mask all ones; output_ids are the new tokens only "
            "(token 256 is both eos and pad: generation may stop early at 256; beam rows are padded with 256). "
            "For beam modes output_ids is a list of num_return_sequences rows, best first, with matching "
            "sequences_scores. Cases whose kwargs carry eos_token_id override the base eos (pad stays 256): "
            "they exercise the EOS paths with a token the model does generate (models.<arch>.eos_alt). "
            "DoLa candidate layers for this 6-layer untied model: low=[0, 2], high=[3, 5]."
        ),
        "models": {},
        "cases": [],
        "notes": [],
    }
    take_notes()
    for arch in ARCHS:
        model = build_model(arch)
        save_model(arch, model)
        result["models"][arch] = {
            "dir": arch,
            "attn_implementation": model.config._attn_implementation,
        }
        result["notes"] += [f"{arch} build: {n}" for n in take_notes()]
        # main cases (eos=256) first; then the EOS-exercising pass, whose eos token is picked
        # from this arch's plain greedy outputs
        for method, kwargs in cases():
            run_all_prompts(result, model, arch, prompts, method, kwargs)
        greedy_outputs = [
            c["output_ids"] for c in result["cases"]
            if c["arch"] == arch and c["method"] == "greedy" and "eos_token_id" not in c["kwargs"]
        ]
        eos_alt = pick_eos_alt(greedy_outputs)
        result["models"][arch]["eos_alt"] = eos_alt
        for method, kwargs in cases(eos_alt):
            run_all_prompts(result, model, arch, prompts, method, kwargs)
    # warning_once messages appear only at their first trigger in this process; the
    # per-prompt duplicates of the others are dropped here (each case keeps its own notes).
    result["notes"] = list(dict.fromkeys(result["notes"]))
    path = os.path.join(OUT_DIR, "golden.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("wrote", path, "with", len(result["cases"]), "cases")


if __name__ == "__main__":
    main()
