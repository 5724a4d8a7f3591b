"""OpenAI's request bodies, typed and checked: what /v1/completions and /v1/chat/completions take.

Fields are strict (a string where a number belongs is an error, not coerced). Fields of OpenAI's
API that decodekit does not implement are accepted only at their "off" value, so a client that
asks for them learns it at once instead of getting an answer that silently ignored them.
Everything wrong becomes an `ApiError`: a status and OpenAI's error body naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ApiError(Exception):
    """An HTTP error with OpenAI's body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


OptionValue = bool | int | float | str


class Decoding(BaseModel):
    """decodekit's extra field: the decoding method for this request (the server's default otherwise)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    method: str = Field(description="A method as on the command line: 'prompt-lookup', 'token-recycling[k=4]', "
                                    "'mirostat', 'beam[num_beams=4]', ...")
    options: dict[str, OptionValue] = Field(default_factory=dict, description="The method's options.")
    drafter: str | None = Field(None, description="With a strategy method: the drafting method that speeds it up.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class _Generation(BaseModel):
    """Fields both endpoints share."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # not OpenAI's, but vLLM's and llama.cpp's servers take it too
    min_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    decoding: Decoding | None = None
    user: str | None = None
    # OpenAI's fields that decodekit does not implement: only their "off" values are accepted.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None


class CompletionRequest(_Generation):
    prompt: str | list[int] | list[str]
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


# Unsupported fields and the test for "switched off".
_OFF = {
    "presence_penalty": lambda v: v in (None, 0), "frequency_penalty": lambda v: v in (None, 0),
    "logit_bias": lambda v: not v, "logprobs": lambda v: v in (None, False), "top_logprobs": lambda v: v in (None, 0),
    "tools": lambda v: not v, "tool_choice": lambda v: v in (None, "none"), "functions": lambda v: not v,
    "echo": lambda v: not v, "best_of": lambda v: v in (None, 1), "suffix": lambda v: v is None,
}


def parse(model: type[_Generation], body: object) -> Any:
    """The request `body` (decoded JSON) as `model`, or an ApiError naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        request = model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param) from None
    for name, is_off in _OFF.items():
        if name in type(request).model_fields and not is_off(getattr(request, name)):
            raise ApiError(400, f"{name} is not supported by decodekit's server: leave it out", name)
    return request
