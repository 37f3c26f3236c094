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


def test_decide_compares_with_an_integer_threshold_exactly_as_the_float_division_did():
    import hashlib

    from bench.flow import events as ev

    def divided(order_id: str, step: str, p: float) -> bool:
        digest = hashlib.blake2b(f"{order_id}/{step}".encode(), digest_size=8).digest()
        return p <= 0.0 or int.from_bytes(digest, "big") / 2**64 >= p

    for p in (0.0, 2**-64, 3 * 2**-65, 0.05, 0.1, 1 / 3, 0.5, 1 - 2**-53, 1.0, 2.0):
        threshold = ev._threshold(p)
        for v in (threshold - 1, threshold):
            if 0 <= v < 2**64:
                assert (v / 2**64 >= p) == (v >= threshold)
        assert all(ev.decide(f"o-{i}", "payment", p) == divided(f"o-{i}", "payment", p) for i in range(2000))
