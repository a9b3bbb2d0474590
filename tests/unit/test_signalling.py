"""A socket's messages are taken at a bounded rate per type."""

from __future__ import annotations

from web.signalling import MESSAGE_RATES, TokenBucket


def test_a_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(*MESSAGE_RATES["offer"])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
