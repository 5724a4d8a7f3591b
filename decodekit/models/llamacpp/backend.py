"""The llama.cpp backend: a GGUF model driven through llama-cpp-python's low-level API.

decodekit's loop, drafters, samplers and verifiers run unchanged on the logits it returns;
llama.cpp does the forwards. One llama.cpp context per backend: its memory is the KV cache
(cache.py explains how chains and trees are laid out in it). Implements backend.Backend.
"""

from __future__ import annotations

import ctypes
import functools
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from decodekit.budget import LatencyCurve
from decodekit.errors import DecodekitError, UnsupportedModelError
from decodekit.models.llamacpp.cache import COMMITTED, LlamaCppCache, TreeLayout
from decodekit.models.llamacpp.chat import render
from decodekit.models.llamacpp.library import lib
from decodekit.tree import depths
from decodekit.types import Draft

if TYPE_CHECKING:
    from llguidance import LLTokenizer

BATCH = 512  # tokens per llama_decode call; longer inputs (prompts) go in several
DEFAULT_CONTEXT = 4096  # positions allocated, unless the model was trained on fewer
# The numerics class of each weight type (dtype_name): llama.cpp keeps the KV cache in fp16, so
# float weights count as fp16; quantized weights multiply activations quantized to 8-bit blocks
# ("q8"). The lossless judge keys its measured drift by the weight type itself (bench/drift.py).
TIE_CLASSES = {"F32": "fp16", "F16": "fp16", "BF16": "bf16"}


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


