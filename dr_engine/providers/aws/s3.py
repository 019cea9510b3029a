"""S3: list objects with ETags, copy an object across buckets/regions, check a bucket."""

from __future__ import annotations

from dataclasses import dataclass

from dr_engine.providers.aws.api import AwsApi


@dataclass(frozen=True)
class ObjectInfo:
    """What verification compares: the ETag (content hash for single-part uploads) and size."""

    etag: str
    size: int


class S3(AwsApi):
    """S3 through one region's endpoint."""

    service = "s3"

    def bucket_exists(self, bucket: str) -> bool:
        """HeadBucket: True when the bucket exists and is reachable with these credentials."""
        found = self.call("head_bucket", f"bucket {bucket}", absent=("404", "NoSuchBucket", "NotFound"),
                          Bucket=bucket)
        return found is not None

    def objects(self, bucket: str, prefix: str = "") -> dict[str, ObjectInfo]:
        """Every object under ``prefix``: key -> (ETag, size)."""
        return {
            str(item["Key"]): ObjectInfo(str(item["ETag"]).strip('"'), int(item["Size"]))
            for item in self.pages("list_objects_v2", f"bucket {bucket}", "Contents", Bucket=bucket, Prefix=prefix)
        }

    def copy(self, source_bucket: str, key: str, target_bucket: str) -> None:
        """Server-side copy (the request goes to the target's region; objects up to 5 GB)."""
        self.call("copy_object", f"s3://{target_bucket}/{key} from s3://{source_bucket}",
                  Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key},
                  MetadataDirective="COPY")
