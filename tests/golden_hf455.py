"""The tiny models and golden ids made by tools/golden_hf455.py with transformers 4.55.4, the last
release that shipped DoLa, contrastive search and group beam search in the library."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from tiny import byte_tokenizer
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from decodekit.models.hf import HFBackend

FOLDER = Path(__file__).parent / "data" / "golden_hf455"
CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@functools.cache
def golden() -> dict:
    return json.loads((FOLDER / "golden.json").read_text())


def cases(method: str) -> list[dict]:
    return [case for case in golden()["cases"] if case["method"] == method]


@functools.cache
def golden_model(arch: str) -> torch.nn.Module:
    kwargs = json.loads((FOLDER / arch / "config.json").read_text())
    kwargs.pop("model_type", None)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](**kwargs), dtype=torch.float32)
    model.load_state_dict(load_file(str(FOLDER / arch / "model.safetensors")), strict=True)
    return model.eval()


def golden_backend(arch: str, eos: int) -> HFBackend:
    backend = HFBackend(model=golden_model(arch), tokenizer=byte_tokenizer(), name=f"golden-{arch}")
    backend.eos_token_ids = {eos}
    return backend


def case_eos(case: dict) -> int:
    return case["kwargs"].get("eos_token_id", golden()["base_generate_kwargs"]["eos_token_id"])


def case_id(case: dict) -> str:
    options = ",".join(f"{k}={v}" for k, v in case["kwargs"].items())
    return f"{case['arch']}-p{case['prompt_index']}-{options}"
