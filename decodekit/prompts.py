"""Prompts as token ids, checked: one place for how a conversation is shown to a model, so
that `generate`, `auto` and `bench` all measure and decode the same format.

A chat model gets its chat template. A base model (no template) gets a plain transcript,
"User: ...\\n\\nAssistant:", which is what such models continue sensibly.
"""

from __future__ import annotations

from collections.abc import Sequence

from decodekit.backend import Backend
from decodekit.errors import DecodekitError
from decodekit.settings import is_int


def conversation_ids(backend: Backend, messages: Sequence[dict]) -> list[int]:
    """`messages` ([{"role": ..., "content": ...}, ...]) as the model expects them."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise DecodekitError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for message in messages:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise DecodekitError(f"messages must be dicts with string 'role' and 'content', got {message!r}")
        _check_encodable(message["content"], f"the content of a {message['role']!r} message")
    if backend.has_chat_template:
        return backend.apply_chat_template(list(messages))
    transcript = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
    return backend.encode(transcript + "Assistant:")


def check_text(value: object, what: str) -> str:
    """Text a tokenizer can take: a non-empty string that is valid Unicode."""
    if not isinstance(value, str):
        raise DecodekitError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DecodekitError(f"{what} is empty")
    return _check_encodable(value, what)


def _check_encodable(text: str, what: str) -> str:
    # Bytes that are not UTF-8 reach Python's argv (and some readers) as lone surrogates,
    # which tokenizers reject with a TypeError that names neither the input nor the fix.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DecodekitError(f"{what} is not valid UTF-8 text: character {error.start} is "
                             f"{text[error.start]!r}; pass UTF-8 text") from None
    return text


def user_turn(text: str, system: str | None = None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def check_prompt_ids(ids: object, backend: Backend) -> list[int]:
    """Token ids a model can continue: a non-empty list of ids in its vocabulary that leaves
    room in the context for at least one new token."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise DecodekitError(f"prompt_ids must be a list of token ids, got {type(ids).__name__}")
    if not ids:
        raise DecodekitError("prompt_ids is empty: the model needs at least one token to continue")
    for token in ids:
        if not is_int(token) or not 0 <= token < backend.vocab_size:
            raise DecodekitError(f"prompt_ids holds {token!r}, which is not a token id of {backend.name} "
                                 f"(ids are integers in [0, {backend.vocab_size}))")
    if len(ids) >= backend.context_length:
        raise DecodekitError(f"the prompt is {len(ids)} tokens, but {backend.name} has a context of "
                             f"{backend.context_length}: shorten it to leave room for the answer")
    return list(ids)
