"""llama-cpp-python's own decoding, on the same GGUF and threads as a LlamaCppBackend: what a
user runs today instead of decodekit (`Llama.generate`, plain or with its
`LlamaPromptLookupDecoding`). The benchmark times it beside decodekit's methods, and the
exactness tests compare decodekit's greedy tokens with its.
"""

from __future__ import annotations

from collections.abc import Callable

from decodekit.errors import DecodekitError
from decodekit.models.llamacpp.backend import LlamaCppBackend
from decodekit.models.llamacpp.library import lib
from decodekit.sampling import SamplingConfig

LOOKUP_TOKENS = 10  # LlamaPromptLookupDecoding's default num_pred_tokens


class LlamaCppOwn:
    """A `llama_cpp.Llama` beside `backend` (its own context on the same file)."""

    def __init__(self, backend: LlamaCppBackend, lookup: int | None = None):
        lib()  # quiet logging first
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.backend = backend
        draft = LlamaPromptLookupDecoding(num_pred_tokens=lookup) if lookup else None
        # logits_all=True with a draft model: Llama turns it on itself but sizes its logits
        # buffer from the argument (0.3.36), which overflows once a prompt passes n_batch tokens.
        self.llm = Llama(model_path=str(backend.path), n_ctx=backend.context_length, n_batch=512,
                         n_threads=backend.threads, n_threads_batch=backend.threads, draft_model=draft,
                         logits_all=draft is not None, verbose=False)

    def generate(self, prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig | None = None,
                 seed: int = 0, on_first_token: Callable[[], None] | None = None) -> list[int]:
        """New token ids, ending with the EOS token when one came (as decodekit's output does).
        `on_first_token` is called once the first new token exists."""
        sampling = sampling or SamplingConfig()
        if sampling.epsilon_cutoff or sampling.eta_cutoff:
            raise DecodekitError("llama-cpp-python's own sampler has no epsilon or eta cutoff: "
                                 "compare those settings with decodekit's methods only")
        # The prompt is processed anew every time, as decodekit processes it: no prefix reuse
        # from the previous call (Llama.generate would otherwise skip the shared part).
        self.llm.reset()
        self.llm.set_seed(seed)
        out: list[int] = []
        tokens = self.llm.generate(prompt_ids, temp=sampling.temperature, top_k=sampling.top_k,
                                   top_p=sampling.top_p, min_p=sampling.min_p, typical_p=sampling.typical_p,
                                   repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, reset=True)
        for token in tokens:
            if not out and on_first_token is not None:
                on_first_token()
            out.append(token)
            if token in self.backend.eos_token_ids or len(out) >= max_new_tokens:
                break
        return out
