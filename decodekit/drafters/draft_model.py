"""Speculative decoding with a draft model (Leviathan et al., 2023; Chen et al., 2023).

A smaller model with the target's tokenizer drafts a chain, one token per forward; the target
verifies it in one forward. Under sampling settings the draft tokens are sampled from the draft
model's distribution under the same settings (temperature, top-k, top-p, min-p, typical-p) and
that distribution goes with the draft, so speculative sampling keeps the target's distribution
exactly. Under greedy settings the draft is the draft model's argmax.

How many tokens to draft (`stop`):
  "cost"       (default) after each drafted token, draft another only while the expected
               tokens per unit of time still rise: the target's forward-cost curve plus the
               draft model's own forwards, priced against the target's step (budget.py), and
               each token's acceptance predicted from the draft's confidence in it;
  "threshold"  SpecDec++ (Huang et al., 2024): stop once the predicted probability that some
               drafted token is rejected exceeds `threshold`;
  "fixed"      always `max_draft` tokens (the classic fixed K).
`predictor`: "confidence" (training-free, learned online) or "head" (SpecDec++'s trained
acceptance head, from `decodekit train acceptance-head`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from decodekit.budget import Budget, Rate
from decodekit.drafters.acceptance import ConfidenceCalibration
from decodekit.drafters.acceptance_head import AcceptanceHead, head_path, load_head
from decodekit.drafters.second_model import SecondModel, check_same_tokenizer, draft_generator, sample_or_argmax
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult
from decodekit.verify.random import Randomness

if TYPE_CHECKING:
    from decodekit.backend import Backend

STOPS = ("cost", "threshold", "fixed")
PREDICTORS = ("confidence", "head")
# Position 0 is never decided by the verifier (every prompt has a token), so its streams are free.
SEED_POSITION, SEED_STREAM = 0, 255


class ModelDrafterBase:
    """What every drafter built on a second model shares: attaching to the target, the second
    model's cache, its own random stream, and copies that share weights."""

    name = "model-drafter"

    def __init__(self, draft: str | Backend | None = None, draft_dtype: str = ""):
        self.draft, self.draft_dtype = draft, draft_dtype
        self.target: Backend | None = None
        self.model: SecondModel | None = None
        self.sampling = SamplingConfig()
        self.generator = torch.Generator().manual_seed(0)

    def check_draft_option(self) -> None:
        if self.draft is None or self.draft == "":
            raise DecodekitError(f"method '{self.name}' needs a draft model: draft='NAME' (CLI: --draft NAME), "
                                 "a smaller model with the target's tokenizer")
        if not isinstance(self.draft, str) and not hasattr(self.draft, "forward"):
            raise DecodekitError(f"draft must be a model name or a loaded backend, got {self.draft!r}")

    def make_second_model(self, target: Backend) -> Backend:
        """The draft model: loaded once per process (shared by drafters), on the target's
        device and backend, in the target's dtype (llama.cpp: the file's own quantisation) unless
        `draft_dtype` says otherwise."""
        if not isinstance(self.draft, str):
            assert self.draft is not None
            backend, label = self.draft, self.draft.name
        else:
            from decodekit.models.backends import shared_model  # the drafter stays backend-agnostic until here

            label = self.draft
            backend = shared_model(self.draft, like=target, dtype=self.draft_dtype)
        check_same_tokenizer(target, backend, label)
        return backend

    def attach(self, target: Backend) -> None:
        self.target = target
        self.model = SecondModel(self.make_second_model(target), target.vocab_size)

    def reset(self, prompt_ids: list[int], sampling: SamplingConfig, rng: Randomness) -> None:
        if self.model is None or self.target is None:
            raise DecodekitError(f"method '{self.name}' needs its model: use it through Decoder, which attaches it")
        self.model.reset()
        self.sampling = sampling
        self.generator = draft_generator(rng.uniform(SEED_POSITION, SEED_STREAM))

    def __deepcopy__(self, memo) -> ModelDrafterBase:
        # Copies (the benchmark's repeats) share the models' weights; learned state is copied.
        clone = copy.copy(self)
        for name, value in vars(self).items():
            if name not in ("target", "generator"):
                setattr(clone, name, copy.deepcopy(value, memo))
        clone.generator = torch.Generator().set_state(self.generator.get_state())
        return clone