class LlamaCppBackend:
    kind = "llama.cpp"
    form_choice = None  # set by dtype/quant="auto": the FormChoice that picked this form

    def __init__(self, path: Path, name: str = "", threads: int | None = None, context: int | None = None):
        llama = lib()
        self.path, self.name = Path(path), name or Path(path).stem
        self.threads = threads or default_threads()
        self._llama = llama
        if not self.path.is_file():
            raise DecodekitError(f"no GGUF file at {self.path}")
        self._model = llama.llama_model_load_from_file(str(self.path).encode(), llama.llama_model_default_params())
        if not self._model:
            raise UnsupportedModelError(f"llama.cpp cannot load {self.path}: not a GGUF model it supports")
        handles = {"model": self._model}  # freed when the backend is, context first
        weakref.finalize(self, _free, llama, handles)
        if llama.llama_model_is_recurrent(self._model) or llama.llama_model_is_hybrid(self._model):
            raise UnsupportedModelError(f"{self.name}: a recurrent model keeps a state that speculative rollback "
                                        "cannot crop")
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.vocab_size: int = llama.llama_vocab_n_tokens(self._vocab)
        trained = llama.llama_model_n_ctx_train(self._model)
        if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 2):
            raise DecodekitError(f"context must be an integer >= 2, got {context!r}")
        self.context_length: int = min(trained, context or DEFAULT_CONTEXT)
        self.max_sequences: int = llama.llama_max_parallel_sequences()
        self._context = handles["context"] = self._new_context()
        self._memory = llama.llama_get_memory(self._context)
        self._batch = handles["batch"] = llama.llama_batch_init(BATCH, 0, self.max_sequences)
        self._views = _BatchViews(self._batch)
        self.eos_token_ids: set[int] = {t for t in range(self.vocab_size) if llama.llama_vocab_is_eog(self._vocab, t)}
        self.weight_type: str = _weight_type(self._model, llama)
        self.generation = 0  # bumped by new_cache(): older caches refuse to be used
        self.latency = LatencyCurve()

    def _new_context(self):
        llama = self._llama
        params = llama.llama_context_default_params()
        params.n_ctx = self.context_length
        params.n_batch = params.n_ubatch = BATCH
        params.n_seq_max = self.max_sequences  # sequence 0 plus one per tree branch
        params.kv_unified = True  # all sequences share the cells, so branches share the prefix
        params.n_threads = params.n_threads_batch = self.threads
        # Off, as llama-cpp-python's Llama has it: with flash attention (llama.cpp's "auto")
        # greedy output differs from llama-cpp-python's own within 20 tokens on most prompts.
        params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        context = llama.llama_init_from_model(self._model, params)
        if not context:
            raise UnsupportedModelError(f"llama.cpp could not create a context of {self.context_length} positions "
                                        f"for {self.name} (out of memory?): pass a smaller context=")
        return context

    @property
    def identity(self) -> str:
        return f"{self.name} (llama.cpp, {self.weight_type}) on cpu, {self.threads} threads"

    @property
    def dtype_name(self) -> str:
        return TIE_CLASSES.get(self.weight_type, "q8")

    def new_cache(self) -> LlamaCppCache:
        self._llama.llama_memory_clear(self._memory, True)
        self.generation += 1
        return LlamaCppCache(self._llama, self._memory, self, self.generation)

    def synchronize(self) -> None:
        self._llama.llama_synchronize(self._context)

    def forward(self, pending: list[int], draft: Draft, cache) -> torch.Tensor:
        """Run [pending + draft] on top of the cache; return logits [1 + len(draft), vocab]."""
        if not isinstance(cache, LlamaCppCache):
            raise TypeError(f"the llama.cpp backend needs its own cache (new_cache()), got {type(cache).__name__}")
        cache.check_live()
        if not pending:
            raise ValueError("forward needs at least one pending token (the last committed one)")
        if cache.tree is not None:  # its branch cells would be visible to this forward's branches
            raise ValueError("the last tree forward on this cache was not committed: call keep() or crop() first")
        start, num_pending = len(cache), len(pending)
        tokens = pending + draft.tokens
        if start + len(tokens) > self.context_length:
            raise DecodekitError(f"{start + len(tokens)} positions do not fit the context of {self.context_length}")
        positions = list(range(start, start + num_pending))
        if draft.parents is None:
            positions += range(start + num_pending, start + len(tokens))
            sequences = None
        else:
            tree = TreeLayout.of(draft.parents)
            if tree.count >= self.max_sequences:
                raise DecodekitError(f"a draft tree with {tree.count} branches exceeds llama.cpp's "
                                     f"{self.max_sequences - 1} sequences")
            for branch in range(1, tree.count + 1):  # each branch starts from the committed text
                self._llama.llama_memory_seq_cp(self._memory, COMMITTED, branch, -1, -1)
            positions += [start + num_pending - 1 + d for d in depths(draft.parents)]
            everyone = list(range(tree.count + 1))
            sequences = [everyone] * num_pending + tree.sequences
            cache.tree = tree
        cache.length = start + len(tokens)
        return self._decode(tokens, positions, sequences, first_output=num_pending - 1)

    def _decode(self, tokens: list[int], positions: list[int], sequences: list[list[int]] | None,
                first_output: int) -> torch.Tensor:
        """llama_decode in batches of BATCH; logits of rows first_output.. as [rows, vocab]."""
        rows = []
        for begin in range(0, len(tokens), BATCH):
            end = min(begin + BATCH, len(tokens))
            self._views.fill(tokens[begin:end], positions[begin:end],
                             None if sequences is None else sequences[begin:end], max(0, first_output - begin))
            status = self._llama.llama_decode(self._context, self._batch)
            if status != 0:
                raise DecodekitError(f"llama.cpp could not decode the batch (llama_decode returned {status}"
                                     f"{': no room left in the context' if status == 1 else ''})")
            wanted = end - max(begin, first_output)
            if wanted > 0:
                logits = self._llama.llama_get_logits(self._context)
                rows.append(np.ctypeslib.as_array(logits, shape=(wanted, self.vocab_size)).copy())
        return torch.from_numpy(rows[0] if len(rows) == 1 else np.concatenate(rows))

    # ------------------------------------------------------------------ tokenizer

    def encode(self, text: str) -> list[int]:
        return self._tokenize(text, add_special=True)

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        raw = text.encode("utf-8")
        capacity = len(raw) + 16
        for _ in range(2):
            buffer = (self._llama.llama_token * capacity)()
            count = self._llama.llama_tokenize(self._vocab, raw, len(raw), buffer, capacity, add_special, True)
            if count >= 0:
                return list(buffer[:count])
            capacity = -count  # too small: llama.cpp says how many are needed
        raise DecodekitError(f"llama.cpp could not tokenize a text of {len(raw)} bytes")

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, special tokens left out."""
        if not ids:
            return ""
        tokens = (self._llama.llama_token * len(ids))(*ids)
        capacity = 8 * len(ids) + 16
        for _ in range(2):
            buffer = ctypes.create_string_buffer(capacity)
            count = self._llama.llama_detokenize(self._vocab, tokens, len(ids), buffer, capacity, False, False)
            if count >= 0:
                return buffer.raw[:count].decode("utf-8", errors="replace")
            capacity = -count
        raise DecodekitError(f"llama.cpp could not detokenize {len(ids)} tokens")

    @functools.cached_property
    def _chat_template(self) -> str | None:
        template = self._llama.llama_model_chat_template(self._model, None)
        return template.decode("utf-8") if template else None

    @property
    def has_chat_template(self) -> bool:
        return self._chat_template is not None

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        if self._chat_template is None:
            raise DecodekitError(f"{self.name} has no chat template: pass a plain prompt instead of messages")
        text = render(self._chat_template, messages, self._token_text(self._llama.llama_vocab_bos(self._vocab)),
                      self._token_text(self._llama.llama_vocab_eos(self._vocab)))
        return self._tokenize(text, add_special=False)  # the template writes the special tokens itself

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.llama_vocab_get_text(self._vocab, token).decode("utf-8", errors="replace")

    @functools.cached_property
    def _grammar_tokenizer(self) -> LLTokenizer:
        import llguidance.llamacpp

        try:
            return llguidance.llamacpp.lltokenizer_from_vocab(self._vocab, n_vocab=self.vocab_size,
                                                              eos_token=sorted(self.eos_token_ids))
        except Exception as e:  # llguidance raises plain exceptions for vocabularies it cannot map
            raise UnsupportedModelError(f"{self.name}: llguidance cannot map this vocabulary for grammars: {e}") from None

    def grammar_tokenizer(self) -> LLTokenizer:
        """The vocabulary as llguidance maps it (built once: it takes about a second)."""
        return self._grammar_tokenizer


class _BatchViews:
    """numpy views of a llama_batch's arrays: filling a 500-token prompt element by element
    through ctypes would cost milliseconds."""

    def __init__(self, batch):
        self.batch = batch
        self.token = np.ctypeslib.as_array(batch.token, shape=(BATCH,))
        self.pos = np.ctypeslib.as_array(batch.pos, shape=(BATCH,))
        self.n_seq_id = np.ctypeslib.as_array(batch.n_seq_id, shape=(BATCH,))
        self.logits = np.ctypeslib.as_array(batch.logits, shape=(BATCH,))
        for row in range(BATCH):
            batch.seq_id[row][0] = COMMITTED
        self.branched_rows = 0  # rows [0, branched_rows) may hold tree sequence ids

    def fill(self, tokens: list[int], positions: list[int], sequences: list[list[int]] | None, first_output: int):
        n = len(tokens)
        self.batch.n_tokens = n
        self.token[:n] = tokens
        self.pos[:n] = positions
        self.logits[:n] = 0
        self.logits[first_output:n] = 1
        if sequences is None:
            for row in range(self.branched_rows):  # back to sequence 0 only
                self.batch.seq_id[row][0] = COMMITTED
            self.branched_rows = 0
            self.n_seq_id[:n] = 1
            return
        for row, ids in enumerate(sequences):
            self.n_seq_id[row] = len(ids)
            target = self.batch.seq_id[row]
            for j, sequence in enumerate(ids):
                target[j] = sequence
        self.branched_rows = max(self.branched_rows, n)


def _weight_type(model, llama) -> str:
    """The GGUF's weight type as llama.cpp names it: 'Q4_1', 'Q4_K_M', 'BF16', 'F32', ..."""
    ftype = llama.llama_model_ftype(model)
    for name in dir(llama):
        if name.startswith("LLAMA_FTYPE_") and name != "LLAMA_FTYPE_GUESSED" and getattr(llama, name) == ftype:
            return name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
    return f"ftype {ftype}"


def _free(llama, handles: dict) -> None:
    if "batch" in handles:
        llama.llama_batch_free(handles["batch"])
    if "context" in handles:
        llama.llama_free(handles["context"])
    llama.llama_model_free(handles["model"])


if TYPE_CHECKING:
    from decodekit.backend import Backend

    _conforms: type[Backend] = LlamaCppBackend
