"""GGUF -> a plain safetensors folder that transformers loads in about a second (the zoo's
conversion step; the only part of the zoo that needs transformers)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from decodekit.errors import UnsupportedModelError
from decodekit.models.files import write_marker


def convert_gguf(gguf: Path, target: Path, dtype: str, marker: dict, extra_files: Sequence[Path] = ()) -> None:
    """GGUF -> a plain safetensors folder (weights, config, tokenizer, generation config).

    `extra_files` (license texts) are copied in beside the weights.

    Loading a GGUF dequantizes every tensor (20-60 s); the saved folder loads in about a
    second. Work happens in a hidden sibling folder that is renamed into place after the
    marker is written, so `target` is either absent, complete, or left by something else.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    work = target.with_name(f".{target.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    try:
        with _without_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch_dtype,
                                                         **_dequantize_option())
            _check_dense(model, gguf)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            _drop_gguf_quantization(model)
            model.save_pretrained(work)
            tokenizer.save_pretrained(work)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(work)
        for extra in extra_files:
            shutil.copy2(extra, work / extra.name)
        write_marker(work, {**marker, "dtype": dtype})
        shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _dequantize_option() -> dict:
    # Newer transformers can keep GGUF weights packed in their quantized blocks (given the
    # `kernels` package); saved as they are, those blocks would not be a plain checkpoint.
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always unpack
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _check_dense(model, gguf: Path) -> None:
    import torch

    packed = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.lower().startswith("gguf")})
    ints = [name for name, p in model.named_parameters() if not torch.is_floating_point(p)]
    if packed or ints:
        raise UnsupportedModelError(f"transformers kept {gguf.name} quantized ({', '.join(packed or ints[:3])}), "
                                    "so it cannot be saved as a plain checkpoint; please report this with "
                                    "your transformers version")


def _drop_gguf_quantization(model) -> None:
    # The tensors are already dequantized. Left in place, the quantizer is saved into
    # config.json as a `gguf` quantization_config, and every later load of the plain
    # safetensors folder would set up a GGUF quantizer for nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


@contextlib.contextmanager
def _without_progress_bars() -> Iterator[None]:
    """Hide the tqdm bars transformers draws while converting; pass other stderr output on.

    The GGUF loader's bar ignores transformers' progress-bar switch, and bars drawn under our
    rich display garble it; warnings, though, are worth seeing. tqdm redraws with a carriage
    return, which tells the two apart.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        for line in captured.getvalue().split("\n"):  # not splitlines(): it splits at \r too
            if line and "\r" not in line:
                sys.stderr.write(line + "\n")
