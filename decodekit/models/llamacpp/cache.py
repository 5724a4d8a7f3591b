"""The KV cache of a llama.cpp context, as the KVCache protocol (backend.py) sees it.

llama.cpp keeps one memory per context, shared by numbered sequences; each cached position
(a cell) carries the set of sequences it belongs to. decodekit's committed text is sequence 0.
A draft tree is verified with one extra sequence per leaf (per root-to-leaf branch): the
committed cells and the pending tokens join every branch, and each draft node joins the
branches through it, at position prefix + depth. So each node attends to exactly its
ancestors, with no custom mask::

    committed  pending   a(1,2)  b(1)  c(2)  d(3)        branches: 1 = a-b, 2 = a-c, 3 = d
    {0,1,2,3}  {0,1,2,3}

Commit: the accepted path's cells are copied into sequence 0 (from any branch through its
deepest node), then every branch sequence is removed, which frees the cells no sequence holds.
A chain needs none of this: it is sequence 0 throughout, and a commit is a removal of the
rejected tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from decodekit.errors import DecodekitError
from decodekit.tree import ROOT

COMMITTED = 0  # the sequence id of the committed text


@dataclass
class TreeLayout:
    """Which branch sequences each draft node belongs to."""

    sequences: list[list[int]]  # per node, the branch ids through it
    parents: list[int]
    count: int  # branches (leaves): sequences 1..count

    @classmethod
    def of(cls, parents: list[int]) -> TreeLayout:
        is_parent = set(parents)
        leaves = [node for node in range(len(parents)) if node not in is_parent]
        sequences: list[list[int]] = [[] for _ in parents]
        for branch, leaf in enumerate(leaves, start=1):
            node = leaf
            while node != ROOT:
                sequences[node].append(branch)
                node = parents[node]
        return cls(sequences, parents, len(leaves))

    def branch_through(self, path: list[int]) -> int:
        """A branch containing the root-to-node `path` (draft node indices, root first)."""
        for child, parent in zip(path[1:], path):
            if self.parents[child] != parent:
                raise ValueError(f"accepted nodes {path} are not a path of the draft tree")
        if path and self.parents[path[0]] != ROOT:
            raise ValueError(f"accepted nodes {path} do not start at the root of the draft tree")
        return self.sequences[path[-1]][0]


class LlamaCppCache:
    """Sequence 0 of its backend's context, plus the branches of the last tree forward.

    A llama.cpp context holds one memory, so a backend serves one cache at a time: `new_cache()`
    clears the memory, and an older cache refuses to be used instead of reading another
    generation's keys and values.
    """

    def __init__(self, llama: ModuleType, memory, owner, generation: int):
        self._llama, self._memory, self._owner, self._generation = llama, memory, owner, generation
        self.length = 0
        self.tree: TreeLayout | None = None  # the last forward's draft tree, until committed

    def __len__(self) -> int:
        return self.length

    def check_live(self) -> None:
        if self._owner.generation != self._generation:
            raise DecodekitError("this llama.cpp cache belongs to an earlier generation: a llama.cpp backend holds "
                                 "one cache at a time (new_cache() clears it), so load a second backend to "
                                 "decode two texts at once")

    def crop(self, length: int) -> None:
        """Keep the first `length` positions."""
        self.check_live()
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of {self.length} positions to {length}")
        self._drop_branches()
        self._llama.llama_memory_seq_rm(self._memory, COMMITTED, length, -1)
        self.length = length

    def keep(self, start: int, offsets: list[int]) -> None:
        """Keep positions [0, start) and then the draft nodes `offsets` (a chain's prefix, or a
        tree's root-to-node path), which become positions start, start + 1, ..."""
        self.check_live()
        if self.tree is None:
            if offsets != list(range(len(offsets))):
                raise ValueError(f"a chain keeps a prefix of its draft, not offsets {offsets}")
        elif offsets:
            branch = self.tree.branch_through(offsets)
            self._llama.llama_memory_seq_cp(self._memory, branch, COMMITTED, start, start + len(offsets))
        self.crop(start + len(offsets))

    def _drop_branches(self) -> None:
        """Remove the last tree forward's branch sequences (their cells, unless committed)."""
        if self.tree is not None:
            for branch in range(1, self.tree.count + 1):
                self._llama.llama_memory_seq_rm(self._memory, branch, -1, -1)
            self.tree = None
