"""A small bounded, thread-safe LRU mapping with functools-style counters.

`functools.lru_cache` needs hashable arguments; plans are looked up by a key computed from an
unhashable document (its checksum), so the compiler keeps its plans in one of these instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class CacheInfo(NamedTuple):
    """Counters shaped like functools' `cache_info()`."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class LruCache(Generic[K, V]):
    """At most `maxsize` values; the least recently used one is dropped first."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"an LRU cache needs room for at least one value, not {maxsize}")
        self._maxsize = maxsize
        self._values: OrderedDict[K, V] = OrderedDict()
        # One lock around every read and write: the daemon looks plans up from several threads
        # (scheduler, API, workers), and OrderedDict reordering is not atomic.
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: K) -> V | None:
        """The value for a key (now the most recently used), or None; counts a hit or a miss."""
        with self._lock:
            value = self._values.get(key)
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
                self._values.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Remember a value, dropping the least recently used one when full."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._maxsize:
                self._values.popitem(last=False)

    def cache_info(self) -> CacheInfo:
        """Hits, misses, capacity and current size."""
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._maxsize, len(self._values))

    def clear(self) -> None:
        """Forget every value and reset the counters."""
        with self._lock:
            self._values.clear()
            self._hits = self._misses = 0
