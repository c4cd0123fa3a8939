"""What the capacity model does not record but models: a pair's budget shards and the aggregator's writes.

The aggregator's writes come from the table's stream, per batch, not per request: `aggregator_figures`
models them from the table's write rate (one stream shard per table partition), the batching window and
the size of a target item with one mark per stream shard. `shards_for` is the shard count a (key, feature)
pair needs for its request rate (docs/scale.md §3).
"""

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from costgate_local.tools.capacity import PARTITION_WCU_PER_S, Deployment, item_size, write_units

# A shard takes a request's hold and its give-back: 2 writes of ~0.4 KB. Half a partition's write limit per
# shard leaves room for a busy shard (Poisson) and the rare draw.
SHARD_TARGET_WCU_PER_S: Final = Decimal(500)
# AggregatorFunction's event source (template.yaml): at most one batch a second per stream shard, of up to 1,000.
STREAM_BATCH_WINDOW_S: Final = Decimal(1)
STREAM_BATCH_SIZE: Final = 1000
# Lambda polls each stream shard four times a second: a record waits a quarter of a second on average.
STREAM_POLL_S: Final = Decimal("0.25")
# A mark on a target: its attribute name ("m_" and 12 hex characters) and a 40-digit sequence number.
MARK_BYTES: Final = 14 + 40


def shards_for(pair_rps: Decimal) -> int:
    """The shard count a (key, feature) pair needs at `pair_rps`: a power of two, each shard near half a partition."""
    needed = max(1, math.ceil(2 * pair_rps / SHARD_TARGET_WCU_PER_S))
    return 1 << (needed - 1).bit_length()


def rollup_item_bytes(marks: int) -> int:
    """A busy hour's rollup item as the aggregator writes it (every counter present), with `marks` stream shards."""
    counters = {
        name: {"N": "123456789"}
        for name in [
            "requests",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
            "web_search_requests",
            "swept_requests",
            "applied_prompt_cache_requests",
            "applied_routing_requests",
        ]
    }
    money = {
        name: {"N": "1234.5678901234"}
        for name in [
            "cost_usd",
            "baseline_cost_usd",
            "swept_usd",
            "savings_prompt_cache_usd",
            "savings_routing_usd",
            "applied_prompt_cache_cost_usd",
            "applied_routing_cost_usd",
        ]
    }
    identity = {
        "PK": {"S": "DAY#2026-11-20#15"},
        "SK": {"S": "ROLLUP#tenant-name-of-some-length#feature-name#claude-sonnet-5-5#12"},
        "entity": {"S": "rollup"},
        "day": {"S": "2026-11-20"},
        "tenant": {"S": "tenant-name-of-some-length"},
        "feature": {"S": "feature-name"},
        "model": {"S": "claude-sonnet-5-5"},
        "hour": {"N": "12"},
        "expires_at": {"N": "1798243200"},
    }
    return item_size({**identity, **counters, **money}) + marks * MARK_BYTES


@dataclass(frozen=True)
class AggregatorFigures:
    """AggregatorFunction at the deployment's rate: its hottest target and what it adds per request."""

    stream_shards: int
    target_writes_per_s: Decimal  # a busy tenant's rollup item: one write per stream shard per batch
    target_wru: Decimal  # one such write (the item with a mark per stream shard)
    targets_per_tenant: int
    hottest_item_wcu_per_s: Decimal
    hottest_partition_wcu_per_s: Decimal
    wru_per_request: Decimal
    lag_s: Decimal  # typical: the batching window, the poll, and a batch's writes


def aggregator_figures(
    deployment: Deployment, table_wru_per_s: Decimal, targets_per_tenant: int, rollup_partitions: int
) -> AggregatorFigures:
    """The aggregator's load: each stream shard (one per table partition, at ≤ 1,000 WRU/s each) hands it a batch
    at most every window; a batch writes each target its records touch once."""
    shards = max(1, math.ceil(table_wru_per_s / PARTITION_WCU_PER_S))
    per_tenant = Decimal(deployment.rps) / deployment.tenants
    per_shard_window = per_tenant / shards * STREAM_BATCH_WINDOW_S  # a tenant's records in one batch of one shard
    batches_per_s = max(Decimal(1), Decimal(deployment.rps) / shards / STREAM_BATCH_SIZE) / STREAM_BATCH_WINDOW_S
    writes_per_s = shards * batches_per_s * min(Decimal(1), per_shard_window)
    wru = write_units(rollup_item_bytes(shards))
    item = writes_per_s * wru
    tenants_per_partition = math.ceil(deployment.tenants / rollup_partitions)
    total_writes = writes_per_s * wru * targets_per_tenant * deployment.tenants
    lag = STREAM_BATCH_WINDOW_S + STREAM_POLL_S + targets_per_tenant * deployment.dynamodb_round_trip_s
    return AggregatorFigures(
        stream_shards=shards,
        target_writes_per_s=writes_per_s,
        target_wru=wru,
        targets_per_tenant=targets_per_tenant,
        hottest_item_wcu_per_s=item,
        hottest_partition_wcu_per_s=item * tenants_per_partition,
        wru_per_request=total_writes / deployment.rps,
        lag_s=lag,
    )
