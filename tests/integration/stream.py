"""The table's stream through the real AggregatorFunction, for tests that read rollups after writing rows.

`aggregate(local_aws, table)` runs a stream bridge set up as template.yaml's event source (batch size,
filters, tumbling window) until it has delivered everything the stream holds, as the local stack's
`costgate serve` does in the background. One bridge per table, so a second call goes on from where
the first stopped, as an event source mapping would. `AggregatedLedger` and `AggregatedPromptCache` are
the real stores whose reads aggregate first: what a reader sees once the aggregator has caught up.
"""

import os
from collections.abc import Iterator
from datetime import date
from functools import partial
from typing import Any

import boto3

from costgate.accounting.ledger import RejectionCount, Rollup
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.prompt_cache import DynamoPromptCacheStore
from costgate.dal.table import CostgateItem
from costgate.routing.prompt_cache import GapHistogram, PrefixStats
from costgate_local.stack.aws import LocalAwsEndpoints, environment
from costgate_local.stack.stream_bridge import StreamBridge
from costgate_local.stack.template import load_template, stream_source
from functions.aggregator import handler
from tests.conftest import FakeLambdaContext

MAX_POLLS = 500
_BRIDGES: dict[str, StreamBridge] = {}


def _client(service: str, endpoints: LocalAwsEndpoints) -> Any:
    return boto3.client(service, endpoint_url=endpoints.endpoint_url, region_name=endpoints.region)


def invoke(event: dict[str, Any], table: str | None = None) -> Any:
    """AggregatorFunction's handler as Lambda runs it, on a fresh container for `table` (default: the bound one)."""
    handler.settings.cache_clear()
    handler.rollup_store.cache_clear()
    with environment({"COSTGATE_TABLE": table or CostgateItem.Meta.table_name}):
        return handler.lambda_handler(event, FakeLambdaContext(function_name="costgate-AggregatorFunction-test"))


def bridge_for(endpoints: LocalAwsEndpoints, table: str) -> StreamBridge:
    if table not in _BRIDGES:
        arn = _client("dynamodb", endpoints).describe_table(TableName=table)["Table"]["LatestStreamArn"]
        source = stream_source(load_template(), "AggregatorFunction")
        streams = _client("dynamodbstreams", endpoints)
        _BRIDGES[table] = StreamBridge.from_event(streams, arn, partial(invoke, table=table), source)
    return _BRIDGES[table]


def aggregate(endpoints: LocalAwsEndpoints, table: str) -> int:
    """Deliver everything waiting in the table's stream to AggregatorFunction; the records delivered."""
    bridge = bridge_for(endpoints, table)
    delivered = 0
    for _ in range(MAX_POLLS):
        delivered += bridge.poll()
        if bridge.caught_up:
            return delivered
    raise AssertionError(f"the stream of {table} still had records after {MAX_POLLS} polls")


def aggregate_bound() -> int:
    """`aggregate` for the table the data layer is bound to, on the local AWS the environment points at."""
    endpoints = LocalAwsEndpoints(os.environ["AWS_ENDPOINT_URL"], os.environ["AWS_DEFAULT_REGION"])
    return aggregate(endpoints, CostgateItem.Meta.table_name)


class AggregatedLedger(DynamoLedgerStore):
    """The real store; its reads first let AggregatorFunction take everything the bound table's stream holds."""

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator[Rollup]:
        aggregate_bound()
        return super().rollups(first, last, tenant)

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator[RejectionCount]:
        aggregate_bound()
        return super().rejections(first, last, tenant)


class AggregatedPromptCache(DynamoPromptCacheStore):
    """The real store; its reads first let AggregatorFunction take everything the bound table's stream holds."""

    def gap_histogram(self, feature: str) -> GapHistogram:
        aggregate_bound()
        return super().gap_histogram(feature)

    def prefixes(self, feature: str | None = None) -> list[PrefixStats]:
        aggregate_bound()
        return super().prefixes(feature)
