"""Judge the divergences of a `decodekit bench --strategy` run again, with today's judge
(Strategy.tie_scores), without decoding anything again: the ids in results.jsonl stay as they
were; only each first divergence is recomputed (one forward of the strategy over AR's context).

    python benchmarks/rejudge_strategy.py benchmarks/qwen-cd-drafters-20 qwen2.5-coder-1.5b bf16 \
        contrastive-decoding qwen2.5-coder-0.5b

Writes rejudged.md beside the run's report.md and prints the verdicts.
"""

import sys
from pathlib import Path

from decodekit import Decoder
from decodekit.bench.dataset import load_questions
from decodekit.bench.divergence import check_record
from decodekit.bench.records import read_records
from decodekit.bench.report import divergence_rows, markdown_table
from decodekit.bench.runner import Conversation, ar_judge
from decodekit.models.hf import load_backend

run, model, dtype, strategy_name, amateur = Path(sys.argv[1]), *sys.argv[2:6]
backend = load_backend(model, dtype=dtype, threads=2)
strategy = Decoder(backend, strategy_name, amateur=amateur).strategy
records = read_records(run / "results.jsonl")
questions = {q.question_id: q for q in load_questions()}
ar = {r.question_id: r for r in records if r.method == "ar"}
others = [r for r in records if r.method != "ar"]
for record in others:
    reference, conversation, prompts = ar[record.question_id], Conversation(backend), []
    for turn, text in zip(reference.turns, questions[record.question_id].turns):
        prompts.append(conversation.prompt_ids(text))
        conversation.answer(turn.text)
    check_record(reference, record, ar_judge(backend, reference, prompts, strategy))
rows = divergence_rows(others)
bugs = sum(1 for r in others if r.divergence is not None and r.divergence.is_bug)
identical = sum(1 for r in others if r.identical_to_ar)
summary = (f"Re-judged with Strategy.tie_scores: {identical} of {len(others)} outputs identical to AR, "
           f"{len(rows)} divergences, {bugs} judged bugs.")
header = ["question", "category", "method", "turn", "position", "AR token", "method token", "score gap",
          "tolerance", "verdict"]
text = f"# {run.name}: divergences re-judged\n\n`python {' '.join(sys.argv)}`\n\n{summary}\n\n{markdown_table(header, rows)}\n"
(run / "rejudged.md").write_text(text, encoding="utf-8")
print(text)
