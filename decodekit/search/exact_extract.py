"""exact-extract: the most probable answer that is an exact span of a given passage, found
exactly with the model's scores (after "How Optimal is Greedy Decoding for Extractive Question
Answering?", Castel et al., 2022), instead of decoding greedily and hoping the answer is a span.

A span s of the passage's tokens scores

    log p(s | prompt) + log p(end | prompt + s)

where "end" is any end-of-sequence token (or the first token of `end`, e.g. a newline). The
search walks the trie of the passage's spans breadth-first, one forward per depth with one row
per live prefix: a prefix's log-probability
bounds every span that extends it (log-probabilities are ≤ 0), so a prefix no better than the
n-th best finished span is dropped. Nothing that could win is ever dropped: the result is exact,
not a beam approximation.

The passage is matched in the model's tokenisation of the passage on its own. An answer that the
prompt's tokenisation would split differently (a word glued to the text before it) is a span of
that tokenisation only if it is one here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.search.beam import check_count
from decodekit.search.loop import Hypothesis, Rows

if TYPE_CHECKING:
    from decodekit.backend import Backend


class ExactExtract:
    needs_hidden = False

    def __init__(self, passage: str | list[int] = "", num_return_sequences: int = 1, end: str = ""):
        """`end`: text that ends an answer besides end-of-sequence (its first token counts), e.g.
        "\n" for few-shot prompts whose answers end a line."""
        if isinstance(passage, str) and not passage.strip():
            raise DecodekitError("exact-extract needs passage=, the text the answer must be a span of")
        if isinstance(passage, list) and not (passage and all(isinstance(t, int) for t in passage)):
            raise DecodekitError("exact-extract: passage must be text or a non-empty list of token ids")
        check_count(num_return_sequences, "exact-extract: num_return_sequences")
        if not isinstance(end, str):
            raise DecodekitError(f"exact-extract: end must be text, got {end!r}")
        self.passage_option, self.num_return, self.end = passage, num_return_sequences, end
        self.passage: list[int] = passage if isinstance(passage, list) else []
        self.end_ids: list[int] = []

    def attach(self, backend: Backend) -> None:
        """Tokenise a text passage with the model's tokenizer (special tokens left out)."""
        bos = getattr(getattr(backend, "tokenizer", None), "bos_token_id", None)

        def encode(text: str) -> list[int]:
            ids = backend.encode(text)
            return ids[1:] if ids and ids[0] == bos else ids

        if isinstance(self.passage_option, str):
            self.passage = encode(self.passage_option)
        self.end_ids = encode(self.end)[:1] if self.end else []

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids = max_new_tokens, sorted(set(eos_ids) | set(self.end_ids))
        if not self.eos_ids:
            raise DecodekitError("exact-extract scores how likely an answer ends: the model needs an end-of-sequence "
                                 "token, or pass end=")
        # A live prefix: (its tokens, where it starts in the passage, its log-probability).
        self.live: list[tuple[list[int], list[int], float]] = [([], list(range(len(self.passage))), 0.0)]
        self.finished: list[tuple[float, list[int]]] = []  # (score, span with its end token), best first

    def _bound(self) -> float:
        return self.finished[-1][0] if len(self.finished) >= self.num_return else -torch.inf

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        log_p = torch.log_softmax(logits.float(), -1)
        for row, (tokens, _, score) in enumerate(self.live):
            if tokens:  # the empty answer is not a span
                end = float(torch.logsumexp(log_p[row, self.eos_ids], 0))
                self._finish(score + end, tokens + [self.eos_ids[0]])
        parents: list[int] = []
        grown: list[tuple[list[int], list[int], float]] = []
        bound = self._bound()
        for row, (tokens, starts, score) in enumerate(self.live):
            if len(tokens) + 2 > self.max_new_tokens:  # a longer answer and its end token would not fit
                continue
            children: dict[int, list[int]] = {}
            for start in starts:
                if start + len(tokens) < len(self.passage):
                    children.setdefault(self.passage[start + len(tokens)], []).append(start)
            for token, child_starts in children.items():
                child_score = score + float(log_p[row, token])
                if child_score > bound:  # else no span through this prefix can enter the n-best
                    parents.append(row)
                    grown.append((tokens + [token], child_starts, child_score))
        self.live = grown
        return Rows(parents, [tokens[-1] for tokens, _, _ in grown]) if grown else None

    def _finish(self, score: float, tokens: list[int]) -> None:
        self.finished = sorted(self.finished + [(score, tokens)], key=lambda f: -f[0])[: self.num_return]

    def result(self) -> list[Hypothesis]:
        return [Hypothesis(tokens, score, score) for score, tokens in self.finished]
