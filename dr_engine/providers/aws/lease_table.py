"""Failover lock leases in a DynamoDB table of the target region (conditional writes).

One item per lock key (``lock_key``, a string hash key). A write succeeds only when the stored
``fencing_token`` is the one the writer read (or no item exists), so two machines racing for
the same lease cannot both win. Reads are strongly consistent.

The table is created on first use when missing (on-demand billing). IAM permissions:
``dynamodb:GetItem``, ``dynamodb:PutItem``, ``dynamodb:DescribeTable`` and, for the
automatic creation, ``dynamodb:CreateTable``.
"""

from __future__ import annotations

import threading
from typing import Any

from dr_engine.errors import ProviderError
from dr_engine.model.lease import Lease
from dr_engine.providers.aws.errors import call
from dr_engine.providers.aws.session import AwsTarget, client

PERMISSIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DescribeTable", "dynamodb:CreateTable")
KEY = "lock_key"
_STRINGS = ("run_id", "holder", "host", "acquired_at", "expires_at")


def _to_item(lease: Lease) -> dict[str, Any]:
    item: dict[str, Any] = {KEY: {"S": lease.key}, "pid": {"N": str(lease.pid)},
                            "fencing_token": {"N": str(lease.fencing_token)}, "released": {"BOOL": lease.released}}
    item.update({name: {"S": getattr(lease, name)} for name in _STRINGS})
    if lease.taken_over_from:
        item["taken_over_from"] = {"S": lease.taken_over_from}
    return item


def _from_item(item: dict[str, Any]) -> Lease:
    taken = item.get("taken_over_from")
    return Lease(key=item[KEY]["S"], pid=int(item["pid"]["N"]), fencing_token=int(item["fencing_token"]["N"]),
                 released=bool(item["released"]["BOOL"]), taken_over_from=taken["S"] if taken else None,
                 **{name: item[name]["S"] for name in _STRINGS})


class DynamoDbLeaseStore:
    """A :class:`~dr_engine.lock.backends.LeaseStore` on one DynamoDB table."""

    def __init__(self, target: AwsTarget, table: str) -> None:
        self.target = target
        self.table = table
        self.client = client(target, "dynamodb")
        self._ready = False
        self._ready_lock = threading.Lock()

    @property
    def where(self) -> str:
        """Human description for messages."""
        return f"DynamoDB table {self.table} in {self.target.region_name}"

    def ensure_table(self) -> None:
        """Create the table if it does not exist and wait until it is active."""
        with self._ready_lock:
            if self._ready:
                return
            found = call(self.client, "describe_table", self.where, absent=("ResourceNotFoundException",),
                         TableName=self.table)
            if found is None:
                call(self.client, "create_table", self.where, absent=("ResourceInUseException",),
                     TableName=self.table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}])
                self.client.get_waiter("table_exists").wait(TableName=self.table,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            self._ready = True

    def read(self, key: str) -> Lease | None:
        """The stored lease of ``key`` (strongly consistent read)."""
        self.ensure_table()
        found = call(self.client, "get_item", f"lease {key} in {self.where}", TableName=self.table,
                     Key={KEY: {"S": key}}, ConsistentRead=True)
        item = found.get("Item")
        if not item:
            return None
        try:
            return _from_item(item)
        except (KeyError, ValueError, TypeError) as exc:
            raise ProviderError(f"lease {key} in {self.where} is malformed: {exc}",
                                hint="delete the item so the next run can take the lock") from exc

    def put(self, lease: Lease, *, expected_token: int | None) -> bool:
        """Conditional write; False when another writer changed the lease first."""
        self.ensure_table()
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": _to_item(lease)}
        if expected_token is None:
            kwargs["ConditionExpression"] = f"attribute_not_exists({KEY})"
        else:
            kwargs["ConditionExpression"] = "fencing_token = :expected"
            kwargs["ExpressionAttributeValues"] = {":expected": {"N": str(expected_token)}}
        # A failed condition means another writer changed the lease first: not an error, a lost race.
        done = call(self.client, "put_item", f"lease {lease.key} in {self.where}",
                    absent=("ConditionalCheckFailedException",), **kwargs)
        return done is not None


__all__ = ["PERMISSIONS", "DynamoDbLeaseStore"]
