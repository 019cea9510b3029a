"""DynamoDB: describe a table, read one item, count items."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi

KeyValue = str | int


def attribute(value: KeyValue) -> dict[str, str]:
    """A key value in DynamoDB's typed form (strings as S, integers as N)."""
    return {"N": str(value)} if isinstance(value, int) and not isinstance(value, bool) else {"S": str(value)}


class DynamoDb(AwsApi):
    """DynamoDB in one region."""

    service = "dynamodb"

    def table(self, name: str) -> dict[str, Any] | None:
        """The table description, or None when it does not exist in this region."""
        found = self.call("describe_table", f"table {name}", absent=("ResourceNotFoundException",), TableName=name)
        return None if found is None else dict(found["Table"])

    def has_item(self, name: str, key: dict[str, KeyValue]) -> bool:
        """True when an item with this primary key exists (eventually consistent read)."""
        found = self.call("get_item", f"item {key} in table {name}", TableName=name,
                          Key={k: attribute(v) for k, v in key.items()}, ProjectionExpression=",".join(
                              f"#k{i}" for i in range(len(key))),
                          ExpressionAttributeNames={f"#k{i}": k for i, k in enumerate(key)})
        return bool(found.get("Item"))

    def count(self, name: str) -> int:
        """Exact item count by a COUNT scan (reads the whole table: use on small tables)."""
        total = 0
        kwargs: dict[str, Any] = {"TableName": name, "Select": "COUNT"}
        while True:
            page = self.call("scan", f"table {name}", **kwargs)
            total += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
