"""The model forms a benchmark ran on, with each one's perplexity on the fixed text."""

import math

import pytest
import torch
from tiny import tiny_backend

from decodekit.bench.forms import describe_forms, fixed_texts, perplexity, quality_class
from decodekit.types import Draft


@pytest.mark.parametrize("weight_type, source, expected", [
    ("Q4_1", "Q4_1", "the file's own weights"),
    ("Q8_0", "Q4_1", "re-quantised from Q4_1 to 8+ bits: keeps the file's rounding"),
    ("BF16", "Q4_K_M", "re-quantised from Q4_K_M to 8+ bits: keeps the file's rounding"),
    ("Q4_0", "Q4_1", "Q4_1 rounded again to Q4_0: lower quality"),
    ("IQ4_NL", "Q4_K_M", "Q4_K_M rounded again to IQ4_NL: lower quality"),
])
def test_quality_classes(weight_type, source, expected):
    assert quality_class(weight_type, source) == expected


def test_the_fixed_texts_are_the_copy_heavy_rewriting_texts():
    texts = fixed_texts()
    assert len(texts) == 10
    assert all(len(t) > 500 and not t.startswith(("Rewrite", "Proofread", "Reformat", "Return")) for t in texts)


def test_perplexity_is_the_mean_token_loss_of_the_fixed_texts():
    backend = tiny_backend("llama")
    nll = tokens = 0
    assert max(len(backend.encode(text)) for text in fixed_texts()) > backend.context_length  # cut to fit
    for text in fixed_texts():
        ids = backend.encode(text)[: backend.context_length]
        logits = backend.forward(ids[:1], Draft(ids[1:]), backend.new_cache())[:-1]  # row i predicts ids[i + 1]
        nll -= float(torch.log_softmax(logits.float(), -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
        tokens += len(ids) - 1
    assert perplexity(backend) == pytest.approx(math.exp(nll / tokens), rel=1e-5)


def test_describe_forms_lists_the_loaded_model_and_each_variant():
    backend, other = tiny_backend("llama"), tiny_backend("llama", seed=1)
    forms = describe_forms(backend, {"fp16": other})
    assert [f["form"] for f in forms] == ["(as loaded)", "fp16"]
    assert [f["quality"] for f in forms] == ["the loaded model", "the model in fp16"]
    assert forms[0]["perplexity"] != forms[1]["perplexity"]  # two different models score differently
