"""SpecDec++'s trained acceptance-prediction head (Huang et al., 2024).

A small network reads the draft model's last hidden state at the position that produced a
draft token and predicts the probability that the target accepts that token, given that it
accepted the tokens before it. The draft-model drafter (predictor="head") multiplies these
along the draft and stops once the probability that some token is rejected passes its
threshold, or once drafting stops paying (stop="cost").

Training data (`collect`): the pair decodes prompts with fixed-length drafts; for every draft
token the hidden state that produced it and whether the target's greedy choice at that
position was that token. The label is computed for every drafted position, also after an
earlier rejection, from the target's logits there: it is the per-token event the head
predicts (acceptance given the prefix). The paper weighs the rejected class up; here the loss
is plain BCE, because the drafter uses the probabilities themselves (products along the draft,
priced against forward costs), and class weights would bias them.

Heads live in the model cache, one per (draft, target, dtype) pair (`head_path`).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from decodekit.errors import DecodekitError
from decodekit.paths import home

HIDDEN_UNITS = 32  # a few thousand labelled tokens: a wider head only memorises them


class AcceptanceHead(torch.nn.Module):
    """hidden state [..., width] -> logit of P(accepted) [...]."""

    def __init__(self, width: int, units: int = HIDDEN_UNITS):
        super().__init__()
        self.width = width
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, units), torch.nn.SiLU(),
                                       torch.nn.Linear(units, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)

    @torch.inference_mode()
    def probability(self, hidden: torch.Tensor) -> float:
        return float(torch.sigmoid(self(hidden.reshape(-1, self.width)))[0])


def head_path(draft: str, target: str, dtype: str) -> Path:
    safe = "--".join(name.replace("/", "_") for name in (draft, target, dtype))
    return home() / "heads" / f"{safe}.pt"


def save_head(head: AcceptanceHead, path: Path, metrics: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"width": head.width, "state": head.state_dict(), "metrics": metrics}, path)


def load_head(path: Path, draft: str, target: str) -> AcceptanceHead:
    if not path.exists():
        raise DecodekitError(f"no acceptance head for draft '{draft}' with target '{target}' ({path}): train one with "
                             f"`decodekit train acceptance-head --model {target} --draft {draft}`")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    head = AcceptanceHead(int(saved["width"]))
    head.load_state_dict(saved["state"])
    return head.eval()


@dataclass
class TrainResult:
    head: AcceptanceHead
    metrics: dict


def train_head(features: torch.Tensor, labels: torch.Tensor, epochs: int = 40, lr: float = 3e-3, seed: int = 0,
               on_epoch: Callable[[int, float], None] = lambda epoch, loss: None) -> TrainResult:
    """Fit a head on (hidden state, accepted) pairs. A fifth is held out: training keeps the
    epoch with the lowest held-out loss (early stopping: hidden states are wide and labelled
    tokens few, so later epochs memorise), and the metrics are reported on it.

    features: [n, width]; labels: [n] in {0, 1}."""
    if len(labels) < 20:
        raise DecodekitError(f"only {len(labels)} draft tokens collected: too few to train a head; use more prompts")
    torch.manual_seed(seed)
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    held = torch.tensor(order[: len(order) // 5])
    train = order[len(order) // 5 :]
    x, y = features.float(), labels.float()
    head = AcceptanceHead(x.shape[1])
    # Plain (unweighted) BCE: the drafter multiplies these probabilities along a draft and prices
    # them against forward costs, so they must be calibrated, which class weights would undo.
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.1)
    batch = 256
    best_loss, best_state, best_epoch = math.inf, copy.deepcopy(head.state_dict()), -1
    for epoch in range(epochs):
        head.train()
        random.Random(seed + epoch).shuffle(train)
        for start in range(0, len(train), batch):
            index = torch.tensor(train[start : start + batch])
            optimiser.zero_grad()
            loss_fn(head(x[index]), y[index]).backward()
            optimiser.step()
        head.eval()
        with torch.no_grad():
            held_loss = float(loss_fn(head(x[held]), y[held]))
        if held_loss < best_loss:
            best_loss, best_state, best_epoch = held_loss, copy.deepcopy(head.state_dict()), epoch
        on_epoch(epoch, held_loss)
    head.load_state_dict(best_state)
    head.eval()
    metrics = _held_out_metrics(head, x[held], y[held])
    metrics.update(train_tokens=len(train), held_out_tokens=len(held), accepted_share=float(y.mean()),
                   best_epoch=best_epoch + 1)
    return TrainResult(head, metrics)


@torch.no_grad()
def _held_out_metrics(head: AcceptanceHead, x: torch.Tensor, y: torch.Tensor) -> dict:
    probs = torch.sigmoid(head(x))
    # Brier score and accuracy against the base rate, so a useless head shows as one.
    base = float(y.mean()) if len(y) else 0.5
    return {
        "held_out_accuracy": float(((probs > 0.5).float() == y).float().mean()) if len(y) else math.nan,
        "held_out_brier": float(((probs - y) ** 2).mean()) if len(y) else math.nan,
        "base_rate_brier": float(((base - y) ** 2).mean()) if len(y) else math.nan,
    }
