"""A count-based n-gram model over token ids, for superposed decoding's interpolation: plain
relative frequencies per order, no smoothing, as the Superposed Decoding authors' code uses.

An unseen context is told apart from a seen one whose count for the token is 0: the first
contributes nothing to a mixture of orders, the second contributes probability 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict


class NgramModel:
    def __init__(self, orders: tuple[int, ...] = (2, 3, 4, 5, 6)):
        self.orders = orders
        self.tables: dict[int, dict[tuple[int, ...], Counter[int]]] = {n: defaultdict(Counter) for n in orders}
        self.totals: dict[int, Counter[tuple[int, ...]]] = {n: Counter() for n in orders}  # per context, kept by add

    def add(self, ids: list[int]) -> None:
        """Count every n-gram of `ids` (one document: n-grams do not cross into another)."""
        for n in self.orders:
            table = self.tables[n]
            for end in range(n - 1, len(ids)):
                context = tuple(ids[end - n + 1: end])
                table[context][ids[end]] += 1
                self.totals[n][context] += 1

    def prob(self, context: list[int], token: int, n: int) -> float | None:
        """p_n(token | the last n − 1 tokens of context); None when that context was never seen.

        >>> model = NgramModel((2,)); model.add([1, 2, 1, 3]); model.prob([5, 1], 2, 2), model.prob([4], 2, 2)
        (0.5, None)
        """
        if len(context) < n - 1:
            return None
        key = tuple(context[len(context) - n + 1:])
        total = self.totals[n][key]
        if not total:
            return None
        return self.tables[n][key][token] / total

    def mixture(self, context: list[int], token: int, weights: tuple[float, ...]) -> float:
        """Σ_n λ_n p_n(token | context) over the orders whose context was seen (not renormalised)."""
        total = 0.0
        for n, weight in zip(self.orders, weights):
            p = self.prob(context, token, n)
            if p is not None:
                total += weight * p
        return total
