"""Base of the per-service providers: one client, every call classified by :func:`errors.call`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any, ClassVar

from dr_engine.clock import Deadline
from dr_engine.model import Region
from dr_engine.providers.aws.errors import call
from dr_engine.providers.aws.session import AwsTarget, client


class AwsApi:
    """A thin wrapper over one boto3 client for one region; subclasses set ``service``."""

    service: ClassVar[str]

    def __init__(self, target: AwsTarget, deadline: Deadline | None = None) -> None:
        self.target = target
        self.client = client(target, self.service, deadline)

    @classmethod
    def of(cls, region: Region, deadline: Deadline | None = None) -> AwsApi:
        """Build the provider for a dr-engine region."""
        return cls(AwsTarget.of(region), deadline)

    @property
    def region_name(self) -> str:
        """The AWS region this client talks to."""
        return self.target.region_name

    def call(
        self,
        method: str,
        resource: str,
        *,
        absent: Collection[str] = (),
        absent_if: Callable[[BaseException], bool] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call the API, classifying failures (see :func:`dr_engine.providers.aws.errors.call`)."""
        return call(self.client, method, resource, absent=absent, absent_if=absent_if, **kwargs)

    def pages(self, method: str, resource: str, key: str, **kwargs: Any) -> Iterator[Any]:
        """Items under ``key`` across every page of a paginated call (each page classified)."""
        token_in, token_out = _TOKENS.get(method, ("NextToken", "NextToken"))
        while True:
            page = self.call(method, resource, **kwargs)
            yield from page.get(key, [])
            token = page.get(token_out)
            if not token:
                return
            kwargs[token_in] = token


#: Pagination token names (request, response) for calls that do not use NextToken.
_TOKENS = {
    "list_objects_v2": ("ContinuationToken", "NextContinuationToken"),
    "describe_db_instances": ("Marker", "Marker"),
    "describe_stack_events": ("NextToken", "NextToken"),
}
