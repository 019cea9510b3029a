"""The AWS half of the demo world, created in a moto server (or any emulator) by :func:`seed_aws_world`.

Source region (us-east-1) holds the live application; the target (us-west-2) a pilot light:

- Route 53 zone ``bank.example`` with failover records for ``app.bank.example``: PRIMARY ->
  source address, SECONDARY -> target address;
- a launch template and the Auto Scaling group ``ledger-app-usw2`` (min 0, desired 0, max 4);
- CloudWatch alarms ``ledger-app-5xx`` and ``ledger-app-latency`` in the target, state OK;
- S3 buckets ``ledger-docs-use1`` (all documents) and ``ledger-docs-usw2`` (some missing: moto does
  not replicate, so ``s3.sync`` has work to do);
- DynamoDB table ``ledger-sessions`` in both regions with a ``dr-marker`` item;
- secret ``ledger/db-credentials`` in the source, replicated to the target;
- RDS ``ledger-db`` in the source with the cross-region read replica ``ledger-db-usw2``.

The CloudFormation stack is *not* created: the runbook applies ``stacks/cloudformation/ledger.yaml``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from dr_engine.providers.aws.session import AwsTarget, client


@dataclass(frozen=True)
class AwsWorld:
    """Names of the demo world's AWS resources (the shipped runbook uses these)."""

    source_region: str = "us-east-1"
    target_region: str = "us-west-2"
    source_addr: str = "127.0.1.1"
    target_addr: str = "127.0.2.1"
    zone: str = "bank.example"
    record: str = "app.bank.example"
    launch_template: str = "ledger-app"
    image: str = "ami-0123456789abcdef0"
    group: str = "ledger-app-usw2"
    stack: str = "ledger-app"
    template: str = "stacks/cloudformation/ledger.yaml"
    alarms: tuple[str, ...] = ("ledger-app-5xx", "ledger-app-latency")
    source_bucket: str = "ledger-docs-use1"
    target_bucket: str = "ledger-docs-usw2"
    documents: int = 6
    table: str = "ledger-sessions"
    secret: str = "ledger/db-credentials"
    db: str = "ledger-db"
    replica: str = "ledger-db-usw2"


def seed_aws_world(endpoint_url: str, world: AwsWorld | None = None) -> dict[str, str]:
    """Create the demo world's AWS resources; return ids worth showing (zone id, ...)."""
    w = world or AwsWorld()

    def api(service: str, region: str) -> Any:
        return client(AwsTarget(region, endpoint_url), service)

    src, dst = w.source_region, w.target_region
    r53 = api("route53", src)
    zone_id = str(r53.create_hosted_zone(Name=w.zone + ".", CallerReference=f"dr-world-{w.zone}")
                  ["HostedZone"]["Id"]).rsplit("/", 1)[-1]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": w.record + ".", "Type": "A", "TTL": 60, "SetIdentifier": ident, "Failover": role,
            "ResourceRecords": [{"Value": addr}]}}
        for ident, role, addr in (("primary", "PRIMARY", w.source_addr), ("secondary", "SECONDARY", w.target_addr))
    ]})

    # A fixed image id: listing moto's ~1,300 built-in AMIs costs seconds after every reset.
    api("ec2", dst).create_launch_template(LaunchTemplateName=w.launch_template,
                                           LaunchTemplateData={"ImageId": w.image, "InstanceType": "t3.micro"})
    api("autoscaling", dst).create_auto_scaling_group(
        AutoScalingGroupName=w.group, LaunchTemplate={"LaunchTemplateName": w.launch_template},
        MinSize=0, MaxSize=4, DesiredCapacity=0, AvailabilityZones=[f"{dst}a", f"{dst}b"])

    cloudwatch = api("cloudwatch", dst)
    for alarm in w.alarms:
        cloudwatch.put_metric_alarm(AlarmName=alarm, Namespace="Ledger", MetricName=alarm, Statistic="Sum",
                                    Period=60, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanOrEqualToThreshold")
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="seeded healthy")

    s3_src, s3_dst = api("s3", src), api("s3", dst)
    s3_src.create_bucket(Bucket=w.source_bucket)
    s3_dst.create_bucket(Bucket=w.target_bucket, CreateBucketConfiguration={"LocationConstraint": dst})
    for number in range(w.documents):
        body = f"statement {number}\n".encode()
        s3_src.put_object(Bucket=w.source_bucket, Key=f"statements/{number:04d}.txt", Body=body)
        if number % 2 == 0:  # half already "replicated"
            s3_dst.put_object(Bucket=w.target_bucket, Key=f"statements/{number:04d}.txt", Body=body)

    for region in (src, dst):
        dynamo = api("dynamodb", region)
        dynamo.create_table(TableName=w.table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        dynamo.put_item(TableName=w.table, Item={"pk": {"S": "dr-marker"}, "region": {"S": region}})

    # A random value: the demo secret protects nothing and must not look like a real password.
    api("secretsmanager", src).create_secret(Name=w.secret, SecretString=secrets.token_urlsafe(24),
                                             AddReplicaRegions=[{"Region": dst}])

    primary = api("rds", src).create_db_instance(
        DBInstanceIdentifier=w.db, DBInstanceClass="db.t3.micro", Engine="postgres", AllocatedStorage=20,
        MasterUsername="ledger", MasterUserPassword=secrets.token_urlsafe(16), BackupRetentionPeriod=1)
    api("rds", dst).create_db_instance_read_replica(
        DBInstanceIdentifier=w.replica, SourceDBInstanceIdentifier=primary["DBInstance"]["DBInstanceArn"],
        DBInstanceClass="db.t3.micro")
    return {"zone_id": zone_id, "group": w.group, "source_bucket": w.source_bucket,
            "target_bucket": w.target_bucket, "replica": w.replica}
