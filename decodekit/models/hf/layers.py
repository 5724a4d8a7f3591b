"""Where a transformers causal LM keeps its decoder layers, and reading its lower layers
through its own output head: what layer skipping (skip.py) and the strategies that contrast
layers (DoLa, LOL) need to know about a model's structure."""

from __future__ import annotations

from typing import Any

import torch

from decodekit.errors import UnsupportedModelError


def decoder_layers(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """The decoder layer list of a transformers model: (the module holding it, its attribute
    name, the list). It is the ModuleList as long as the text config's `num_hidden_layers`
    (`model.model.layers` for most causal LMs); when several lists have that length, the one
    whose layers carry `layer_idx` 0, 1, ... (the cache slots) is taken."""
    num_layers = getattr(text_config(model), "num_hidden_layers", None)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and num_layers and len(module) == num_layers
    ]
    found = ", ".join(name for name, _ in candidates) or "none"
    if len(candidates) > 1:
        candidates = [(name, module) for name, module in candidates if _numbered_by_cache_slot(module)]
    if len(candidates) != 1:
        raise UnsupportedModelError(
            f"{type(model).__name__}: cannot tell its decoder layer list (a ModuleList of num_hidden_layers={num_layers}"
            f" layers; found {found}), so its layers cannot be skipped or read one by one"
        )
    name, layers = candidates[0]
    owner_name, _, attribute = name.rpartition(".")
    return model.get_submodule(owner_name), attribute, layers


def text_config(model: torch.nn.Module) -> Any:
    config: Any = getattr(model, "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        raise UnsupportedModelError(f"{type(model).__name__} has no transformers config: cannot tell its decoder layers")
    return config.get_text_config(decoder=True)


def _numbered_by_cache_slot(layers: torch.nn.ModuleList) -> bool:
    """Whether layer i (or its attention) has `layer_idx` i, as transformers' decoder layers do."""
    for i, layer in enumerate(layers):
        index = next((m.layer_idx for m in layer.modules() if isinstance(getattr(m, "layer_idx", None), int)), None)
        if index != i:
            return False
    return True


def early_exit_logits(model: torch.nn.Module, hidden: torch.Tensor, norm: bool) -> torch.Tensor:
    """Logits from a lower layer's hidden states [..., hidden]: through the model's final norm
    when `norm`, then its LM head and, where the model has one, its final logit soft-cap."""
    if norm:
        owner = decoder_layers(model)[0]
        final_norm: Any = getattr(owner, "norm", None)
        if not isinstance(final_norm, torch.nn.Module):
            raise UnsupportedModelError(f"{type(model).__name__}: cannot find its final norm (no `norm` beside its "
                                        "decoder layers), so its lower layers cannot be read through it")
        hidden = final_norm(hidden)
    causal_lm: Any = model  # a transformers PreTrainedModel: typed as a plain Module here
    head = causal_lm.get_output_embeddings()
    logits = head(hidden)
    cap = getattr(text_config(model), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
