"""The sandbox's moto endpoint: reachable on loopback, quiet on success."""

from __future__ import annotations

import logging
import urllib.request

import pytest
from palisade_sandbox import MotoEndpoint


@pytest.mark.aws
def test_moto_requests_are_not_logged_above_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A successful AWS call is not an INFO access-log line (werkzeug's default,
    which lands on the stderr of every ``palisade invoke``); it is a debug record
    of the sandbox's own logger."""
    caplog.set_level(logging.DEBUG)
    with MotoEndpoint() as endpoint:
        assert endpoint.url is not None and endpoint.url.startswith("http://127.")
        request = urllib.request.Request(
            endpoint.url + "/",
            data=b"Action=GetCallerIdentity&Version=2011-06-15",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                "us-east-1/sts/aws4_request, SignedHeaders=host, Signature=x",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    access = [r for r in caplog.records if "HTTP/1.1" in r.getMessage()]
    assert access, "the request should still be logged at debug"
    assert all(r.levelno == logging.DEBUG for r in access), [
        (r.name, r.levelname, r.getMessage()) for r in access
    ]
    assert all(r.name == "palisade_sandbox.aws" for r in access)


@pytest.mark.aws
def test_moto_server_errors_stay_visible(caplog: pytest.LogCaptureFixture) -> None:
    """A 5xx answer from moto is still reported, as a warning."""
    caplog.set_level(logging.DEBUG)
    with MotoEndpoint() as endpoint:
        assert endpoint.url is not None
        handler = endpoint._server.RequestHandlerClass
        assert handler.__name__ == "QuietRequestHandler"
        # moto has no request that reliably answers 5xx; call the hook directly.
        fake = handler.__new__(handler)
        fake.requestline = "POST / HTTP/1.1"
        fake.log_request(500, 10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["moto 'POST / HTTP/1.1' 500 10"]
