"""The local stand-in for a Lambda event source mapping on the table's DynamoDB stream.

moto keeps a stream for a table whose StreamSpecification is enabled and serves DynamoDB Streams'
ListStreams, DescribeStream, GetShardIterator and GetRecords; it cannot run a function on it. The
bridge polls each shard and hands its records to a function as Lambda does (a `{"Records": [...]}`
event of the stream's records, shard by shard, in sequence order, one batch at a time per shard):

- a batch is up to `batch_size` records; records older than `max_record_age_s` are not delivered;
- the function raising fails the whole batch; with `report_batch_item_failures` it may instead return
  `{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}, ...]}`: the records before the lowest
  one reported are done, and delivery resumes at it;
- a failed batch comes back at the next poll, the same records again (so the function must be
  idempotent, exactly as in AWS); with `bisect_on_error` the retried batch is the failing half, down
  to a single record, and halving does not count as a retry;
- after `max_retry_attempts` retries (-1: until the record expires) the records of the failed batch go
  to `on_failure` (in AWS: the mapping's on-failure destination) and delivery moves past them.

What it cannot reproduce of DynamoDB Streams, because moto does not: more than one shard, shard
rotation, the 24-hour retention and iterator expiry; moto keeps every record and iterator in memory.
"""

import base64
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

type Record = dict[str, Any]
Invoke = Callable[[dict[str, Any]], Any]
OnFailure = Callable[[Sequence[Record], str], None]

DEFAULT_BATCH_SIZE = 100
DEFAULT_POLL_S = 0.25


def enable_stream(client: Any, table: str, view_type: str = "NEW_AND_OLD_IMAGES") -> str:
    """Turn the table's stream on (a DynamoDB client); its ARN."""
    described = client.describe_table(TableName=table)["Table"]
    if described.get("StreamSpecification", {}).get("StreamEnabled"):
        arn: str = described["LatestStreamArn"]
        return arn
    updated = client.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type}
    )
    arn = updated["TableDescription"]["LatestStreamArn"]
    return arn


def lost_records(records: Sequence[Record], reason: str) -> None:
    """The default on-failure destination: say so loudly, with every record's keys and sequence number."""
    log.error(
        "stream bridge: LOST %d RECORDS (%s): %s",
        len(records),
        reason,
        [(r["dynamodb"].get("SequenceNumber"), r["dynamodb"].get("Keys")) for r in records],
    )


@dataclass
class _Shard:
    checkpoint: str | None = None  # the last sequence number done with; None: start at the starting position
    limit: int = DEFAULT_BATCH_SIZE  # the next batch's size (halved by bisection, reset after a success)
    retries: int = 0  # of the batch at the checkpoint


