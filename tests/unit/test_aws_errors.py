"""Classification of botocore failures into the taxonomy (real botocore exception objects)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from dr_engine.errors import ProviderError, TransientError
from dr_engine.providers.aws.errors import classify


def _client_error(code: str, status: int, message: str = "boom") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "ChangeResourceRecordSets")


@pytest.mark.parametrize(("code", "status"), [
    ("Throttling", 400), ("ThrottlingException", 400), ("SlowDown", 503), ("PriorRequestNotComplete", 400),
    ("RequestLimitExceeded", 400), ("InternalError", 500), ("ServiceUnavailable", 503), ("500", 500),
    ("TooManyRequestsException", 429),
])
def test_throttling_and_server_errors_are_transient(code: str, status: int) -> None:
    error = classify(_client_error(code, status), "route53:ChangeResourceRecordSets on zone Z1 (us-east-1)")
    assert isinstance(error, TransientError)
    assert error.message.startswith(f"route53:ChangeResourceRecordSets on zone Z1 (us-east-1): {code}")


def test_access_denied_names_the_missing_permission() -> None:
    error = classify(_client_error("AccessDenied", 403, "User x is not authorized"), "route53:X on zone Z1",
                     "route53:ChangeResourceRecordSets")
    assert isinstance(error, ProviderError)
    assert "missing permission route53:ChangeResourceRecordSets" in error.message
    assert "dr iam-policy" in (error.hint or "")


@pytest.mark.parametrize("code", ["ValidationError", "InvalidParameterValue", "NoSuchBucket", "DBInstanceNotFound"])
def test_validation_and_not_found_are_permanent(code: str) -> None:
    assert isinstance(classify(_client_error(code, 400), "call"), ProviderError)


def test_expired_credentials_are_permanent_with_a_hint() -> None:
    error = classify(_client_error("ExpiredToken", 403), "sts:GetCallerIdentity")
    assert isinstance(error, ProviderError) and "expired" in (error.hint or "")


@pytest.mark.parametrize("exc", [
    ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ResponseParserError("Unable to parse response: <!doctype html>"),
])
def test_network_failures_and_html_pages_are_transient(exc: Exception) -> None:
    assert isinstance(classify(exc, "call"), TransientError)


def test_missing_credentials_are_permanent() -> None:
    error = classify(NoCredentialsError(), "sts:GetCallerIdentity")
    assert isinstance(error, ProviderError) and "credential chain" in (error.hint or "")
