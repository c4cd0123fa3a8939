"""`costgate serve`: the whole stack on one machine, in one process.

moto as AWS (the table and bucket built from template.yaml), the Claude API simulator (or the real
API), the HTTP front that invokes the real ApiFunction handler (each execution environment a process
of its own running costgate's runtime loop, as on Lambda), batch summarisation's two triggers:
an S3-event bridge that hands uploads under incoming/ to the real IngestFunction handler, and a
schedule loop that runs the real BatchFunction handler; a stream bridge that hands the table's
stream to the real AggregatorFunction handler as its event source mapping does (`stream_bridge`);
and schedule loops that run the real SpendWatchFunction and SweeperFunction handlers at their
template schedules. When everything listens it prints
exactly one JSON line to stdout and sends all later output to stderr, so a script can read the
line and go; SIGINT or SIGTERM stops every server, loop and environment process (nothing outlives it).
"""

import json
import logging
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

import boto3
from werkzeug.serving import BaseWSGIServer, make_server

from costgate.clock import SystemClock
from costgate.dal.keys import DynamoKeyStore
from costgate.dal.table import bind_table
from costgate.gateway.keys import issue_key
from costgate_local.simulator import Simulator, SimulatorOptions
from costgate_local.stack.aws import (
    REGION,
    LocalAws,
    create_bucket,
    create_event_queue,
    create_secret,
    create_table,
)
from costgate_local.stack.front import ACCOUNT_ID, ApiFront, LocalFunction, resolve
from costgate_local.stack.stream_bridge import StreamBridge
from costgate_local.stack.template import BUCKET_RESOURCE, load_template, stream_source

TABLE = "costgate-local"
STACK_NAME = "costgate-local"
# What CloudFormation substitutes for pseudo parameters, as the local stack's "deployment" sees them.
PSEUDO_PARAMETERS = {
    "AWS::StackName": STACK_NAME,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
}
INGEST_QUEUE = "costgate-local-ingest-events"
DEFAULT_BATCH_INTERVAL_S = 2.0
SPEND_FUNCTION = "SpendWatchFunction"
SWEEPER_FUNCTION = "SweeperFunction"
AGGREGATOR_FUNCTION = "AggregatorFunction"
# How often the stream bridge reads an idle stream (Lambda polls a shard four times a second).
STREAM_POLL_S = 0.25
# An EventBridge rate expression: a positive whole number and its unit, singular for 1 and plural otherwise.
_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|hour|day)(?P<plural>s?)\)")
_RATE_UNIT_S = {"minute": 60, "hour": 60 * 60, "day": 24 * 60 * 60}
# The S3-event bridge: how long one receive waits for a message, how soon a failed event comes back,
# and how many deliveries an event gets before it is given up (Lambda's async invoke: 1 + 2 retries).
BRIDGE_WAIT_S = 1
BRIDGE_RETRY_AFTER_S = 1
BRIDGE_MAX_RECEIVES = 3
ANTHROPIC_API_URL = "https://api.anthropic.com"
CLAUDE_KEY_SECRET_NAME = "costgate/claude-api-key"  # noqa: S105 - a secret's name, not a secret
# The simulator takes any key; each key is its own workspace (prompt caches and batches).
SIMULATOR_CLAUDE_KEY = "sk-ant-local-simulator"
DEV_TENANT = "local-dev"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    port: int
    upstream: str  # "simulator" | "anthropic" | "url" (upstream_url)
    simulator: SimulatorOptions
    batch_interval_s: float = DEFAULT_BATCH_INTERVAL_S  # between two BatchFunction ticks
    spend_interval_s: float | None = None  # between two SpendWatchFunction runs; None: its template schedule
    sweep_interval_s: float | None = None  # between two SweeperFunction runs; None: its template schedule
    upstream_url: str | None = None  # with upstream "url": a Claude API-compatible server of the caller's


