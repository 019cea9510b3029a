"""Helpers shared by the terraform tests (regions on the test moto server, contexts)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from dr_engine.actions.base import StepContext
from dr_engine.model import Region
from dr_engine.testing.step_context import step_context

REPO = Path(__file__).resolve().parents[3]
STACKS = Path(__file__).resolve().parent / "stacks"
_names = itertools.count(1)


def region(endpoint: str, aws_region: str = "us-west-2", addr: str = "127.0.0.1", **params: Any) -> Region:
    """A uniquely named region on the test moto server (unique names keep buckets apart)."""
    name = f"tf{os.getpid() % 1000}-{next(_names)}-{aws_region.split('-')[1]}"
    return Region.model_validate({
        "name": name, "aws": {"region": aws_region, "endpoint_url": endpoint},
        "params": {"addr": addr, **params},
    })


def context(tmp_path: Path, target: Region, *, timeout: float = 120.0, **kwargs: Any) -> StepContext:
    """A step context targeting ``target`` whose state dir is under ``tmp_path``."""
    return step_context(state_dir=tmp_path / "state", target=target, timeout=timeout,
                        repo_root=REPO, **kwargs)


def s3(endpoint: str, aws_region: str) -> Any:
    """A boto3 S3 client on the test moto server (for assertions on the stored state)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=aws_region)
