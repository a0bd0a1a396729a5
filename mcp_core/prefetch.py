"""Load what is likely needed next on a background thread, and hand each prepared value over once.

An editor stepping through images asks for the neighbours of the open one while the user works
(:meth:`Prefetcher.want`); opening one of them then takes the value already read and encoded
(:meth:`Prefetcher.take`) instead of reading it while the user waits. A value that went stale in
between (its file changed on disk) is loaded again.

>>> ahead = Prefetcher(load=read_item, fresh=lambda key, value: value.version == version_now(key))
>>> ahead.want([item_2, item_4])      # while item 3 is open
>>> value = ahead.take(item_4)         # ready at once when the read has finished
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Prefetcher(Generic[K, V]):
    """Values loaded ahead by one worker thread, each handed over at most once.

    Parameters
    ----------
    load
        Makes the value of a key (runs on the worker thread for :meth:`want`, in the caller's
        thread for a :meth:`take` of a key that was not asked for).
    fresh
        Whether a value loaded earlier is still current (e.g. its file is unchanged); ``None``: always.
    keep
        How many loaded values are kept at most; the oldest beyond that are dropped.
    """

    def __init__(self, load: Callable[[K], V], fresh: Callable[[K, V], bool] | None = None, keep: int = 4) -> None:
        self._load = load
        self._fresh = fresh or (lambda key, value: True)
        self._keep = keep
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._ready: OrderedDict[K, Future] = OrderedDict()
        self._lock = threading.Lock()

    def want(self, keys: Iterable[K]) -> None:
        """Start loading *keys* not loaded yet; values of other keys beyond ``keep`` are dropped."""
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for key in keys:
                if key not in self._ready:
                    self._ready[key] = self._pool.submit(self._load, key)
                self._ready.move_to_end(key)
            while len(self._ready) > max(self._keep, len(keys)):
                _, dropped = self._ready.popitem(last=False)
                dropped.cancel()

    def take(self, key: K) -> V:
        """The value of *key*: the one loaded ahead if it is still fresh, else loaded now.

        Raises
        ------
        Exception
            Whatever *load* raised for this key (a failed read ahead is tried once more here).
        """
        with self._lock:
            ahead = self._ready.pop(key, None)
        if ahead is not None and not ahead.cancelled() and ahead.exception() is None:  # waits for it
            value = ahead.result()
            if self._fresh(key, value):
                return value
        return self._load(key)  # not asked for, dropped, failed (a file being written?) or stale

    def loaded(self, key: K) -> bool:
        """Whether the value of *key* has been loaded ahead (and is waiting to be taken)."""
        with self._lock:
            ahead = self._ready.get(key)
        return ahead is not None and ahead.done() and not ahead.cancelled()

    def pending(self) -> list[K]:
        """The keys loaded or being loaded ahead, oldest first."""
        with self._lock:
            return list(self._ready)

    def close(self) -> None:
        """Drop every value and stop the worker (loads in progress finish first)."""
        with self._lock:
            for future in self._ready.values():
                future.cancel()
            self._ready.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
