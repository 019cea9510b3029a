"""One moto server per session (a child process on a free port), reset before every test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dr_engine.providers.aws.session import AwsTarget, client
from dr_engine.testing.moto_fixtures import aws_context, aws_regions, faults, moto, moto_server  # noqa: F401
from dr_engine.world.aws_seed import AwsWorld, seed_aws_world
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def world(moto: MotoServer) -> AwsWorld:  # noqa: F811 - pytest fixture injection
    """The demo world's AWS resources, freshly seeded."""
    seed_aws_world(moto.endpoint_url)
    return AwsWorld()


@pytest.fixture
def boto(moto: MotoServer) -> Callable[[str, str], Any]:  # noqa: F811
    """Raw boto3 clients against the test server, to arrange and inspect state: ``boto(service, region)``."""

    def make(service: str, region: str = "us-west-2") -> Any:
        return client(AwsTarget(region, moto.endpoint_url), service)

    return make
