"""The transformers backend: the only code that knows how a Hugging Face causal LM is called.

It uses public hooks only — `cache=` with a DynamicCache, explicit `position_ids`, a prepared
4-D attention mask for trees, `logits_to_keep` — so it keeps working across transformers
releases and architectures without patching modeling code. It implements backend.Backend.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from decodekit.backend import KVCache
from decodekit.budget import LatencyCurve
from decodekit.errors import DecodekitError, UnsupportedModelError
from decodekit.models.hf.cache import HFCache
from decodekit.tree import ancestor_mask, depths
from decodekit.types import Draft

if TYPE_CHECKING:
    from llguidance import LLTokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Architectures whose state is not a per-token KV cache: rollback by cropping cannot work.
RECURRENT_TYPES = {"mamba", "mamba2", "falcon_mamba", "rwkv", "recurrent_gemma", "jamba", "zamba", "zamba2", "lfm2", "xlstm"}


@dataclass
class HFBackend:
    kind = "hf"
    form_choice = None  # set by dtype/quant="auto": the FormChoice that picked this form
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
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
        # Read once: the loop asks for it several times per step (inputs, masks, synchronize).
        self.device: torch.device = next(self.model.parameters()).device
        # Forward cost by input size on this machine, learned while decoding (budget.py).
        self.latency = LatencyCurve()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def dtype_name(self) -> str:
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

    @property
    def identity(self) -> str:
        device = self.device
        if device.type == "cuda":
            where = torch.cuda.get_device_name(device)
        else:
            where = f"{device.type}, {torch.get_num_threads()} threads"
        return f"{self.name} ({self.model.config.model_type}, {self.dtype_name}) on {where}"

    def new_cache(self) -> HFCache:
        return HFCache()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def forward(self, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        """Run [pending + draft] on top of the cache; return logits [1 + len(draft), vocab].

        Row 0 predicts what follows the last pending token, row 1 + i what follows draft node i.
        Every input token's keys and values are appended to the cache; the caller commits.
        """
        return self._run(pending, draft, cache, hidden=False)[0]

    def forward_hidden(self, pending: list[int], draft: Draft, cache: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`, plus the same rows' last hidden states [1 + len(draft), hidden] (the LM
        head's input): what a trained acceptance head reads (drafters/acceptance_head.py)."""
        logits, hidden = self._run(pending, draft, cache, hidden=True)
        assert hidden is not None
        return logits, hidden[-1]

    @torch.inference_mode()
    def forward_rows(self, tokens: list[int], cache: KVCache,
                     hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Search (search/loop.py): one token for each row of a cache holding equally long
        sequences side by side (HFCache.select forks and reorders them). Returns logits
        [rows, vocab] and, with `hidden`, the last layer's hidden states [rows, hidden] (the LM
        head's input)."""
        out = self._step_rows(cache, len(tokens), hidden, input_ids=torch.tensor([[t] for t in tokens], device=self.device))
        return out.logits[:, -1], (out.hidden_states[-1][:, -1] if hidden else None)

    @torch.inference_mode()
    def forward_mixtures(self, mixtures: list[list[tuple[int, float]]], cache: KVCache) -> torch.Tensor:
        """Search (superposed decoding): row i's input is Σ w · embedding(token) over mixtures[i]'s
        (token, w) pairs instead of one token's embedding. Returns logits [rows, vocab]."""
        embed = self.model.get_input_embeddings()  # scales where the model does (Gemma): linear, so mixes
        rows = []
        for mixture in mixtures:
            ids = torch.tensor([t for t, _ in mixture], device=self.device)
            weights = torch.tensor([w for _, w in mixture], device=self.device, dtype=torch.float32)
            rows.append((weights[:, None] * embed(ids).float()).sum(0))
        out = self._step_rows(cache, len(mixtures), False, inputs_embeds=torch.stack(rows)[:, None].to(self.dtype))
        return out.logits[:, -1]

    def _step_rows(self, cache: KVCache, rows: int, hidden: bool, **inputs: torch.Tensor) -> Any:
        """One position for each of the cache's `rows` side-by-side sequences (search)."""
        cache = _own_cache(cache)
        if cache.rows != rows:
            raise ValueError(f"{rows} inputs for a cache of {cache.rows} rows")
        return self.model(**inputs, position_ids=torch.full((rows, 1), len(cache), device=self.device),
                          cache=cache.hf_cache, use_cache=True, output_hidden_states=hidden)

    @property
    def num_layers(self) -> int:
        """Decoder layers: `forward_layers` reads layers 0 (the embeddings) to num_layers."""
        return int(self.model.config.get_text_config(decoder=True).num_hidden_layers)

    @torch.inference_mode()
    def forward_layers(self, pending: list[int], draft: Draft, cache: KVCache, layers: list[int],
                       norm: bool) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """`forward`, plus the same rows read at lower layers through the LM head: {layer: logits
        [1 + len(draft), vocab]}, layer 0 being the embeddings' output and layer i the output of
        decoder layer i (transformers' hidden_states[i]). `norm`: through the final norm first, or
        straight into the head (as the DoLa paper's code and transformers 4.x's DoLa read them)."""
        from decodekit.models.hf.layers import early_exit_logits

        logits, hidden = self._run(pending, draft, cache, hidden=True)
        assert hidden is not None
        return logits, {layer: early_exit_logits(self.model, hidden[layer], norm) for layer in layers}

    @torch.inference_mode()
    def _run(self, pending: list[int], draft: Draft, cache: KVCache,
             hidden: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        cache = _own_cache(cache)
        start = len(cache)
        tokens = pending + draft.tokens
        last_pending = start + len(pending) - 1
        if draft.parents is None:
            positions = list(range(start, start + len(tokens)))
            mask = None  # plain causal: transformers builds it (and its sliding variant) itself
        else:
            positions = list(range(start, last_pending + 1)) + [last_pending + d for d in depths(draft.parents)]
            mask = self._tree_mask(start, len(pending), draft.parents, positions)
        device = self.device
        rows = 1 + len(draft)
        out = self.model(
            input_ids=torch.tensor([tokens], device=device),
            position_ids=torch.tensor([positions], device=device),
            attention_mask=mask,
            cache=cache.hf_cache,
            use_cache=True,
            logits_to_keep=rows,
            output_hidden_states=hidden,
        )
        return out.logits[0], (tuple(h[0, -rows:] for h in out.hidden_states) if hidden else None)

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
        masks = {"full_attention": self._additive(allowed)}
        if self.sliding_window:
            # A key is visible to a sliding layer only within `window` positions of the query.
            key_pos = torch.tensor(list(range(start)) + positions)
            query_pos = torch.tensor(positions)
            in_window = (query_pos[:, None] - key_pos[None, :]) < self.sliding_window
            masks["sliding_attention"] = self._additive(allowed & in_window)
            return masks
        return masks["full_attention"]

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(~allowed, torch.finfo(self.dtype).min)
        return mask[None, None].to(self.device)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=True)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        if not self.has_chat_template:
            raise DecodekitError(f"{self.name} has no chat template: pass a plain prompt instead of messages")
        ids: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def grammar_tokenizer(self) -> LLTokenizer:
        """The tokenizer as llguidance sees it (built once per tokenizer: it takes about a second)."""
        return grammar_tokenizer(self.tokenizer, self.vocab_size, tuple(sorted(self.eos_token_ids)), self.name)


def _own_cache(cache: KVCache) -> HFCache:
    if not isinstance(cache, HFCache):
        raise TypeError(f"the transformers backend needs its own cache (new_cache()), got {type(cache).__name__}")
    return cache


@functools.lru_cache(maxsize=8)
def grammar_tokenizer(tokenizer: PreTrainedTokenizerBase, vocab_size: int, eos_ids: tuple[int, ...], name: str) -> LLTokenizer:
    import llguidance.hf
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise UnsupportedModelError(f"{name}: grammars need a fast (Rust) tokenizer, and this model only has a slow "
                                    f"{type(tokenizer).__name__}; convert it with transformers' convert_slow_tokenizer")
    try:
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(eos_ids))
    except Exception as e:  # llguidance raises plain exceptions for vocabularies it cannot map
        raise UnsupportedModelError(f"{name}: llguidance cannot map this tokenizer's vocabulary for grammars: {e}") from None


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


if TYPE_CHECKING:
    from decodekit.backend import Backend

    _conforms: type[Backend] = HFBackend  # mypy checks HFBackend against the protocol here
