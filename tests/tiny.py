"""Tiny random models and a byte-level tokenizer, built from configs: no downloads, fast."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from decodekit.models.hf import HFBackend

SPECIALS = ["<eos>", "<bos>"]
VOCAB = 256 + len(SPECIALS)
ARCHITECTURES = ["llama", "qwen2", "gemma3"]


@functools.cache
def byte_tokenizer(reverse: bool = False) -> PreTrainedTokenizerFast:
    """One token per byte (so multi-byte characters span several tokens), plus EOS and BOS.
    `reverse` numbers the bytes the other way round: a tokenizer a draft model must not share."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), reverse=reverse)
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for special in SPECIALS:
        vocab[special] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", bos_token="<bos>")


def _config(arch: str, num_layers: int = 2):
    # Untied for every architecture (Gemma 3 ties by default): tiny_model sharpens the output
    # matrix, and scaling a tied one would scale the input embeddings with it, so a tied tiny
    # model would keep near-uniform logits. Loading and decoding never depend on the tie.
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=VOCAB - 2, bos_token_id=VOCAB - 1, pad_token_id=None,
                  tie_word_embeddings=False)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "gemma3":
        # A short sliding window, so tests cross it; sliding and full layers alternate.
        layer_types = [("sliding_attention", "full_attention")[i % 2] for i in range(num_layers)]
        return Gemma3TextConfig(**common, head_dim=16, sliding_window=24, layer_types=layer_types)
    raise ValueError(arch)


@functools.cache
def tiny_model(arch: str, seed: int = 0, num_layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(arch, num_layers), dtype=torch.float32)
    # Sharpen the output layer: random tiny models are otherwise near-uniform, which makes
    # greedy decoding a sequence of near-ties and hides real bugs behind numerics.
    if model.lm_head.weight is model.get_input_embeddings().weight:
        raise AssertionError(f"tiny {arch} ties its output matrix to the embeddings: it cannot be sharpened")
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model.eval()


def tiny_backend(arch: str, seed: int = 0, num_layers: int = 2) -> HFBackend:
    return HFBackend(model=tiny_model(arch, seed, num_layers), tokenizer=byte_tokenizer(), name=f"tiny-{arch}")


def save_tiny_model(folder, arch: str = "llama", reverse_tokenizer: bool = False):
    """A tiny model and its byte tokenizer saved as a Hugging Face folder (for the CLI's --model)."""
    tiny_model(arch).save_pretrained(folder)
    byte_tokenizer(reverse=reverse_tokenizer).save_pretrained(folder)
    return folder
