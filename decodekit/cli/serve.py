"""`decodekit serve`: the OpenAI-compatible server and its playground."""

from __future__ import annotations

import ipaddress

import typer
from rich.console import Console

from decodekit.cli.errors import exit_on_user_error
from decodekit.cli.options import AMATEUR, BACKEND, DTYPE, QUANT, THREADS, model_flags, model_form
from decodekit.errors import DecodekitError
from decodekit.methods import parse_method
from decodekit.models.zoo import DEFAULT_MODEL
from decodekit.server.limits import ServerLimits
from decodekit.settings import DEFAULT_MAX_NEW_TOKENS

stderr = Console(stderr=True)
LIMITS = ServerLimits(max_tokens=2048, default_max_tokens=DEFAULT_MAX_NEW_TOKENS)  # the flags' defaults


def serve(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Zoo name, local folder, .gguf file or hub id."),
    method: str = typer.Option("prompt-lookup", help="Default decoding method, options in brackets "
                                                     "('token-recycling[k=4]'); a request's `decoding` field may "
                                                     "choose another."),
    drafter: str | None = typer.Option(None, help="With a strategy method: the drafting method that speeds it up."),
    amateur: str | None = AMATEUR,
    draft: str | None = typer.Option(None, help="Draft model for draft-model, spectr, rsd and pearl."),
    backend: str = BACKEND,
    dtype: str | None = DTYPE,
    quant: str | None = QUANT,
    threads: int | None = THREADS,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default: only this machine)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="DECODEKIT_API_KEY",
                                       help="Require 'Authorization: Bearer KEY' on /v1 (or set DECODEKIT_API_KEY)."),
    max_queue: int = typer.Option(32, "--max-queue", help="Requests that may wait for the model; more get 429."),
    max_tokens_limit: int = typer.Option(2048, "--max-tokens-limit", help="The most tokens one request may ask for."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds a request may take, queue wait included."),
    max_beams: int = typer.Option(LIMITS.beams, "--max-beams", help="Largest num_beams (and beam groups, returned "
                                                                     "sequences) a request may ask for."),
    max_drafts: int = typer.Option(LIMITS.drafts, "--max-drafts", help="Largest num_drafts, or draft-tree width, "
                                                                        "a request may ask for."),
    max_tree_nodes: int = typer.Option(LIMITS.tree_nodes, "--max-tree-nodes", help="Most tokens one step may "
                                       "draft or guess (max_draft, max_nodes, window, depth, ...)."),
    max_k: int = typer.Option(LIMITS.k, "--max-k", help="Largest k or top_k (token recycling's candidate table)."),
    max_stop_strings: int = typer.Option(LIMITS.stop_strings, "--max-stop-strings", help="Most stop strings per "
                                                                                          "request."),
    max_stop_length: int = typer.Option(LIMITS.stop_length, "--max-stop-length", help="Longest stop string, in "
                                                                                       "characters."),
    max_n: int = typer.Option(LIMITS.n, "--max-n", help="Most choices (n) per request."),
):
    """Serve a model over OpenAI's API, with a playground at http://HOST:PORT/."""
    import uvicorn

    from decodekit.models.auto_form import timing_method
    from decodekit.models.backends import check_backend, load_model
    from decodekit.server import DecodingChoice, create_app

    with exit_on_user_error():
        counts = {"--max-queue": max_queue, "--max-tokens-limit": max_tokens_limit, "--max-beams": max_beams,
                  "--max-drafts": max_drafts, "--max-tree-nodes": max_tree_nodes, "--max-k": max_k,
                  "--max-stop-strings": max_stop_strings, "--max-stop-length": max_stop_length, "--max-n": max_n}
        for flag, value in counts.items():
            if value < 1:
                raise DecodekitError(f"{flag} must be at least 1, got {value}")
        if not timeout > 0:
            raise DecodekitError(f"--timeout must be > 0 seconds, got {timeout:g}")
        if not 0 < port < 65536:
            raise DecodekitError(f"--port must be in 1..65535, got {port}")
        options, drafter = model_flags(method, drafter, amateur, draft)
        default = DecodingChoice.parse(parse_method(method).name, options, drafter)
        dtype, quant = model_form(backend, dtype, quant)
        check_backend(backend, dtype, quant, None)
        with stderr.status(f"loading {model}") as status:
            loaded = load_model(model, backend, dtype=dtype, quant=quant, threads=threads,
                                timed_with=timing_method(default.method, default.options, default.drafter),
                                progress=status.update)
            limits = ServerLimits(max_tokens=max_tokens_limit,
                                  default_max_tokens=min(DEFAULT_MAX_NEW_TOKENS, max_tokens_limit),
                                  beams=max_beams, drafts=max_drafts, tree_nodes=max_tree_nodes, k=max_k,
                                  stop_strings=max_stop_strings, stop_length=max_stop_length, n=max_n,
                                  draft=draft, amateur=amateur)
            app = create_app(loaded, model, default, limits=limits, api_key=api_key, max_queue=max_queue,
                             timeout_s=timeout)
    if not _is_loopback(host) and api_key is None:
        stderr.print(f"[yellow]warning: listening on {host} without --api-key: anyone who can reach it can use it[/]")
    form_choice = getattr(loaded, "form_choice", None)
    if form_choice:
        stderr.print(form_choice.describe(), style="dim", markup=False, highlight=False)
    stderr.print(f"decodekit serving {model} ({default.label()}) at http://{host}:{port}/ — playground there, "
                 f"OpenAI API under /v1")
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish for up to 30 s, then
    # cancels the rest; the engine then stops its worker (server/app.py's lifespan).
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