class DraftModelDrafter(ModelDrafterBase):
    name = "draft-model"

    def __init__(self, draft: str | Backend | None = None, max_draft: int = 12, stop: str = "cost",
                 threshold: float = 0.7, predictor: str = "confidence", draft_dtype: str = ""):
        super().__init__(draft, draft_dtype)
        self.check_draft_option()
        if predictor not in PREDICTORS:
            raise DecodekitError(f"predictor must be one of {', '.join(PREDICTORS)}, got {predictor!r}")
        self.predictor = predictor
        self.head: AcceptanceHead | None = None
        if max_draft < 1:
            raise DecodekitError(f"max_draft must be >= 1, got {max_draft}")
        if stop not in STOPS:
            raise DecodekitError(f"stop must be one of {', '.join(STOPS)}, got {stop!r}")
        if not 0 < threshold < 1:
            raise DecodekitError(f"threshold must be in (0, 1), got {threshold}")
        self.max_draft, self.stop, self.threshold = max_draft, stop, threshold
        self.calibration = ConfidenceCalibration()
        # P(the first draft token is accepted), whatever its confidence: decides, before any
        # draft forward is spent, whether drafting can pay at all this step.
        self.first = Rate()
        self._confidences: list[float] = []
        self._hidden: list[torch.Tensor] = []  # the draft's hidden state behind each draft token

    def attach(self, target: Backend) -> None:
        super().attach(target)
        if self.predictor == "head":
            assert self.model is not None
            if not hasattr(self.model.backend, "forward_hidden"):
                kind = getattr(self.model.backend, "kind", type(self.model.backend).__name__)
                raise DecodekitError(f"predictor='head' reads the draft model's hidden states, which the {kind} "
                                     "backend does not expose: use the transformers backend, or predictor='confidence'")
            label = self.draft if isinstance(self.draft, str) else self.model.backend.name
            self.head = load_head(head_path(label, target.name, target.dtype_name), label, target.name)
            self.model.want_hidden = True

    def propose(self, history: list[int], budget: Budget) -> Draft:
        assert self.model is not None and self.target is not None
        limit = min(self.max_draft, budget.max_tokens)
        self._confidences = []
        if limit == 0:
            return Draft.empty()
        step_cost = self.model.step_cost(self.target)
        if self.stop == "cost" and (1 + self.first.value) / (budget.cost(2) + step_cost) <= 1 / budget.cost(1):
            self.first.forget()  # drift back toward the prior, so drafting is tried again later
            return Draft.empty()
        logits = self.model.logits_after(history)
        tokens, rows, survival = list[int](), list[torch.Tensor](), [1.0]
        self._hidden = []
        while True:
            token, probs = sample_or_argmax(logits, self.sampling, self.generator)
            confidence = self._confidence(logits, probs, token)
            tokens.append(token)
            rows.append(probs)
            self._confidences.append(confidence)
            if self.model.want_hidden:
                assert self.model.hidden is not None
                self._hidden.append(self.model.hidden[-1])
            survival.append(survival[-1] * self._predict(confidence))
            if len(tokens) == limit or self._should_stop(survival, budget, step_cost):
                break
            logits = self.model.extend(token)
        if self.stop == "cost":
            tokens = tokens[: _best_prefix(survival, budget, step_cost * len(tokens))]
            if not tokens:
                self.calibration.explore(self._confidences[0])
            self._confidences = self._confidences[: len(tokens)]
        if not tokens:
            return Draft.empty()
        draft_probs = None if self.sampling.greedy else torch.stack(rows[: len(tokens)])
        return Draft(tokens, draft_probs=draft_probs)

    def _confidence(self, logits: torch.Tensor, probs: torch.Tensor, token: int) -> float:
        """The draft's probability of its token (under greedy settings, at temperature 1); a
        trained head does not read it, so it is not computed then."""
        if self.head is not None:
            return 0.0
        return float(torch.softmax(logits.float(), -1)[token]) if self.sampling.greedy else float(probs[token])

    def _predict(self, confidence: float) -> float:
        """P(the token just drafted is accepted, given the ones before it were)."""
        if self.head is not None:
            return self.head.probability(self._hidden[-1])
        return self.calibration.predict(confidence)

    def _should_stop(self, survival: list[float], budget: Budget, step_cost: float) -> bool:
        """survival[j]: predicted P(the first j draft tokens all accepted)."""
        if self.stop == "fixed":
            return False
        if self.stop == "threshold":
            return 1 - survival[-1] > self.threshold
        drafted = len(survival) - 1
        expected = sum(survival)  # 1 (the target's own token) + expected accepted draft tokens
        last_rate = survival[-1] / survival[-2] if survival[-2] > 0 else 0.0
        more = expected + survival[-1] * last_rate  # the next token, as likely as this one was
        now = expected / (budget.cost(1 + drafted) + step_cost * drafted)
        then = more / (budget.cost(2 + drafted) + step_cost * (drafted + 1))
        return then <= now

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        if len(draft):
            # A grammar may have cut the chain: the confidences of its verified prefix.
            self.calibration.observe(self._confidences[: len(draft)], result.num_accepted)
            self.first.update(int(result.num_accepted > 0), int(result.num_accepted == 0))


def _best_prefix(survival: list[float], budget: Budget, drafting_cost: float) -> int:
    """The number of drafted tokens worth verifying, the drafting already paid for."""
    best, best_rate, expected = 0, 1.0 / (budget.cost(1) + drafting_cost), 1.0
    for k in range(1, len(survival)):
        expected += survival[k]
        rate = expected / (budget.cost(1 + k) + drafting_cost)
        if rate > best_rate:
            best, best_rate = k, rate
    return best
