"""The retry policy (collector/common/retry.py): reading ``Retry-After``."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from collector.common.retry import retry_after_s

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


class TestRetryAfter:
    def test_an_http_date_is_the_seconds_until_that_time(self) -> None:
        """RFC 9110 §10.2.3: ``Retry-After: <IMF-fixdate>`` waits until then."""
        headers = httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"})

        assert retry_after_s(headers, NOW) == 30.0

    def test_an_http_date_already_past_is_no_wait(self) -> None:
        headers = httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"})

        assert retry_after_s(headers, NOW) == 0.0

    def test_a_handshake_s_header_list_carries_an_http_date_too(self) -> None:
        """A websocket handshake's ``(name, value)`` byte pairs, any case of the name."""
        headers = [
            (b"content-type", b"text/plain"),
            (b"retry-after", b"Wed, 21 Oct 2015 07:29:00 GMT"),
        ]

        assert retry_after_s(headers, NOW) == 60.0
