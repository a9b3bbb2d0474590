"""How often one participant may make the node build a peer connection.

Each offer costs the node a peer connection (SDP parsing, ICE gathering, DTLS keys): tens of
milliseconds of the one core the node has. The web process limits offers per socket; the node
limits them again per participant, so no path around the web (or a web process with a bug)
can make one participant take the CPU the other calls on the node need.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Offers a participant may send at once: a page load, a reload, a reconnect or two.
OFFER_BURST = 4
#: Seconds to earn one more offer after the burst is spent.
OFFER_REFILL_SECONDS = 2.0


@dataclass
class _Budget:
    tokens: float
    updated_at: float


class OfferBudgets:
    """A token bucket of offers per (call, participant)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._budgets: dict[tuple[str, str], _Budget] = {}

    def spend(self, call_id: str, participant_id: str) -> bool:
        """Take one offer from the participant's budget; False when it is spent."""
        now = self._clock()
        budget = self._budgets.setdefault(
            (call_id, participant_id), _Budget(tokens=OFFER_BURST, updated_at=now)
        )
        budget.tokens = min(
            OFFER_BURST, budget.tokens + (now - budget.updated_at) / OFFER_REFILL_SECONDS
        )
        budget.updated_at = now
        if budget.tokens < 1:
            return False
        budget.tokens -= 1
        return True

    def forget_idle(self) -> None:
        """Drop budgets that have refilled completely: they hold nothing worth keeping."""
        now = self._clock()
        full_after = OFFER_BURST * OFFER_REFILL_SECONDS
        for key in [k for k, b in self._budgets.items() if now - b.updated_at >= full_after]:
            del self._budgets[key]

    def __len__(self) -> int:
        return len(self._budgets)
