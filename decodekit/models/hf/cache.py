"""KV-cache commit: after verification only the accepted tokens may stay in the cache.

The forward over [pending tokens + draft] appended every draft token's keys and values. For a
chain the accepted tokens are a prefix of the draft, so the cache is cropped. For a tree they
are one root-to-leaf path scattered through the draft, so those rows are gathered and moved
down to sit right after the pending tokens, then the rest is cut off::

    before:  [ committed ... | pending | a  b  c  d  e ]     accepted path: a, c, e
    after:   [ committed ... | pending | a  c  e ]
"""

from __future__ import annotations

import torch

from decodekit.errors import UnsupportedModelError


class HFCache:
    """A transformers DynamicCache plus the two ways decodekit shrinks it (the KVCache protocol
    of backend.py).

    Every layer is a full (non-sliding) layer on purpose: sliding-window layers drop old entries
    as they go, which makes rollback impossible once the window is reached. Sliding-window
    attention is still applied, by the attention mask.
    """

    def __init__(self):
        from transformers import DynamicCache  # here: importing the package stays light for the CLI

        self.hf_cache = DynamicCache()

    def __len__(self) -> int:
        return self.hf_cache.get_seq_length()

    def crop(self, length: int) -> None:
        """Keep the first `length` positions."""
        remove = len(self) - length
        if remove < 0:
            raise ValueError(f"cannot crop a cache of {len(self)} positions to {length}")
        if remove:
            self.hf_cache.crop(-remove)

    @torch.inference_mode()  # the cached tensors were made under inference mode
    def keep(self, start: int, offsets: list[int]) -> None:
        """Keep positions [0, start) and then start + offsets (ascending), dropping the rest.

        `offsets` index the tokens appended by the last forward; a chain-shaped acceptance
        (0, 1, ..., n-1) is a plain crop and takes the cheap path.
        """
        if offsets == list(range(len(offsets))):
            self.crop(start + len(offsets))
            return
        for layer in self.hf_cache.layers:
            # A layer that never ran holds nothing to compact: a layer-skipping view (skip.py)
            # leaves the skipped layers' cache entries uninitialised. Only an initialised layer
            # without keys and values (some other kind of state) cannot be compacted.
            if not getattr(layer, "is_initialized", True):
                continue
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if keys is None or values is None:
                raise UnsupportedModelError("this model's cache layers cannot be compacted for tree drafts")
            index = torch.tensor([start + o for o in offsets], device=keys.device)
            # [batch, heads, seq, head_dim]: move the accepted rows down, then cut.
            keys[:, :, start : start + len(offsets)] = keys[:, :, index]
            values[:, :, start : start + len(offsets)] = values[:, :, index]
        self.crop(start + len(offsets))

    @torch.inference_mode()
    def select(self, rows: list[int]) -> None:
        """Search (search/loop.py): make row i of the cache a copy of old row rows[i], so rows
        are reordered, forked (an index twice) or dropped (an index left out)."""
        if len(self):
            self.hf_cache.reorder_cache(torch.tensor(rows, dtype=torch.long))  # type: ignore[arg-type]

    @property
    def rows(self) -> int:
        """Sequences held side by side (1 outside search)."""
        for layer in self.hf_cache.layers:
            keys = getattr(layer, "keys", None)
            if keys is not None and keys.numel():
                return int(keys.shape[0])
        return 1
