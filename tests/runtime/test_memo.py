"""runtime.memo.Memo: the most recently used values within a byte budget, each within an entry limit."""

from __future__ import annotations

import threading

from marketsim.runtime.memo import Memo


def test_keeps_the_most_recently_used_within_the_budget():
    m = Memo(budget=30, entry_limit=10)
    for k in "abc":
        assert m.put(k, k.upper(), 10)
    assert m.get("a") == "A"  # a is now the most recently used: d pushes out b
    m.put("d", "D", 10)
    assert m.get("b") is None
    assert [m.get(k) for k in "acd"] == ["A", "C", "D"]
    assert m.size == 30 and len(m) == 3


def test_refuses_an_entry_over_its_limit_and_keeps_the_first_value_of_a_key():
    m = Memo(budget=100, entry_limit=10)
    assert not m.put("big", 1, 11)
    assert m.get("big") is None and m.size == 0
    m.put("k", 1, 5)
    m.put("k", 2, 5)  # (a function of its key: the same value; the size is counted once)
    assert m.get("k") == 1 and m.size == 5
    m.clear()
    assert len(m) == 0 and m.size == 0


def test_threads_never_push_it_past_its_budget():
    m = Memo(budget=64, entry_limit=8)

    def work(t):
        for i in range(2000):
            m.put((t, i % 50), i, 1 + i % 8)
            m.get((t, (i * 7) % 50))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert 0 < m.size <= 64