def serve(options: ServeOptions) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    if options.upstream == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        print("costgate serve: --upstream anthropic needs ANTHROPIC_API_KEY in the environment", file=sys.stderr)
        return 2
    template = load_template()
    try:
        spend_interval_s = options.spend_interval_s or schedule_interval_s(template, SPEND_FUNCTION)
        sweep_interval_s = options.sweep_interval_s or schedule_interval_s(template, SWEEPER_FUNCTION)
    except ValueError as error:
        print(
            f"costgate serve: {error}; give it an interval with --spend-interval or --sweep-interval", file=sys.stderr
        )
        return 2
    stop = threading.Event()
    ready_line = _claim_stdout()
    # Before the ready line: a client may signal as soon as it has read it.
    _stop_on_signals(stop)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # per-request access lines from every server
    _log_to_stderr()
    bucket = resolve(template["Resources"][BUCKET_RESOURCE]["Properties"]["BucketName"], PSEUDO_PARAMETERS, "Bucket")

    with ExitStack() as stack:
        aws = stack.enter_context(LocalAws())
        os.environ.update(aws.endpoints.environ())
        create_table(aws.endpoints, TABLE)
        create_bucket(aws.endpoints, bucket)
        # In AWS the bucket invokes IngestFunction itself; moto cannot run a Lambda, so locally the
        # bucket notifies an SQS queue (same event types and prefix) and the bridge below invokes it.
        queue_url = create_event_queue(aws.endpoints, bucket, INGEST_QUEUE, "IngestFunction")

        if options.upstream == "simulator":
            upstream_url = stack.enter_context(Simulator(options.simulator)).base_url
            claude_key = SIMULATOR_CLAUDE_KEY
        elif options.upstream == "url" and options.upstream_url:
            upstream_url = options.upstream_url
            claude_key = os.environ.get("ANTHROPIC_API_KEY", SIMULATOR_CLAUDE_KEY)
        else:
            upstream_url = ANTHROPIC_API_URL
            claude_key = os.environ["ANTHROPIC_API_KEY"]
        create_secret(aws.endpoints, CLAUDE_KEY_SECRET_NAME, claude_key)

        refs = {
            **PSEUDO_PARAMETERS,
            "Table": TABLE,
            "Bucket": bucket,
            "ClaudeApiUrl": upstream_url,
            "ClaudeApiKeySecretName": CLAUDE_KEY_SECRET_NAME,
        }
        api, ingest, batch, spend, sweeper, aggregator = (
            LocalFunction.from_template(template, name, refs=refs)
            for name in (
                "ApiFunction",
                "IngestFunction",
                "BatchFunction",
                SPEND_FUNCTION,
                SWEEPER_FUNCTION,
                AGGREGATOR_FUNCTION,
            )
        )
        # One process is every function's container: their environments must agree where they overlap.
        os.environ.update(_merged_environment(api, ingest, batch, spend, sweeper, aggregator))
        bind_table(TABLE)
        api_key, _ = issue_key(DynamoKeyStore(), tenant=DEV_TENANT, feature=None, now=SystemClock().now())
        server = _serve_api(stack, api, options.port)

        sqs = boto3.client("sqs", endpoint_url=aws.endpoints.endpoint_url, region_name=aws.endpoints.region)
        bridge = _stream_bridge(aws, template, aggregator)
        loops = [
            threading.Thread(target=bridge.run, args=(stop, STREAM_POLL_S), name="ledger-stream", daemon=True),
            threading.Thread(
                target=ScheduleLoop(sweeper, sweep_interval_s, stop).run, name="sweep-schedule", daemon=True
            ),
            threading.Thread(target=S3EventBridge(sqs, queue_url, ingest, stop).run, name="s3-events", daemon=True),
            threading.Thread(
                target=ScheduleLoop(batch, options.batch_interval_s, stop).run, name="batch-schedule", daemon=True
            ),
            threading.Thread(
                target=ScheduleLoop(spend, spend_interval_s, stop).run, name="spend-schedule", daemon=True
            ),
        ]
        for loop in loops:
            loop.start()
        # Runs before the servers stop (callbacks run last in, first out): a loop's last call still has AWS.
        stack.callback(_join, loops, stop)

        ready = {
            "base_url": f"http://127.0.0.1:{server.server_port}",
            "api_key": api_key,
            "aws_endpoint_url": aws.endpoints.endpoint_url,
            "table": TABLE,
            "bucket": bucket,
            "upstream": options.upstream,
            "upstream_url": upstream_url,
            "batch_interval_s": options.batch_interval_s,
            "spend_interval_s": spend_interval_s,
            "sweep_interval_s": sweep_interval_s,
            # Simulator mode only: its keys, so a test can go around the gateway and read the usage and cost reports.
            **(
                {"upstream_api_key": claude_key, "admin_api_key": options.simulator.admin_key}
                if options.upstream == "simulator"
                else {}
            ),
        }
        ready_line.write(json.dumps(ready) + "\n")
        ready_line.close()
        while not stop.wait(timeout=1.0):
            pass
    print("costgate serve: stopped", file=sys.stderr)
    return 0


