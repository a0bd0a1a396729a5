"""Prefetcher: values loaded ahead on a worker thread are handed over once; stale or failed ones load again."""

from __future__ import annotations

import threading

import pytest

from mcp_core.prefetch import Prefetcher
from waiting import poll


class Loads:
    """A load function recording which keys it loaded, on which thread; keys in ``fail`` raise once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.version: dict[str, int] = {}
        self.fail: set[str] = set()

    def __call__(self, key: str) -> tuple[str, int]:
        self.calls.append((key, threading.current_thread().name))
        if key in self.fail:
            self.fail.discard(key)
            raise OSError(f"{key} is being written")
        return key, self.version.get(key, 0)


def test_a_value_loaded_ahead_is_taken_without_loading_again():
    loads = Loads()
    ahead = Prefetcher(loads)
    ahead.want(["a", "b"])
    poll(lambda: ahead.loaded("a") and ahead.loaded("b"), "the reads ahead")
    assert not ahead.loaded("c")
    assert ahead.take("b") == ("b", 0)
    assert ahead.take("a") == ("a", 0)
    assert sorted(k for k, _ in loads.calls) == ["a", "b"]
    assert all(thread.startswith("prefetch") for _, thread in loads.calls)  # none in the caller's thread
    assert ahead.pending() == []  # handed over once: the caller owns (and may change) the value
    assert ahead.take("a") == ("a", 0)
    assert loads.calls[-1] == ("a", threading.current_thread().name)
    ahead.close()


def test_stale_and_failed_values_load_again_and_errors_reach_the_caller():
    loads = Loads()
    ahead = Prefetcher(loads, fresh=lambda key, value: value[1] == loads.version.get(key, 0))
    loads.fail.add("x")
    ahead.want(["s", "x"])
    ahead.pending()  # both submitted
    assert ahead.take("x") == ("x", 0)  # the read ahead failed: read again here
    loads.version["s"] = 1  # the file changed after the read ahead
    assert ahead.take("s") == ("s", 1)
    assert [k for k, _ in loads.calls].count("s") == 2
    loads.fail.add("y")
    with pytest.raises(OSError, match="y is being written"):
        ahead.take("y")  # not asked for: loaded in the caller's thread, its error raised there
    ahead.close()


def test_keeps_at_most_keep_values_dropping_the_oldest():
    loads = Loads()
    ahead = Prefetcher(loads, keep=2)
    ahead.want(["a", "b"])
    ahead.want(["c"])
    assert ahead.pending() == ["b", "c"]
    ahead.want(["d", "e", "f"])  # more wanted at once than kept: all of them stay
    assert ahead.pending() == ["d", "e", "f"]
    ahead.close()
