"""Classify every boto3/botocore failure at the provider boundary.

- :class:`~dr_engine.errors.TransientError` (retried by the engine): throttling codes, HTTP 5xx,
  connection errors, connect/read timeouts, and ``ResponseParserError`` (an HTML 500 page from a
  proxy or an emulator that does not implement the call);
- :class:`~dr_engine.errors.ProviderError` (permanent): access denied (naming the IAM permission
  that is missing), bad credentials, validation errors, resources that do not exist.

Messages name the call (``route53:ChangeResourceRecordSets``), the resource and the region.
Use :func:`call` for every API call so no raw botocore exception escapes a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from dr_engine.errors import ProviderError, StepFailed, TransientError

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException", "LimitExceededException:Throttling",
})
SERVER_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "InternalServerError",
    "InternalServiceError", "ServiceUnavailable", "ServiceUnavailableException", "Unavailable",
})
ACCESS_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
    "AuthorizationErrorException", "NotAuthorized",
})
CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "UnrecognizedClientException", "InvalidAccessKeyId", "InvalidToken", "IncompleteSignature",
})

#: IAM action names that differ from the API operation name (the rest are ``service:Operation``).
_IAM_OVERRIDES = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "CopyObject"): "s3:PutObject (and s3:GetObject on the source)",
    ("monitoring", "DescribeAlarms"): "cloudwatch:DescribeAlarms",
    ("monitoring", "GetMetricStatistics"): "cloudwatch:GetMetricStatistics",
}


def iam_action(client: Any, operation: str) -> str:
    """The IAM action a call needs, e.g. ``route53:ChangeResourceRecordSets``."""
    prefix = client.meta.service_model.signing_name
    override = _IAM_OVERRIDES.get((prefix, operation))
    if override:
        return override
    return f"{'cloudwatch' if prefix == 'monitoring' else prefix}:{operation}"


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError (empty for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def classify(exc: BaseException, what: str, permission: str = "") -> StepFailed:
    """Map a boto3/botocore exception to TransientError or ProviderError (not raised here)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return TransientError(f"{what}: timed out ({exc})",
                              hint="the endpoint is slow or unreachable; the step is retried within its deadline")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | BotoConnectionError):
        return TransientError(f"{what}: cannot connect ({exc})",
                              hint="check network reachability of the region's AWS endpoint")
    if isinstance(exc, ResponseParserError):
        return TransientError(f"{what}: unparseable response (often an HTML 500 page): {str(exc)[:200]}",
                              hint="usually a proxy or service hiccup; if it persists the call may be "
                                   "unsupported by the endpoint (e.g. an emulator)")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderError(f"{what}: no AWS credentials found ({exc})",
                             hint="configure the standard credential chain (env, ~/.aws, SSO, instance role) "
                                  "or set `aws.profile` in the region file")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
        detail = f"{what}: {code or status}: {message}"
        if code in THROTTLING_CODES or code in SERVER_CODES or status >= 500 or status == 429:
            return TransientError(detail, hint="AWS throttled or failed transiently; retried within the deadline")
        if code in ACCESS_CODES or (status == 403 and code not in CREDENTIAL_CODES):
            needed = f" (missing permission {permission})" if permission else ""
            return ProviderError(f"{detail}{needed}",
                                 hint=f"grant {permission or 'the permission'} to the role running dr-engine; "
                                      "`dr iam-policy RUNBOOK` prints the whole policy")
        if code in CREDENTIAL_CODES:
            return ProviderError(detail, hint="the AWS credentials are invalid or expired; refresh them")
        return ProviderError(detail, hint="fix the step's parameters or the resource it names")
    from botocore.exceptions import BotoCoreError

    if isinstance(exc, BotoCoreError):
        return ProviderError(f"{what}: {exc}", hint="check the step's parameters and AWS configuration")
    return ProviderError(f"{what}: unexpected {type(exc).__name__}: {exc}", hint="re-run with --debug")


def call(
    client: Any,
    method: str,
    resource: str,
    *,
    absent: Collection[str] = (),
    absent_if: Callable[[BaseException], bool] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``client.method(**kwargs)``; classify failures, naming the call and ``resource``.

    Error codes in ``absent`` (or for which ``absent_if`` is true) mean "the resource does not
    exist" and return None instead of raising, so providers can observe state first.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    operation = client.meta.method_to_api_mapping.get(method, method)
    permission = iam_action(client, operation)
    try:
        return getattr(client, method)(**kwargs)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        if isinstance(exc, ClientError) and (
            error_code(exc) in absent or (absent_if is not None and absent_if(exc))
        ):
            return None
        what = f"{permission.split(' ')[0]} on {resource} ({client.meta.region_name})"
        raise classify(exc, what, permission) from exc
