"""The ledgers that make a redelivered request harmless: bounded, and never forgetful too soon."""
from __future__ import annotations

from bench.flow.ledger import Ledger


def test_a_ledger_remembers_at_least_its_size_and_at_most_twice_it():
    ledger = Ledger(size=100)
    for i in range(1000):
        ledger.put(f"o{i}", i)
        # The last `size` orders written are always there, whatever came before.
        assert all(ledger.get(f"o{j}") == j for j in range(max(0, i - 99), i + 1))
        assert len(ledger) <= 200
    assert ledger.get("o0") is None  # long gone


def test_a_newer_value_shadows_an_older_one_and_pop_takes_both():
    ledger = Ledger(size=2)
    ledger.put("a", "applied")
    ledger.put("b", "x")
    ledger.put("c", "x")  # "a" and "b" are the previous generation now
    ledger.put("a", "compensated")
    assert ledger.get("a") == "compensated"
    assert ledger.pop("a") == "compensated"
    assert ledger.get("a") is None
    assert ledger.pop("missing") is None


def test_a_ledger_is_true_while_it_holds_anything_in_either_generation():
    ledger = Ledger(size=2)
    assert not ledger
    ledger.put("a", 1)
    ledger.put("b", 2)
    ledger.put("c", 3)  # "a" and "b" now in the older generation
    assert ledger
    ledger.pop("c")
    assert ledger and len(ledger) == 2
    ledger.pop("a")
    ledger.pop("b")
    assert not ledger and len(ledger) == 0
