"""A bounded, thread-safe memo of a process's most recent results by key (the one home of the engine's caches of
random numbers and social layers, which change no number: each holds what a function of its key alone made).

The values kept are meant to be read-only (their arrays' ``writeable`` flag off): a caller that takes one
shares it with every later caller of the same key.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable
from typing import Any


class Memo:
    """The most recently used values by key, up to ``budget`` bytes in all, each of at most ``entry_limit`` bytes
    (a larger one is not kept: it would push out many smaller ones and is rarely made twice). ``get`` and
    ``put`` are safe from several threads (the live page steps a market while its Decide view projects in
    another thread)."""

    def __init__(self, budget: int, entry_limit: int):
        self.budget, self.entry_limit, self.size = budget, min(entry_limit, budget), 0
        self._entries: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Keep ``value`` (``nbytes`` bytes) for ``key``, dropping the least recently used values beyond the
        budget; False (nothing kept) when it is larger than ``entry_limit``."""
        if nbytes > self.entry_limit:
            return False
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, nbytes)
                self.size += nbytes
            while self.size > self.budget:
                self.size -= self._entries.popitem(last=False)[1][1]
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0