def _stream_bridge(aws: LocalAws, template: dict[str, Any], function: LocalFunction) -> StreamBridge:
    """The table's stream into the function, set up as the function's DynamoDB event declares."""
    dynamodb = boto3.client("dynamodb", endpoint_url=aws.endpoints.endpoint_url, region_name=aws.endpoints.region)
    streams = boto3.client("dynamodbstreams", endpoint_url=aws.endpoints.endpoint_url, region_name=aws.endpoints.region)
    stream_arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    return StreamBridge.from_event(streams, stream_arn, function.invoke, stream_source(template, function.logical_id))


def _serve_api(stack: ExitStack, api: LocalFunction, port: int) -> BaseWSGIServer:
    """The API front on 127.0.0.1:`port`, serving until the stack closes (and with it ApiFunction's environments)."""
    stack.callback(api.close)  # its environment processes
    api.start_environment()  # the first environment initialises while the rest starts
    server = make_server("127.0.0.1", port, ApiFront(api), threaded=True)
    stack.callback(server.server_close)
    thread = threading.Thread(target=server.serve_forever, name="api-front", daemon=True)
    thread.start()
    stack.callback(server.shutdown)
    return server


def schedule_interval_s(template: dict[str, Any], logical_id: str) -> float:
    """Seconds between two runs of the function's one Schedule event (a `!Ref` takes the parameter's default)."""
    events = template["Resources"][logical_id]["Properties"].get("Events", {}).values()
    schedules = [event["Properties"]["Schedule"] for event in events if event.get("Type") == "Schedule"]
    if len(schedules) != 1:
        raise ValueError(f"{logical_id} has {len(schedules)} Schedule events; the local stack runs exactly one")
    defaults = {
        name: str(parameter["Default"])
        for name, parameter in template.get("Parameters", {}).items()
        if "Default" in parameter
    }
    expression = resolve(schedules[0], defaults, f"{logical_id}'s schedule")
    try:
        return rate_interval_s(expression)
    except ValueError as error:
        raise ValueError(f"{logical_id}: {error}") from None


def rate_interval_s(expression: str) -> float:
    """Seconds between two runs of an EventBridge `rate(N minute|minutes|hour|hours|day|days)`.

    As EventBridge requires, N is a positive whole number and the unit singular for 1, plural otherwise.
    A `cron(...)` schedule names wall-clock times, not an interval: the local stack does not run one.
    """
    if expression.startswith("cron("):
        raise ValueError(f"the local stack cannot run the cron schedule {expression!r}, only rate(...)")
    found = _RATE.fullmatch(expression)
    # EventBridge refuses rate(1 minutes) and rate(5 minute) alike.
    if found is None or (found["value"] == "1") != (found["plural"] == ""):
        raise ValueError(
            f"{expression!r} is not an EventBridge rate expression such as rate(1 minute) or rate(5 minutes)"
        )
    return float(int(found["value"]) * _RATE_UNIT_S[found["unit"]])


