"""decodekit's greedy AR against an independent reference: Hugging Face's own `generate`.

Every other exactness test compares decodekit with decodekit (a method against AR), so a bug
in the shared backend (positions, masks, cache handling) would pass them all. Here the
reference is transformers' decoding loop with its own cache, which for Gemma 3 keeps separate
sliding-window layers, where decodekit keeps full layers and applies the window by mask.

Equal ids alone are a coarse check: a window one token too wide or too narrow moved Gemma 3's
logits by 1-10% of the top logit here, yet left every greedy token the same. So AR's logits at
every step must also match generate's, to well under that but above fp32 noise (7e-6 measured).
"""

import pytest
import torch
from transformers import GenerationConfig

from decodekit import Decoder
from decodekit.bench.dataset import load_questions
from decodekit.bench.divergence import first_divergence
from decodekit.drafters.base import NoDrafter
from decodekit.models.hf import load_backend
from decodekit.types import Draft

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 64
LOGIT_TOLERANCE = 1e-4  # relative to max(1, |top logit|)

# name -> (Spec-Bench categories, questions per category, the sliding window the backend must
# report); the first 3 questions are the prompts. Gemma 3's are all longer than its window, so
# its prefill and every decoding step attend past it: summarization and rag prompts are that long.
MODELS = {
    "smollm2-135m": (["summarization", "math_reasoning", "rag"], 1, None),
    "gemma3-270m": (["summarization", "rag"], 2, 512),
    "qwen2.5-coder-0.5b": (["summarization", "math_reasoning", "rag"], 1, None),
}


@pytest.fixture(scope="module", params=list(MODELS))
def backend(request):
    # One thread: on a machine whose cores are shared, two threads collapse (measured on 2 busy
    # cores: SmolLM2 decoding went from 0.07 to 1-2 s/token whenever another process took a core,
    # while one thread held 0.1 s/token). No latency calibration: greedy ids do not depend on it,
    # and a first run would spend its measuring time here.
    return load_backend(request.param, threads=1, calibrate=False)


def prompt_ids(backend) -> list[list[int]]:
    categories, per_category, _ = MODELS[backend.name]
    questions = load_questions(categories=categories, per_category=per_category)[:3]
    # Chat models get their chat template, the base model (Gemma 3 270M) the raw text.
    decoder = Decoder(backend)
    return [decoder.user_prompt_ids(q.turns[0]) for q in questions]


class LogitsRecorder(NoDrafter):
    """Plain AR that keeps the logits each step chose from, read where the loop hands them to
    every drafter: AR's own numbers, at no extra forward."""

    def __init__(self):
        self.logits: list[torch.Tensor] = []

    def observe(self, draft, result, target_logits):
        self.logits.append(target_logits[0].clone())


def hf_greedy(backend, ids: list[int]) -> tuple[list[int], torch.Tensor]:
    """transformers' generate with a fresh config, so no model default (repetition penalty,
    minimum length, suppressed tokens, ...) can slip in; checked below as well.
    Returns the new ids and the logits [new, vocab] they were chosen from."""
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=MAX_NEW_TOKENS,
        eos_token_id=sorted(backend.eos_token_ids),
        pad_token_id=min(backend.eos_token_ids),
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )
    # An explicit all-ones mask: otherwise generate may infer one from pad tokens in the prompt.
    out = backend.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 generation_config=config)
    # Plain greedy means the argmax was taken over the raw logits: no processor altered them.
    for step, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        assert torch.equal(scores, logits), f"generate processed the logits at step {step}: not plain greedy"
    return out.sequences[0, len(ids):].tolist(), torch.cat(out.logits)


def test_ar_greedy_equals_transformers_generate(backend):
    *_, window = MODELS[backend.name]
    assert backend.sliding_window == window
    ar = Decoder(backend, "ar")
    prompts = prompt_ids(backend)
    assert len(prompts) == 3
    for ids in prompts:
        if window:
            assert len(ids) > window, f"a {len(ids)}-token prompt does not cross the {window}-token window"
        expected, hf_logits = hf_greedy(backend, ids)
        ar.drafter = recorder = LogitsRecorder()
        got = ar.generate(prompt_ids=ids, max_new_tokens=MAX_NEW_TOKENS).token_ids
        assert len(expected) == MAX_NEW_TOKENS or expected[-1] in backend.eos_token_ids
        position = first_divergence(expected, got)
        assert position is None, _explain(backend, ids, expected, got, position)
        ar_logits = torch.stack(recorder.logits)
        drift = (ar_logits - hf_logits).abs().amax(-1) / hf_logits.abs().amax(-1).clamp(min=1)
        step = int(drift.argmax())
        assert drift[step] <= LOGIT_TOLERANCE, (
            f"{backend.name}, {len(ids)}-token prompt: same ids, but at new token {step} AR's logits differ "
            f"from generate's by {drift[step]:.2e} of the top logit")


def _explain(backend, ids, expected, got, position) -> str:
    """AR's own logits at the divergence, for both tokens: a near-exact tie points at fp32
    rounding, a clear gap at a bug."""
    if position >= min(len(expected), len(got)):
        return f"{backend.name}: one output ends at token {position}, the other goes on"
    logits = backend.forward(ids + got[:position], Draft.empty(), backend.new_cache())[0].double()
    ar_logit, hf_logit = logits[got[position]].item(), logits[expected[position]].item()
    return (f"{backend.name}, {len(ids)}-token prompt: AR chose {got[position]} (logit {ar_logit:.6f}) where "
            f"generate chose {expected[position]} (AR's logit {hf_logit:.6f}) at new token {position}; "
            f"gap {ar_logit - hf_logit:.3e}, top logit {logits.max().item():.4f}")
