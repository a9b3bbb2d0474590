"""How long a patient will wait: from how long the clinic's recent consultations took, how many
clinicians are seeing patients now, and how many patients are ahead.

No commercial waiting area shows this; a patient told "about 10 minutes" waits more calmly
than one told nothing. It is an estimate, said as one ("About …").
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Consultation

#: Consultations looked at, and how many there must be before they say more than the default.
HISTORY = dt.timedelta(days=14)
ENOUGH = 3
DEFAULT_MINUTES = 10.0


def typical_minutes(session: Session, clinic_id: int, now: dt.datetime | None = None) -> float:
    """The median length of the clinic's consultations of the last 14 days, in minutes."""
    since = (now or dt.datetime.now(dt.UTC)) - HISTORY
    rows = session.execute(
        select(Consultation.started_at, Consultation.ended_at).where(
            Consultation.clinic_id == clinic_id,
            Consultation.started_at.is_not(None),
            Consultation.ended_at >= since,
        )
    ).all()
    durations = [
        (ended - started).total_seconds() / 60
        for started, ended in rows
        if started is not None and ended > started
    ]
    return statistics.median(durations) if len(durations) >= ENOUGH else DEFAULT_MINUTES


def estimate_minutes(position: int, clinicians: int, typical: float) -> int:
    """Minutes until the patient at `position` (1: next) is likely seen.

    Each clinician seeing patients now frees up after about one typical consultation; the
    patient is seen in the round their place comes up in.
    """
    rounds = math.ceil(position / max(1, clinicians))
    return max(1, math.ceil(rounds * typical))
