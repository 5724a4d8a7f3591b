"""Diverse beam search (Vijayakumar et al., 2018), as transformers 4.55 ran it (group beam search,
the last release that shipped it in the library), so its ids and scores can be checked against
that release's.

The num_beams beams are split into G groups of num_beams / G. Each step the groups choose in
turn; group g's log-probabilities are lowered by λ (`diversity_penalty`) times the number of
earlier groups' beams that chose each token at this same step (Hamming diversity), and within
the group it is plain beam search over those penalised scores: the top 2 · group size
continuations, of which those among the first group-size ones that end on an end-of-sequence
token become finished hypotheses (score / length ^ length_penalty, the end token counted), and
the best group-size that do not end run on. A group is done when it holds group-size finished
hypotheses and (early_stopping False) none of its running beams can beat the worst of them.

At the length limit every group still running adds its beams as finished hypotheses, and the
groups' hypotheses are pooled and ranked together. Scores include the diversity penalties, as in
transformers; `Hypothesis.log_prob` is the model's own log-probability.
"""

from __future__ import annotations

import torch

from decodekit.errors import DecodekitError
from decodekit.search.beam import NEG, check_beam_options, check_count, check_finite
from decodekit.search.loop import Hypothesis, Rows


class GroupHypotheses:
    """A group's best finished hypotheses, as transformers 4.55's BeamHypotheses keeps them."""

    def __init__(self, size: int, length_penalty: float, early_stopping: bool | str, max_new_tokens: int):
        self.size, self.length_penalty, self.early_stopping = size, length_penalty, early_stopping
        self.max_new_tokens = max_new_tokens
        self.kept: list[tuple[float, list[int], float]] = []  # (score, tokens, log p)
        self.worst = 1e9

    def add(self, tokens: list[int], penalised: float, log_p: float) -> None:
        score = penalised / len(tokens) ** self.length_penalty
        if len(self.kept) < self.size or score > self.worst:
            self.kept.append((score, tokens, log_p))
            if len(self.kept) > self.size:
                ranked = sorted(range(len(self.kept)), key=lambda i: self.kept[i][0])
                self.worst = self.kept[ranked[1]][0]
                del self.kept[ranked[0]]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_running: float, length: int) -> bool:
        if len(self.kept) < self.size:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping == "never" and self.length_penalty > 0:
            length = self.max_new_tokens
        return self.worst >= best_running / length ** self.length_penalty


class DiverseBeamSearch:
    needs_hidden = False

    def __init__(self, num_beams: int = 4, num_beam_groups: int = 2, diversity_penalty: float = 1.0,
                 length_penalty: float = 1.0, early_stopping: bool | str = False, num_return_sequences: int = 0):
        check_beam_options(num_beams, length_penalty, early_stopping, num_return_sequences)
        check_count(num_beam_groups, "num_beam_groups")
        if num_beams % num_beam_groups:
            raise DecodekitError(f"num_beam_groups ({num_beam_groups}) must divide num_beams ({num_beams})")
        check_finite(diversity_penalty, "diversity_penalty")
        if diversity_penalty < 0:
            raise DecodekitError(f"diversity_penalty must be >= 0, got {diversity_penalty!r}")
        self.num_beams, self.groups = num_beams, num_beam_groups
        self.group_size = num_beams // num_beam_groups
        self.diversity_penalty, self.length_penalty = float(diversity_penalty), float(length_penalty)
        self.early_stopping = early_stopping
        self.num_return = num_return_sequences or num_beams

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids = max_new_tokens, eos_ids
        self.filler = min(eos_ids) if eos_ids else 0  # what a finished group's rows are fed
        self.beams: list[list[int]] = [[] for _ in range(self.num_beams)]
        # The first beam of each group starts at 0, the others at NEG: a group's beams differ from step 1.
        self.scores = [0.0 if row % self.group_size == 0 else NEG for row in range(self.num_beams)]
        self.log_ps = [0.0] * self.num_beams
        self.finished = [GroupHypotheses(self.group_size, self.length_penalty, self.early_stopping, max_new_tokens)
                         for _ in range(self.groups)]
        self.done = [False] * self.groups

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        log_p = torch.log_softmax(logits.float(), -1).expand(self.num_beams, -1)  # one row at the first step
        vocab = log_p.shape[-1]
        length = len(self.beams[0]) + 1
        parents: list[int] = []
        tokens: list[int] = []
        scores: list[float] = []
        log_ps: list[float] = []
        for group in range(self.groups):
            rows = range(group * self.group_size, (group + 1) * self.group_size)
            if self.done[group]:  # its rows run on, ignored, as in transformers
                parents += [rows[0]] * self.group_size
                tokens += [self.filler] * self.group_size
                scores += [0.0] * self.group_size
                log_ps += [0.0] * self.group_size
                continue
            penalty = torch.bincount(torch.tensor(tokens, dtype=torch.long), minlength=vocab)[:vocab]
            penalised = log_p[rows.start: rows.stop] - self.diversity_penalty * penalty
            total = penalised + torch.tensor(self.scores[rows.start: rows.stop])[:, None]
            top_scores, top_index = torch.topk(total.flatten(), k=min(2 * self.group_size, total.numel()))
            chosen = 0
            for rank, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
                beam, token = divmod(index, vocab)
                row = rows.start + beam
                token_log_p = self.log_ps[row] + float(log_p[row, token])
                if token in self.eos_ids:
                    if rank < self.group_size:
                        self.finished[group].add(self.beams[row] + [token], score, token_log_p)
                    continue
                parents.append(row)
                tokens.append(token)
                scores.append(score)
                log_ps.append(token_log_p)
                chosen += 1
                if chosen == self.group_size:
                    break
            self.done[group] = self.finished[group].is_done(float(top_scores[0]), length)
        self.beams = [self.beams[parent] + [token] for parent, token in zip(parents, tokens)]
        self.scores, self.log_ps = scores, log_ps
        if logits.shape[0] == 1:  # the prompt's one row in the cache stands for every beam
            parents = [0] * len(parents)
        if all(self.done):
            return None
        if length >= self.max_new_tokens:
            for group in range(self.groups):
                if not self.done[group]:
                    for row in range(group * self.group_size, (group + 1) * self.group_size):
                        self.finished[group].add(self.beams[row], self.scores[row], self.log_ps[row])
            return None
        return Rows(parents, tokens)

    def result(self) -> list[Hypothesis]:
        pooled = sorted((h for group in self.finished for h in group.kept), key=lambda h: -h[0])
        return [Hypothesis(tokens, score, log_p) for score, tokens, log_p in pooled[: self.num_return]]
