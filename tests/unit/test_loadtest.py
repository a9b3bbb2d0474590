"""The load tester's plan and its guard on targets: pure checks, nothing sent anywhere."""

from __future__ import annotations

import pytest

from shared.loadtest.client import loopback_only
from shared.loadtest.runner import Plan, PlanError, Staff, format_report

STAFF = (Staff("a@example.org", "pw"),)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.10", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("https://192.0.2.10", False),
        ("http://10.0.0.1:8000", False),
        ("http://[2001:db8::1]", False),
    ],
)
def test_only_loopback_targets_count_as_this_machine(url: str, local: bool) -> None:
    assert loopback_only(url) is local


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"url": "ftp://127.0.0.1"}, "http"),
        ({"participants": 7}, "2 to 6"),
        ({"participants": 1}, "2 to 6"),
        ({"duration": 0}, "duration"),
        ({"duration": 7200}, "duration"),
        ({"rate": 0}, "rate"),
        ({"patients": -1}, "negative"),
        ({"dashboards": 1, "staff": ()}, "staff account"),
        # 7 dashboards and 2 calls on one account: 9 sockets, past the default cap of 8.
        ({"dashboards": 7, "calls": 2}, "more than 8"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_before_it_starts(
    changes: dict[str, object], says: str
) -> None:
    with pytest.raises(PlanError, match=says):
        Plan(**{"url": "http://127.0.0.1:8000", "staff": STAFF, **changes})  # type: ignore[arg-type]


def test_staff_sockets_are_spread_over_the_accounts() -> None:
    two = (Staff("a@example.org", "pw"), Staff("b@example.org", "pw"))
    plan = Plan(url="http://127.0.0.1:8000", dashboards=7, calls=3, staff=two)
    assert plan.sockets_by_account() == [4 + 2, 3 + 1]
    # A member with calls and no dashboard opens one to press Join from.
    plan = Plan(url="http://127.0.0.1:8000", dashboards=1, calls=2, staff=two)
    assert plan.sockets_by_account() == [1 + 1, 0 + 1 + 1]


def test_the_report_reads_without_any_figure_measured() -> None:
    empty = {"count": 0}
    text = format_report(
        {
            "run": "abc123",
            "target": "http://127.0.0.1:8000",
            "clinic": "demo",
            "seconds": 1.0,
            "patients": {"planned": 0, "entered": 0, "refused": {}, "sockets": 0, "left": 0,
                         "ended": 0},
            "entry_ms": empty,
            "dashboards": {"planned": 0, "open": 0, "opened_to_join": 0,
                           "arrivals_seen_by_all": 0},
            "arrival_to_dashboard_ms": empty,
            "calls": {"planned": 0, "started": 0, "participants": 0,
                      "receiving_from_all_others": 0},
            "call_setup_ms": empty,
            "call_setup_video_ms": empty,
            "media_per_participant": {"packets_per_second": empty, "kbit_per_second": empty},
            "errors": {},
        }
    )  # fmt: skip
    assert "none measured" in text and "errors                 0" in text
