"""The transformers backend: the only code that knows how a Hugging Face causal LM is called.

It uses public hooks only — `cache=` with a DynamicCache, explicit `position_ids`, a prepared
4-D attention mask for trees, `logits_to_keep` — so it keeps working across transformers
releases and architectures without patching modeling code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.budget import LatencyCurve
from decodekit.cache import KVCache
from decodekit.errors import DecodekitError, ModelNotFoundError, UnsupportedModelError
from decodekit.tree import ancestor_mask, depths
from decodekit.types import Draft

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Architectures whose state is not a per-token KV cache: rollback by cropping cannot work.
RECURRENT_TYPES = {"mamba", "mamba2", "falcon_mamba", "rwkv", "recurrent_gemma", "jamba", "zamba", "zamba2", "lfm2", "xlstm"}


@dataclass
class HFBackend:
    model: torch.nn.Module
    tokenizer: object
    name: str = ""

    def __post_init__(self):
        config = self.model.config
        if getattr(config, "is_encoder_decoder", False):
            raise UnsupportedModelError(f"{self.name}: encoder-decoder models are not supported (decoder-only causal LMs only)")
        if config.model_type in RECURRENT_TYPES:
            raise UnsupportedModelError(
                f"{self.name}: '{config.model_type}' keeps a recurrent state, which speculative rollback cannot crop"
            )
        self.model.eval()
        text_config = config.get_text_config(decoder=True)
        self.context_length: int = getattr(text_config, "max_position_embeddings", None) or 2048
        self.vocab_size: int = text_config.vocab_size
        # Sliding-window layers need their own tree mask (see _tree_mask).
        self.sliding_window: int | None = (
            getattr(text_config, "sliding_window", None)
            if "sliding_attention" in (getattr(text_config, "layer_types", None) or [])
            else None
        )
        self.eos_token_ids: set[int] = _eos_ids(self.model, self.tokenizer)
        # Forward cost by input size on this machine, learned while decoding (budget.py).
        self.latency = LatencyCurve()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def new_cache(self) -> KVCache:
        return KVCache()

    @torch.inference_mode()
    def forward(self, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        """Run [pending + draft] on top of the cache; return logits [1 + len(draft), vocab].

        Row 0 predicts what follows the last pending token, row 1 + i what follows draft node i.
        Every input token's keys and values are appended to the cache; the caller commits.
        """
        start = len(cache)
        tokens = pending + draft.tokens
        last_pending = start + len(pending) - 1
        if draft.is_chain:
            positions = list(range(start, start + len(tokens)))
            mask = None  # plain causal: transformers builds it (and its sliding variant) itself
        else:
            positions = list(range(start, last_pending + 1)) + [last_pending + d for d in depths(draft.parents)]
            mask = self._tree_mask(start, len(pending), draft.parents, positions)
        out = self.model(
            input_ids=torch.tensor([tokens]),
            position_ids=torch.tensor([positions]),
            attention_mask=mask,
            cache=cache.hf_cache,
            use_cache=True,
            logits_to_keep=1 + len(draft),
        )
        return out.logits[0]  # [1 + len(draft), vocab]

    def _tree_mask(self, start: int, num_pending: int, parents: list[int], positions: list[int]):
        """Additive 4-D masks [1, 1, query, start + query]: pending tokens are causal, draft nodes
        see the cache, the pending tokens, their ancestors and themselves."""
        num_draft = len(parents)
        query = num_pending + num_draft
        allowed = torch.zeros(query, start + query, dtype=torch.bool)
        allowed[:, :start] = True
        allowed[:num_pending, start : start + num_pending] = torch.ones(num_pending, num_pending, dtype=torch.bool).tril()
        allowed[num_pending:, start : start + num_pending] = True
        allowed[num_pending:, start + num_pending :] = ancestor_mask(parents)
        masks = {"full_attention": _additive(allowed, self.dtype)}
        if self.sliding_window:
            # A key is visible to a sliding layer only within `window` positions of the query.
            key_pos = torch.tensor(list(range(start)) + positions)
            query_pos = torch.tensor(positions)
            in_window = (query_pos[:, None] - key_pos[None, :]) < self.sliding_window
            masks["sliding_attention"] = _additive(allowed & in_window, self.dtype)
            return masks
        return masks["full_attention"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=True)

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise DecodekitError(f"{self.name} has no chat template: pass a plain prompt instead of messages")
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def load_backend(spec: str, dtype: str = "fp32", threads: int | None = None, calibrate: bool = True) -> HFBackend:
    """Load a zoo name, a local folder / .gguf file or a hub id into a backend.

    `calibrate`: start from this machine's measured forward-cost curve (measured once, ~10 s,
    then cached; see calibrate.py) rather than the built-in CPU prior."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from decodekit.models.zoo import resolve

    hf_logging.disable_progress_bar()  # a sub-second load needs no bar; pulls show their own

    if dtype not in DTYPES:
        raise DecodekitError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    if threads is not None:
        if threads < 1:
            raise DecodekitError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    path = resolve(spec, dtype=dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, OSError):
            raise ModelNotFoundError(f"cannot load model '{spec}' from {path}: {first_line}") from error
        raise UnsupportedModelError(f"model '{spec}' is not a supported causal LM: {first_line}") from error
    backend = HFBackend(model=model, tokenizer=tokenizer, name=spec)
    if calibrate:
        from decodekit.calibrate import load_or_measure

        backend.latency = load_or_measure(backend)
    return backend

