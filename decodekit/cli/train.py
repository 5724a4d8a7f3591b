"""`decodekit train acceptance-head`: fit SpecDec++'s acceptance head for a draft/target pair."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from decodekit.cli.errors import exit_on_user_error
from decodekit.errors import DecodekitError

stderr = Console(stderr=True)
train_app = typer.Typer(help="Train what a drafter can learn ahead of time.", no_args_is_help=True)


@train_app.command("acceptance-head")
def acceptance_head(
    model: str = typer.Option(..., "--model", "-m", help="The target model (zoo name, folder, .gguf or hub id)."),
    draft: str = typer.Option(..., help="The draft model, with the target's tokenizer."),
    dtype: str = typer.Option("fp32", help="The dtype both models run in (a head is saved per dtype)."),
    per_category: int = typer.Option(8, help="Spec-Bench prompts per category, taken from the end of each category "
                                             "(the benchmark takes the first ones)."),
    max_new_tokens: int = typer.Option(64, help="Tokens generated per prompt."),
    draft_len: int = typer.Option(8, help="Tokens per draft while collecting."),
    epochs: int = typer.Option(40, help="Passes over the collected tokens."),
    threads: int | None = typer.Option(None, help="CPU threads for torch."),
):
    """Collect (draft hidden state, accepted?) pairs by decoding with the pair, train the head on the
    CPU, and save it in the model cache, where `draft-model[predictor=head]` finds it."""
    from decodekit.drafters.acceptance_head import head_path, save_head, train_head
    from decodekit.models.hf import load_backend, shared_backend
    from decodekit.training import collect_acceptance, training_questions

    with exit_on_user_error():
        for name, value in (("--per-category", per_category), ("--max-new-tokens", max_new_tokens),
                            ("--draft-len", draft_len), ("--epochs", epochs)):
            if value < 1:
                raise DecodekitError(f"{name} must be >= 1, got {value}")
        questions = training_questions(per_category)
        with stderr.status(f"loading {model} and {draft} ({dtype})"):
            target = load_backend(model, dtype=dtype, threads=threads)
            draft_backend = shared_backend(draft, dtype)
        with _progress() as progress:
            task = progress.add_task("collecting", total=len(questions))
            features, labels = collect_acceptance(target, draft_backend, questions, max_new_tokens, draft_len,
                                                  on_prompt=lambda: progress.advance(task))
            fit = progress.add_task("training", total=epochs)
            result = train_head(features, labels, epochs=epochs,
                                on_epoch=lambda epoch, loss: progress.update(fit, advance=1, description=f"held-out {loss:.3f}"))
        path = head_path(draft, model, dtype)
        save_head(result.head, path, result.metrics)
        m = result.metrics
        stderr.print(f"{len(labels)} draft tokens, {m['accepted_share']:.0%} accepted; held out: accuracy "
                     f"{m['held_out_accuracy']:.1%}, Brier {m['held_out_brier']:.3f} (base rate {m['base_rate_brier']:.3f})",
                     highlight=False)
        print(path)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=stderr)
