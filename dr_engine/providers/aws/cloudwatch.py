"""CloudWatch: read alarm states and the latest value of a metric."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dr_engine.providers.aws.api import AwsApi


class CloudWatch(AwsApi):
    """CloudWatch in one region."""

    service = "cloudwatch"

    def alarms(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Metric and composite alarms by name (names that do not exist are absent)."""
        found: dict[str, dict[str, Any]] = {}
        # DescribeAlarms accepts at most 100 names per call.
        for start in range(0, len(names), 100):
            chunk = names[start:start + 100]
            page = self.call("describe_alarms", f"alarms {', '.join(chunk)[:120]}", AlarmNames=chunk,
                             AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                found[str(alarm["AlarmName"])] = dict(alarm)
        return found

    def latest(self, namespace: str, metric: str, dimensions: dict[str, str], now: datetime,
               window: timedelta, statistic: str = "Maximum") -> float | None:
        """The most recent datapoint of a metric within ``window`` (None when there is none)."""
        found = self.call("get_metric_statistics", f"metric {namespace}/{metric}", Namespace=namespace,
                          MetricName=metric, Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
                          # End one period ahead so the current, still-open minute is included.
                          StartTime=now - window, EndTime=now + timedelta(minutes=1), Period=60,
                          Statistics=[statistic])
        points = sorted(found.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1][statistic]) if points else None
