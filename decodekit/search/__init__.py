"""Search methods: decoding that keeps several hypotheses or scores several candidates per step,
on the search loop (search/loop.py). One file of rules per method."""

from __future__ import annotations

from collections.abc import Callable

from decodekit.options import build_named
from decodekit.search.beam import BeamSearch
from decodekit.search.contrastive_search import ContrastiveSearch
from decodekit.search.diverse_beam import DiverseBeamSearch
from decodekit.search.exact_extract import ExactExtract
from decodekit.search.loop import Hypothesis, Rows, Search, SearchResult, SearchStats, run_search
from decodekit.search.momentum import MomentumDecoding
from decodekit.search.superposed import SuperposedDecoding

SEARCHES: dict[str, Callable[..., Search]] = {
    "beam": BeamSearch,
    "diverse-beam": DiverseBeamSearch,
    "contrastive-search": ContrastiveSearch,
    "momentum": MomentumDecoding,
    "exact-extract": ExactExtract,
    "superposed": SuperposedDecoding,
}


def make_search(name: str, **options) -> Search:
    """A search method by name, its options checked before anything loads."""
    return build_named("search method", SEARCHES, name, options)


__all__ = [
    "SEARCHES", "BeamSearch", "ContrastiveSearch", "DiverseBeamSearch", "ExactExtract", "Hypothesis", "MomentumDecoding",
    "Rows", "Search", "SearchResult", "SearchStats", "SuperposedDecoding", "make_search", "run_search",
]
