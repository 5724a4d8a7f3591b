"""Token healing: a prompt that ends mid-word ("...is Par") ends on a token the model rarely
saw followed by the rest of its word, since training text tokenizes " Paris" as one token. So
the prompt's last token is taken back and the output is constrained to start with its text:
the model is free to write " Paris" in one token, as it would after the unsplit prompt.

The constraint is a grammar, the removed text followed by whatever the user's grammar asks for
(or any text), so it rides on the same loop part as every other grammar. Without a grammar of
the user's it retires once the removed text is covered: from then on nothing is masked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import llguidance
import torch

from decodekit.constraints.constraint import GrammarConstraint
from decodekit.grammar import Grammar
from decodekit.types import Draft

MAX_BACKUP = 3  # tokens a prompt may lose: one, or a few more to end on a whole character


@dataclass(frozen=True)
class Healing:
    prompt_ids: list[int]  # the prompt without the tokens taken back
    prefix: str  # their text, which the output must start with

    @property
    def active(self) -> bool:
        return bool(self.prefix)


def heal_prompt(prompt_ids: list[int], tokenizer: llguidance.LLTokenizer) -> Healing:
    """Take back the prompt's last token (more if it ends inside a UTF-8 character). Nothing is
    taken back from a one-token prompt or across a special token (a chat template's markers)."""
    for count in range(1, min(MAX_BACKUP, len(prompt_ids) - 1) + 1):
        removed = prompt_ids[-count:]
        if any(tokenizer.is_special_token(t) for t in removed):
            break
        try:
            prefix = tokenizer.decode_bytes(removed).decode("utf-8")
        except UnicodeDecodeError:
            continue  # a character split across tokens: take back one more
        return Healing(prompt_ids[:-count], prefix)
    return Healing(list(prompt_ids), "")


def healed_grammar(prefix: str, grammar: Grammar | None) -> Grammar:
    """`prefix`, then what `grammar` matches (any text without one)."""
    literal = json.dumps(prefix)  # a Lark string literal takes JSON's escapes
    if grammar is None:
        lark = f"start: PREFIX REST\nPREFIX: {literal}\nREST: /(?s:.*)/"
        return Grammar("lark", lark, llguidance.LLMatcher.grammar_from_lark(lark))
    inner = json.loads(grammar.llguidance)["grammars"]
    inner[0] = {**inner[0], "name": "healed_inner"}
    top = {"grammars": [{"name": "healed", "lark_grammar": f"start: PREFIX @healed_inner\nPREFIX: {literal}"}, *inner]}
    return Grammar(grammar.kind, grammar.source, json.dumps(top), grammar.schema)


class HealingConstraint:
    """A GrammarConstraint for `healed_grammar(prefix, grammar)`; with no grammar of the user's,
    it stops constraining once the output covers the prefix."""

    def __init__(self, inner: GrammarConstraint, prefix: str, user_grammar: bool, tokenizer: llguidance.LLTokenizer):
        self.inner = inner
        self.left = len(prefix.encode("utf-8"))  # prefix bytes not yet covered by committed tokens
        self.user_grammar = user_grammar
        self.tokenizer = tokenizer

    @property
    def retired(self) -> bool:
        return not self.user_grammar and self.left <= 0

    @property
    def completed(self) -> bool | None:
        return self.inner.completed if self.user_grammar else None

    def trim(self, draft: Draft) -> tuple[Draft, torch.Tensor | None]:
        return (draft, None) if self.retired else self.inner.trim(draft)

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        return self.inner.apply(logits, allowed)

    def commit(self, tokens: list[int]) -> list[int]:
        if self.retired:
            return []
        forced = self.inner.commit(tokens)
        self.left -= len(self.tokenizer.decode_bytes(tokens + forced))
        return forced


class PrefixStripper:
    """Drops the healed prefix from the start of the streamed text: the caller's prompt already
    ends with it. (A tokenizer that drops a leading space when decoding on its own is allowed for.)"""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.held = ""
        self.done = not prefix

    def push(self, text: str) -> str:
        if self.done:
            return text
        self.held += text
        for prefix in (self.prefix, self.prefix.lstrip()):
            if self.held.startswith(prefix):
                self.done = True
                return self.held[len(prefix):]
        if len(self.held) >= len(self.prefix):  # cannot happen under the constraint; never hide text
            self.done = True
            return self.held
        return ""
