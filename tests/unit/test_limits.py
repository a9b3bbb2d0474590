"""A participant's offers to the node: a burst, then one per refill period."""

from __future__ import annotations

from media.limits import OFFER_BURST, OFFER_REFILL_SECONDS, OfferBudgets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_offer_per_refill_period() -> None:
    clock = Clock()
    budgets = OfferBudgets(clock)
    assert [budgets.spend("call", "p1") for _ in range(OFFER_BURST + 1)] == [True] * OFFER_BURST + [
        False
    ]
    assert budgets.spend("call", "p2")  # everyone has their own budget
    clock.now += OFFER_REFILL_SECONDS
    assert budgets.spend("call", "p1")
    assert not budgets.spend("call", "p1")


def test_idle_budgets_are_forgotten() -> None:
    clock = Clock()
    budgets = OfferBudgets(clock)
    budgets.spend("call", "p1")
    budgets.forget_idle()
    assert len(budgets) == 1
    clock.now += OFFER_BURST * OFFER_REFILL_SECONDS
    budgets.forget_idle()
    assert len(budgets) == 0
