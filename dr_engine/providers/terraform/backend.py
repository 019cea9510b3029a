"""The S3 state backend of a region: create it when asked (bucket + optional lock table).

Terraform's S3 backend never creates its bucket or lock table. In a real estate they are
created once per region ahead of any failover; the embedded demo world and tests start with
an empty moto server, so they (or ``terraform.check_state`` with ``create_missing: true``)
create them here. The bucket gets versioning so an overwritten state can be recovered.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from dr_engine.errors import ProviderError, TransientError
from dr_engine.providers.terraform.diagnostics import LockInfo, parse_go_time


def _client(service: str, region: str, endpoint: str | None, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=max(timeout, 0.1), read_timeout=max(timeout, 0.1),
                    retries={"mode": "standard", "total_max_attempts": 2})
    extra: dict[str, Any] = {}
    if endpoint and not ({"AWS_ACCESS_KEY_ID", "AWS_PROFILE"} & set(os.environ)):
        # Local emulators accept any credentials but the SDK insists on some.
        extra = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # emulator placeholders
    return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config, **extra)


def state_object_key(key: str, workspace: str | None, workspace_key_prefix: str = "env:") -> str:
    """Where the S3 backend stores a workspace's state (``env:/<ws>/<key>`` off the default)."""
    if not workspace or workspace == "default":
        return key
    return f"{workspace_key_prefix}/{workspace}/{key}"


def read_lock(
    *, bucket: str, state_key: str, region: str, endpoint: str | None = None,
    dynamodb_table: str | None = None, use_lockfile: bool = False, timeout: float = 10.0,
) -> LockInfo | None:
    """The current holder of a state's lock, read without taking it (None when unlocked).

    DynamoDB locking stores an item ``LockID = <bucket>/<key>`` whose ``Info`` is terraform's
    lock JSON; S3-native locking stores the same JSON in ``<key>.tflock``.
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    raw: str | None = None
    try:
        if dynamodb_table:
            ddb = _client("dynamodb", region, endpoint, timeout)
            item = ddb.get_item(TableName=dynamodb_table, Key={"LockID": {"S": f"{bucket}/{state_key}"}},
                                ConsistentRead=True).get("Item")
            raw = item["Info"]["S"] if item and "Info" in item else None
        if raw is None and use_lockfile:
            s3 = _client("s3", region, endpoint, timeout)
            try:
                raw = s3.get_object(Bucket=bucket, Key=f"{state_key}.tflock")["Body"].read().decode()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in ("NoSuchKey", "404", "NotFound"):
                    raise
    except EndpointConnectionError as exc:
        raise TransientError(f"state backend in {region} unreachable: {exc}",
                             hint="check the region's aws.endpoint_url and network") from exc
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(f"could not read the state lock of s3://{bucket}/{state_key}: {exc}",
                            hint="check the credentials' S3/DynamoDB read permissions in the target region") from exc
    if not raw:
        return None
    info = json.loads(raw)
    created = str(info.get("Created", ""))
    return LockInfo(
        id=str(info.get("ID", "?")), path=str(info.get("Path", "")), operation=str(info.get("Operation", "")),
        who=str(info.get("Who", "")), version=str(info.get("Version", "")),
        created=_parse_rfc3339(created) or parse_go_time(created),
    )


def _parse_rfc3339(text: str) -> datetime | None:
    # Go marshals time.Time as RFC 3339 with nanoseconds; Python takes at most microseconds.
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$", text.strip())
    if match is None:
        return None
    stamp, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{stamp}.{micro}{'+00:00' if zone == 'Z' else zone}").astimezone(UTC)


def ensure_state_backend(
    *, bucket: str, region: str, endpoint: str | None = None, dynamodb_table: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Create the state bucket (versioned) and lock table in ``region`` when missing.

    Returns what was created (empty when everything existed). Idempotent.
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    created: list[str] = []
    try:
        s3 = _client("s3", region, endpoint, timeout)
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            created.append(f"s3://{bucket} ({region})")
        if dynamodb_table:
            ddb = _client("dynamodb", region, endpoint, timeout)
            try:
                ddb.describe_table(TableName=dynamodb_table)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                ddb.create_table(
                    TableName=dynamodb_table, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                )
                created.append(f"dynamodb table {dynamodb_table} ({region})")
    except EndpointConnectionError as exc:
        raise TransientError(f"state backend in {region} unreachable: {exc}",
                             hint="check the region's aws.endpoint_url and network") from exc
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(f"could not prepare the state backend s3://{bucket} in {region}: {exc}",
                            hint="check the credentials' S3/DynamoDB permissions in the target region") from exc
    return created