def _claim_stdout() -> TextIO:
    """Keep the real stdout for the ready line alone; from now on fd 1 is stderr, so every log
    line and EMF blob (Powertools prints to stdout) goes there, and stdout ends after the line."""
    sys.stdout.flush()
    ready_line = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return ready_line


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("costgate serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _merged_environment(*functions: LocalFunction) -> dict[str, str]:
    merged: dict[str, str] = {}
    for function in functions:
        for name, value in function.environment.items():
            if merged.setdefault(name, value) != value:
                raise ValueError(f"{function.logical_id} sets {name}={value!r}, another function {merged[name]!r}")
    return merged


def _join(threads: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for thread in threads:
        # A loop notices `stop` within BRIDGE_WAIT_S, unless a handler is running: it is not cut short.
        thread.join(timeout=30)


class S3EventBridge:
    """The local stand-in for S3 invoking a function asynchronously: each S3 event that reaches the queue
    goes to the function's handler, with a Lambda context, one at a time.

    A message is deleted only once the handler returned. If it raises, the event comes back after
    `retry_after_s` (as Lambda retries an async event), up to `max_receives` deliveries in all; then it
    is given up, and logged with its whole body (in AWS it would wait in the dead-letter queue).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: LocalFunction,
        stop: threading.Event,
        *,
        wait_s: int = BRIDGE_WAIT_S,
        retry_after_s: int = BRIDGE_RETRY_AFTER_S,
        max_receives: int = BRIDGE_MAX_RECEIVES,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._function = function
        self._stop = stop
        self._wait_s = wait_s
        self._retry_after_s = retry_after_s
        self._max_receives = max_receives

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the bridge outlives a hiccup of the local AWS
                log.exception("S3-event bridge: could not read %s", self._queue_url)
                self._stop.wait(self._wait_s)

    def poll(self) -> int:
        """Receive (waiting up to wait_s) and hand over what came; the number of messages handled."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait_s,
            # Long enough for the handler: the message stays hidden while it runs.
            VisibilityTimeout=max(int(self._function.timeout_s), 1),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        for message in messages:
            self._deliver(message)
        return len(messages)

    def _deliver(self, message: Mapping[str, Any]) -> None:
        event = json.loads(message["Body"])
        if event.get("Event") == "s3:TestEvent":  # S3 sends one when the notification is configured
            self._delete(message)
            return
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        try:
            self._function.invoke(event)
        except Exception:  # as in Lambda: a failed invocation is retried, not fatal
            if receives >= self._max_receives:
                log.exception(
                    "S3-event bridge: LOST EVENT - %s failed on it %d times, giving up: %s",
                    self._function.logical_id,
                    receives,
                    message["Body"],
                )
                self._delete(message)
            else:
                log.exception(
                    "S3-event bridge: %s failed (delivery %d of %d), retrying in %d s",
                    self._function.logical_id,
                    receives,
                    self._max_receives,
                    self._retry_after_s,
                )
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self._retry_after_s,
                )
            return
        self._delete(message)

    def _delete(self, message: Mapping[str, Any]) -> None:
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])


class ScheduleLoop:
    """The local stand-in for an EventBridge schedule: the function's handler every `interval_s`, with
    a scheduled event and a Lambda context. Ticks never overlap (BatchFunction's reserved concurrency
    is 1; a SpendWatchFunction run takes far less than its five minutes); one that fails is logged and
    the next goes on, as in AWS."""

    def __init__(self, function: LocalFunction, interval_s: float, stop: threading.Event) -> None:
        self._function = function
        self._interval_s = interval_s
        self._stop = stop
        self._rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{STACK_NAME}-{function.logical_id}Schedule"

    def run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()

    def tick(self) -> None:
        try:
            self._function.invoke(scheduled_event(self._rule_arn, datetime.now(UTC)))
        except Exception:  # a failed tick is the next tick's work, as with EventBridge
            log.exception("schedule loop: %s failed", self._function.logical_id)


def scheduled_event(rule_arn: str, at: datetime) -> dict[str, Any]:
    """What an EventBridge schedule rule sends its target (events/batch/scheduled.json's shape)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }
