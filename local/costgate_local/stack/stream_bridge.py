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
  to `on_failure` (in AWS: the mapping's on-failure destination) and delivery moves past them;
- with `filters` (the mapping's FilterCriteria patterns), only records some pattern matches are
  delivered; the others are passed over as if handled;
- with `tumbling_window_s`, each event also carries `shardId`, `eventSourceARN`, `window`, `state` and
  `isFinalInvokeForWindow`, and an answer without `state` fails the batch, as Lambda's tumbling windows
  do (the bridge runs no final invocation per window: the state is handed back unused).

What it cannot reproduce of DynamoDB Streams, because moto does not: more than one shard, shard
rotation, the 24-hour retention and iterator expiry; moto keeps every record and iterator in memory.
"""

import base64
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    filters: Sequence[Mapping[str, Any]] = ()
    tumbling_window_s: float | None = None
    _shards: dict[str, _Shard] = field(default_factory=dict, init=False)
    _caught_up: bool = field(default=False, init=False)

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

    @classmethod
    def from_event(cls, streams: Any, stream_arn: str, invoke: Invoke, source: Mapping[str, Any]) -> "StreamBridge":
        """A bridge set up as a template's DynamoDB event source (`template.stream_source`) declares it."""
        age = source.get("MaximumRecordAgeInSeconds", -1)
        patterns = [json.loads(f["Pattern"]) for f in (source.get("FilterCriteria") or {}).get("Filters", [])]
        window = source.get("TumblingWindowInSeconds")
        return cls(
            streams=streams,
            stream_arn=stream_arn,
            invoke=invoke,
            batch_size=int(source.get("BatchSize", DEFAULT_BATCH_SIZE)),
            starting_position=str(source.get("StartingPosition", "TRIM_HORIZON")),
            report_batch_item_failures="ReportBatchItemFailures" in source.get("FunctionResponseTypes", []),
            bisect_on_error=bool(source.get("BisectBatchOnFunctionError", False)),
            max_retry_attempts=int(source.get("MaximumRetryAttempts", -1)),
            max_record_age_s=None if int(age) == -1 else float(age),
            filters=patterns,
            tumbling_window_s=float(window) if window else None,
        )

    @property
    def caught_up(self) -> bool:
        """Whether the last poll found every shard without a record waiting (nothing left to deliver)."""
        return self._caught_up

    def poll(self) -> int:
        """One batch from each shard that has records; the number of records handed over (done or failed)."""
        delivered = 0
        waiting = False
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
                waiting = True
                wanted = [r for r in records if self._wanted(r)]
                if wanted:
                    self._deliver(state, wanted, shard_id, passed_over=records)
                    delivered += len(wanted)
                else:  # nothing a pattern matches: the mapping passes them over without invoking anything
                    state.checkpoint = _sequence(records[-1])
        self._caught_up = not waiting
        return delivered

    def _wanted(self, record: Record) -> bool:
        if not self.filters:
            return True
        shown = _as_lambda_sends_it(record, self.stream_arn)
        return any(matches(pattern, shown) for pattern in self.filters)

    # --- one batch ---------------------------------------------------------------------------------------

    def _deliver(self, state: _Shard, records: list[Record], shard_id: str, passed_over: list[Record]) -> None:
        expired = [r for r in records if self._expired(r)]
        if expired:  # the oldest come first: expired records lead the batch
            self.on_failure(expired, "MaximumRecordAgeInSeconds")
            state.checkpoint = _sequence(expired[-1])
            records = records[len(expired) :]
            if not records:
                return
        failed_at = self._call(records, shard_id)
        if failed_at is None:
            # Done with the batch, and with the filtered-out records read along with it.
            last = max(_sequence(records[-1]), _sequence(passed_over[-1]), key=int)
            state.checkpoint, state.limit, state.retries = last, self.batch_size, 0
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

    def _call(self, records: list[Record], shard_id: str) -> int | None:
        """None when the batch is done; else the index of the first record to deliver again."""
        event: dict[str, Any] = {"Records": [_as_lambda_sends_it(r, self.stream_arn) for r in records]}
        if self.tumbling_window_s is not None:
            event |= self._window_fields(shard_id)
        try:
            response = self.invoke(event)
        except Exception:  # as in Lambda: a failed invocation fails its batch, which comes back
            log.exception("stream bridge: the function failed on %d records; they come back", len(records))
            return 0
        if self.tumbling_window_s is not None and not (isinstance(response, Mapping) and "state" in response):
            log.error("stream bridge: a tumbling window's answer has no state: the batch failed")
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

    def _window_fields(self, shard_id: str) -> dict[str, Any]:
        if self.tumbling_window_s is None:
            return {}
        now = self.clock()
        seconds = self.tumbling_window_s
        start = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
        return {
            "shardId": shard_id,
            "eventSourceARN": self.stream_arn,
            "window": {
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "state": {},
            "isFinalInvokeForWindow": False,
            "isWindowTerminatedEarly": False,
        }

    def _expired(self, record: Record) -> bool:
        if self.max_record_age_s is None:
            return False
        created: datetime = record["dynamodb"]["ApproximateCreationDateTime"]
        return (self.clock() - created).total_seconds() > self.max_record_age_s


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """Whether a Lambda event filter pattern matches a record (as Lambda sends it).

    What the template's patterns use: nested objects, and lists of the values a field may equal. Any
    other rule (prefix, numeric, exists, anything-but) is refused rather than guessed at.
    """
    _check_pattern(pattern)
    if not isinstance(value, Mapping):
        return False
    for name, rule in pattern.items():
        if isinstance(rule, Mapping):
            if not matches(rule, value.get(name)):
                return False
        elif name not in value or value[name] not in rule:
            return False
    return True


def _check_pattern(pattern: Mapping[str, Any]) -> None:
    for rule in pattern.values():
        if isinstance(rule, Mapping):
            _check_pattern(rule)
        elif not isinstance(rule, list) or any(isinstance(option, Mapping | list) for option in rule):
            raise ValueError(f"the local stream bridge matches only lists of plain values, not {rule!r}")


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