@dataclass
class StreamBridge:
    """Deliver the stream's records to `invoke`; `poll()` does one round over the shards, `run()` loops until `stop`."""

    streams: Any  # a boto3 DynamoDB Streams client
    stream_arn: str
    invoke: Invoke
    batch_size: int = DEFAULT_BATCH_SIZE
    starting_position: str = "TRIM_HORIZON"  # or LATEST
    report_batch_item_failures: bool = True
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: float | None = None
    on_failure: OnFailure = lost_records
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _shards: dict[str, _Shard] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch_size must be 1-10,000")
        if self.starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError("starting_position must be TRIM_HORIZON or LATEST")
        if self.max_retry_attempts < -1:
            raise ValueError("max_retry_attempts must be -1 (until the records expire) or more")

    def run(self, stop: threading.Event, interval_s: float = DEFAULT_POLL_S) -> None:
        while not stop.is_set():
            try:
                if self.poll() == 0:
                    stop.wait(interval_s)
            except Exception:  # the bridge outlives a hiccup of the local AWS, as the mapping does
                log.exception("stream bridge: could not read %s", self.stream_arn)
                stop.wait(interval_s)

    def poll(self) -> int:
        """One batch from each shard that has records; the number of records handed over (done or failed)."""
        delivered = 0
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for described in shards:
            shard_id = described["ShardId"]
            state = self._shards.get(shard_id)
            if state is None:
                state = self._shards[shard_id] = _Shard(limit=self.batch_size)
                if self.starting_position == "LATEST":
                    state.checkpoint = self._latest(shard_id)
            records = self._read(shard_id, state)
            if records:
                self._deliver(state, records)
                delivered += len(records)
        return delivered

    # --- one batch ---------------------------------------------------------------------------------------

    def _deliver(self, state: _Shard, records: list[Record]) -> None:
        expired = [r for r in records if self._expired(r)]
        if expired:  # the oldest come first: expired records lead the batch
            self.on_failure(expired, "MaximumRecordAgeInSeconds")
            state.checkpoint = _sequence(expired[-1])
            records = records[len(expired) :]
            if not records:
                return
        failed_at = self._call(records)
        if failed_at is None:
            state.checkpoint, state.limit, state.retries = _sequence(records[-1]), self.batch_size, 0
            return
        if failed_at > 0:  # reported partial success: the records before the failure are done
            state.checkpoint, state.retries = _sequence(records[failed_at - 1]), 0
            records = records[failed_at:]
        if self.bisect_on_error and len(records) > 1:
            state.limit = max(1, len(records) // 2)
            return
        state.retries += 1
        if self.max_retry_attempts != -1 and state.retries > self.max_retry_attempts:
            self.on_failure(records, f"MaximumRetryAttempts ({self.max_retry_attempts})")
            state.checkpoint, state.limit, state.retries = _sequence(records[-1]), self.batch_size, 0

    def _call(self, records: list[Record]) -> int | None:
        """None when the batch is done; else the index of the first record to deliver again."""
        try:
            response = self.invoke({"Records": [_as_lambda_sends_it(r, self.stream_arn) for r in records]})
        except Exception:  # as in Lambda: a failed invocation fails its batch, which comes back
            log.exception("stream bridge: the function failed on %d records; they come back", len(records))
            return 0
        if not self.report_batch_item_failures or not isinstance(response, Mapping):
            return None
        failures = response.get("batchItemFailures") or []
        if not failures:
            return None
        sequences = [_sequence(r) for r in records]
        identifiers = [f.get("itemIdentifier") if isinstance(f, Mapping) else None for f in failures]
        known = [identifier for identifier in identifiers if isinstance(identifier, str) and identifier in sequences]
        if len(known) != len(identifiers):
            # Lambda treats an unknown, empty or missing identifier as the whole batch failing.
            log.error("stream bridge: batchItemFailures names no record of the batch: %s", identifiers)
            return 0
        return min(sequences.index(identifier) for identifier in known)

    # --- reading -----------------------------------------------------------------------------------------------

    def _read(self, shard_id: str, state: _Shard) -> list[Record]:
        if state.checkpoint is None:
            kind, extra = "TRIM_HORIZON", {}
        else:
            kind, extra = "AFTER_SEQUENCE_NUMBER", {"SequenceNumber": state.checkpoint}
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=kind, **extra
        )["ShardIterator"]
        records: list[Record] = self.streams.get_records(ShardIterator=iterator, Limit=min(state.limit, 1000))[
            "Records"
        ]
        return records

    def _latest(self, shard_id: str) -> str | None:
        """The last sequence number now in the shard: a LATEST mapping starts after it."""
        records = self._all(shard_id)
        return _sequence(records[-1]) if records else None

    def _all(self, shard_id: str) -> list[Record]:
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        found: list[Record] = []
        while iterator:
            page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            found.extend(page["Records"])
            iterator = page.get("NextShardIterator")
        return found

    def _expired(self, record: Record) -> bool:
        if self.max_record_age_s is None:
            return False
        created: datetime = record["dynamodb"]["ApproximateCreationDateTime"]
        return (self.clock() - created).total_seconds() > self.max_record_age_s


def _sequence(record: Record) -> str:
    sequence: str = record["dynamodb"]["SequenceNumber"]
    return sequence


def _as_lambda_sends_it(record: Record, stream_arn: str) -> Record:
    """A record as boto3 returns it, turned into a Lambda event record: the creation time in epoch seconds,
    binary values base64-encoded (JSON carries no bytes), and the stream's ARN."""
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    for image in ("Keys", "NewImage", "OldImage"):
        if image in dynamodb:
            dynamodb[image] = {name: _json_value(value) for name, value in dynamodb[image].items()}
    return {**record, "dynamodb": dynamodb, "eventSourceARN": stream_arn}


def _json_value(value: Mapping[str, Any]) -> dict[str, Any]:
    ((kind, data),) = value.items()
    if kind == "B":
        return {kind: base64.b64encode(data).decode("ascii")}
    if kind == "BS":
        return {kind: [base64.b64encode(element).decode("ascii") for element in data]}
    if kind == "L":
        return {kind: [_json_value(element) for element in data]}
    if kind == "M":
        return {kind: {name: _json_value(element) for name, element in data.items()}}
    return {kind: data}
