"""template.yaml against the code it deploys: metric names, settings, table keys, API shape, runtimes."""

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from costgate import observability
from costgate.accounting.ledger import validate_tag
from costgate.dal import table
from costgate.dal.batch import entities
from costgate.errors import InvalidRequestError
from costgate.observability import MetricDimension, MetricName
from costgate.settings import (
    AggregatorSettings,
    ApiSettings,
    BatchSettings,
    IngestSettings,
    ReconcileSettings,
    SpendSettings,
    SweeperSettings,
)
from costgate_local.stack.template import (
    DEFAULT_TEMPLATE,
    bucket_setup_calls,
    load_template,
    table_create_args,
    table_ttl_attribute,
)
from tests.events import EVENTS_DIR, load_event

REPO_ROOT = DEFAULT_TEMPLATE.parent
RUNTIME = "python3.13"
FAKE_REGION = "eu-west-1"
SERVICE_DIMENSION = "service"

# A dashboard SEARCH expression: SEARCH('{Namespace,dim,...} term term', 'Stat', period).
SEARCH_SCHEMA = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)'")
SEARCH_METRIC_NAME = re.compile(r'MetricName="(?P<name>[^"]+)"')
SEARCH_SERVICE = re.compile(r'\bservice="(?P<value>[^"]+)"')
# The ids a metric-math expression refers to: CloudWatch ids start with a lower-case letter, functions are upper case.
MATH_ID = re.compile(r"\b[a-z][A-Za-z0-9_]*\b")
SUB_VARIABLE = re.compile(r"\$\{(?P<name>[^}!]+)\}")
# What an alarm may watch that costgate's code does not emit: what AWS publishes about costgate's own
# resources, only where no costgate code runs to report the condition. Each namespace with its metrics.
AWS_ALARM_METRICS: dict[str, frozenset[str]] = {
    # IngestDeadLetterAlarm, AggregatorFailureQueueAlarm: what a function gave up on waits in a queue, where
    # nothing runs.
    "AWS/SQS": frozenset({"ApproximateNumberOfMessagesVisible"}),
    # SpendWatchErrorsAlarm, SpendWatchNotRunningAlarm, ReconcileErrorsAlarm, ReconcileNotRunningAlarm,
    # AggregatorErrorsAlarm, SweeperErrorsAlarm: a run that fails, or never starts, emits no metric.
    # AggregatorLagAlarm: how far behind the stream is, Lambda's to say.
    "AWS/Lambda": frozenset({"Errors", "Invocations", "IteratorAge"}),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == resource_type}


def _global_function(template: dict[str, Any]) -> dict[str, Any]:
    globals_function: dict[str, Any] = template["Globals"]["Function"]
    return globals_function


def _service_name(template: dict[str, Any]) -> str:
    name: str = _global_function(template)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return name


def _resolve_sub(template: dict[str, Any], sub: Any) -> str:
    """Resolve a Fn::Sub the way CloudFormation would, with a fake region and parameter defaults."""
    text, variables = (sub[0], sub[1]) if isinstance(sub, list) else (sub, {})
    known = {"AWS::Region": FAKE_REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    known |= {name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p}
    known |= variables

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        assert name in known, f"cannot resolve ${{{name}}} in Fn::Sub"
        return known[name]

    return SUB_VARIABLE.sub(replace, text)


def _dashboard_widgets(template: dict[str, Any]) -> list[dict[str, Any]]:
    widgets: list[dict[str, Any]] = []
    for dashboard in _resources(template, "AWS::CloudWatch::Dashboard").values():
        widgets += json.loads(_resolve_sub(template, dashboard["Properties"]["DashboardBody"]["Fn::Sub"]))["widgets"]
    return widgets


def _dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    """Every (namespace, metric name, dimensions) a dashboard widget draws, or computes with (metric math
    over hidden metrics, whose ids must all exist in the widget); None for a SEARCHed value."""
    found: list[tuple[str, str, dict[str, str | None]]] = []
    for widget in _dashboard_widgets(template):
        if widget["type"] != "metric":
            continue
        previous: list[Any] = []
        ids: set[str] = set()
        math: list[str] = []
        for row in widget["properties"]["metrics"]:
            options = next((f for f in row if isinstance(f, dict)), {})
            if "id" in options:
                ids.add(options["id"])
            if "expression" in options:
                if "SEARCH(" in options["expression"]:
                    found.extend(_search_metrics(options["expression"]))
                else:
                    math.append(options["expression"])
                continue
            fields = [f for f in row if not isinstance(f, dict)]
            # "." repeats the value at the same position in the previous row.
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
            previous = fields
            namespace, name, *pairs = fields
            found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
        for expression in math:
            _assert_math_ids(expression, ids, widget["properties"]["title"])
    return found


def _assert_math_ids(expression: str, ids: set[str], where: str) -> None:
    """A metric-math expression refers to some metric, and only to ids defined beside it."""
    used = set(MATH_ID.findall(expression))
    assert used, f"{where}: {expression} refers to no metric"
    assert used <= ids, f"{where}: {expression} refers to undefined ids {sorted(used - ids)}"


def _search_metrics(expression: str) -> list[tuple[str, str, dict[str, str | None]]]:
    search = SEARCH_SCHEMA.search(expression)
    assert search, f"not a SEARCH expression over a schema: {expression}"
    namespace, *dimension_names = (part.strip() for part in search.group("schema").split(","))
    names = SEARCH_METRIC_NAME.findall(search.group("terms"))
    assert names, f"a SEARCH without MetricName=... matches every metric in the namespace: {expression}"
    service = SEARCH_SERVICE.search(search.group("terms"))
    dimensions: dict[str, str | None] = dict.fromkeys(dimension_names)
    if service:
        dimensions[SERVICE_DIMENSION] = service.group("value")
    return [(namespace, name, dimensions) for name in names]


def _alarm_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    """Every (namespace, metric name, dimensions) an alarm watches, each MetricStat of a metric-math alarm
    included (whose expressions must refer only to its own ids), but AWS services' own: those must be
    in AWS_ALARM_METRICS."""
    found: list[tuple[str, str, dict[str, str | None]]] = []
    for name, alarm in _resources(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        queries = props.get("Metrics", [])
        for query in queries:
            if "Expression" in query:
                expression = query["Expression"]
                resolved = _resolve_sub(template, expression["Fn::Sub"]) if isinstance(expression, dict) else expression
                _assert_math_ids(resolved, {q["Id"] for q in queries}, name)
        metrics = (
            [props] if "MetricName" in props else [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        )
        for metric in metrics:
            if metric["Namespace"].startswith("AWS/"):
                allowed = AWS_ALARM_METRICS.get(metric["Namespace"], frozenset())
                assert metric["MetricName"] in allowed, (
                    f"{name}: {metric['Namespace']} {metric['MetricName']} is not in AWS_ALARM_METRICS"
                )
                continue
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric["Namespace"], metric["MetricName"], dims))
    return found


def test_alarm_and_dashboard_metrics_are_the_ones_observability_emits(template: dict[str, Any]) -> None:
    # Given the metrics the code emits and the service name the template gives it
    emitted = {name.value for name in MetricName}

    # When every metric the alarms and dashboard widgets reference is collected
    alarm_metrics = _alarm_metrics(template)
    dashboard_metrics = _dashboard_metrics(template)

    # Then each uses the code's namespace, a MetricName value and a dimension set the code emits
    assert alarm_metrics, "no alarm found"
    for namespace, name, dimensions in alarm_metrics + dashboard_metrics:
        assert namespace == observability.NAMESPACE, (name, namespace)
        assert name in emitted, f"{name} is not a costgate.observability.MetricName value"
        assert dimensions.get(SERVICE_DIMENSION) == _service_name(template), (name, dimensions)
        asked = {MetricDimension(d) for d in dimensions if d != SERVICE_DIMENSION}
        assert asked in observability.DIMENSION_SETS[MetricName(name)], f"{name} is never emitted with {asked}"
    # and the dashboard draws cost, baseline, every token category and requests
    drawn = {name for _, name, _ in dashboard_metrics}
    assert drawn >= {
        MetricName.COST_USD,
        MetricName.BASELINE_COST_USD,
        MetricName.INPUT_TOKENS,
        MetricName.OUTPUT_TOKENS,
        MetricName.CACHE_WRITE_5M_TOKENS,
        MetricName.CACHE_WRITE_1H_TOKENS,
        MetricName.CACHE_READ_TOKENS,
        MetricName.REQUESTS,
        MetricName.SAVINGS_USD,
        MetricName.ROUTED_REQUESTS,
        MetricName.PROMPT_CACHE_DECISIONS,
        MetricName.BATCH_DOCUMENTS_DONE,
        MetricName.BATCH_DOCUMENTS_FAILED,
        MetricName.BATCH_REQUESTS_SUBMITTED,
        MetricName.BUDGET_REJECTIONS,
        MetricName.ANSWER_CACHE_LOOKUPS,
        MetricName.UPSTREAM_CALLS,
        MetricName.UPSTREAM_ERRORS,
        MetricName.UPSTREAM_LATENCY,
        MetricName.GATEWAY_OVERHEAD,
        MetricName.SPEND_TODAY_USD,
        MetricName.PROJECTED_DAILY_SPEND_USD,
        MetricName.RECONCILE_DRIFT_DAYS,
        MetricName.RECONCILE_PENDING_DAYS,
        MetricName.RECONCILE_DRIFT_TOKENS,
        MetricName.RECONCILE_DRIFT_USD,
    }


def test_daily_spend_alarm_sums_cost_over_a_day_against_the_parameter(template: dict[str, Any]) -> None:
    # Given the spend alarm
    alarm = template["Resources"]["DailySpendAlarm"]["Properties"]

    # Then it sums CostUsd over one day, compares with the parameter and notifies the alerts topic
    assert alarm["MetricName"] == MetricName.COST_USD
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 86400, 1)
    assert alarm["Threshold"] == {"Ref": "DailySpendAlarmUsd"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert {"Ref": "AlertsTopic"} in alarm["AlarmActions"]


def test_powertools_globals_match_observability(template: dict[str, Any]) -> None:
    # Given the environment every function inherits
    variables = _global_function(template)["Environment"]["Variables"]

    # Then Powertools publishes into the namespace the alarms read, under the service "costgate"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == observability.NAMESPACE
    assert variables["POWERTOOLS_SERVICE_NAME"] == "costgate"


# Each function's settings model: what its handler reads from the environment, and all it reads.
FUNCTION_SETTINGS: dict[
    str,
    type[
        ApiSettings
        | IngestSettings
        | BatchSettings
        | SpendSettings
        | ReconcileSettings
        | AggregatorSettings
        | SweeperSettings
    ],
] = {
    "ApiFunction": ApiSettings,
    "IngestFunction": IngestSettings,
    "BatchFunction": BatchSettings,
    "SpendWatchFunction": SpendSettings,
    "ReconcileFunction": ReconcileSettings,
    "AggregatorFunction": AggregatorSettings,
    "SweeperFunction": SweeperSettings,
}


def test_every_function_has_a_settings_model(template: dict[str, Any]) -> None:
    assert set(_resources(template, "AWS::Serverless::Function")) == set(FUNCTION_SETTINGS)


@pytest.mark.parametrize("function", sorted(FUNCTION_SETTINGS))
def test_function_environment_is_exactly_its_settings(template: dict[str, Any], function: str) -> None:
    # Given the function's effective environment (globals overlaid by its own variables)
    own = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    variables = _global_function(template)["Environment"]["Variables"] | own

    # When Powertools' and Lambda's own variables (the exec wrapper) are set aside
    names = {name for name in variables if not name.startswith(("POWERTOOLS_", "AWS_LAMBDA_"))}

    # Then the template sets every variable the settings model reads, and nothing it does not
    assert names == FUNCTION_SETTINGS[function].env_names()


def test_table_matches_the_data_access_layer(template: dict[str, Any]) -> None:
    # Given the table resource
    properties = template["Resources"]["Table"]["Properties"]

    # When its keys and attribute types are read
    keys = {k["KeyType"]: k["AttributeName"] for k in properties["KeySchema"]}
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}

    # Then they are the pynamodb model's string keys, TTL attribute, with PITR and on-demand billing
    assert keys == {"HASH": table.PARTITION_KEY, "RANGE": table.SORT_KEY}
    assert types == {table.PARTITION_KEY: "S", table.SORT_KEY: "S", "queue": "S", "queue_at": "S"}
    # And the one GSI is the batch store's queue index as pynamodb declares it (same keys, whole items)
    [index] = properties["GlobalSecondaryIndexes"]
    declared = entities.QueueIndex._get_schema()
    assert index["IndexName"] == declared["index_name"] == entities.QUEUE_INDEX
    assert index["KeySchema"] == declared["key_schema"]
    assert index["Projection"] == declared["projection"] == {"ProjectionType": "ALL"}
    assert all(types[a["AttributeName"]] == a["AttributeType"] for a in declared["attribute_definitions"])
    assert table_ttl_attribute(template) == table.TTL_ATTRIBUTE
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert template["Resources"]["Table"]["DeletionPolicy"] == "Retain"


def test_api_is_a_regional_rest_api(template: dict[str, Any]) -> None:
    # Given the template's APIs
    rest_apis = _resources(template, "AWS::Serverless::Api")

    # Then there is one REST API, regional, and no HTTP API (it would cut long answers at 30 s)
    assert list(rest_apis) == ["CostgateApi"]
    endpoint = rest_apis["CostgateApi"]["Properties"]["EndpointConfiguration"]
    assert (endpoint["Type"] if isinstance(endpoint, dict) else endpoint) == "REGIONAL"
    assert not _resources(template, "AWS::Serverless::HttpApi")
    assert not _resources(template, "AWS::ApiGatewayV2::Api")


# Routes the function authenticates itself, with gateway keys (x-api-key / Authorization: Bearer).
GATEWAY_KEY_ROUTES = {"/v1/messages", "/v1/messages/count_tokens", "/v1/requests/{request_id}"}


def test_every_route_but_health_is_authenticated(template: dict[str, Any]) -> None:
    # Given every API route of every function
    events = [
        event["Properties"]
        for function in _resources(template, "AWS::Serverless::Function").values()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] in {"Api", "HttpApi"}
    ]

    # When each route's authorizer is read
    routes = {(event["Path"], event.get("Auth", {}).get("Authorizer")) for event in events}

    # Then the health check is open, the gateway routes check gateway keys in the function, and
    # every other route needs an API Gateway authorizer
    assert ("/v1/health", None) in routes
    assert ("/v1/costs", "AWS_IAM") in routes
    assert {path for path, _ in routes} >= GATEWAY_KEY_ROUTES
    assert all(authorizer for path, authorizer in routes if path not in {"/v1/health", *GATEWAY_KEY_ROUTES})
    # and IAM callers need execute-api:Invoke only, not lambda:InvokeFunction as well
    for event in events:
        if event.get("Auth", {}).get("Authorizer") == "AWS_IAM":
            assert event["Auth"].get("InvokeRole") == "NONE", event["Path"]


def test_every_api_function_route_streams_and_messages_may_last_fifteen_minutes(template: dict[str, Any]) -> None:
    # Given ApiFunction's routes (its runtime answers every invocation with a streamed response)
    function = template["Resources"]["ApiFunction"]["Properties"]
    events = {name: event["Properties"] for name, event in function["Events"].items()}

    # Then every one is in STREAM mode, in SAM's spelling: `STREAM` (CloudFormation's) passes cfn-lint and
    # `sam validate --lint` too, but SAM then builds a buffered 2015-03-31 integration (docs/decisions.md)
    assert {name: event.get("ResponseTransferMode") for name, event in events.items()} == dict.fromkeys(
        events, "RESPONSE_STREAM"
    )
    # and POST /v1/messages may stream for the 15 minutes STREAM mode allows, as long as the function runs
    assert events["Messages"]["TimeoutInMillis"] == 900_000
    assert function["Timeout"] >= 900
    # and every other route keeps API Gateway's default 29 s
    assert all("TimeoutInMillis" not in event for name, event in events.items() if name != "Messages")


def test_api_function_runs_costgates_runtime_through_an_executable_wrapper_in_the_shared_layer(
    template: dict[str, Any],
) -> None:
    # Given ApiFunction's exec wrapper and the layer it lives in
    function = template["Resources"]["ApiFunction"]["Properties"]
    wrapper = function["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"]
    shared = template["Resources"]["SharedLayer"]["Properties"]
    assert {"Ref": "SharedLayer"} in function["Layers"]
    assert shared["ContentUri"] == "shared/"
    assert template["Resources"]["SharedLayer"]["Metadata"]["BuildMethod"] == "makefile"

    # Then the wrapper is the shared layer's costgate/runtime/exec-wrapper (layers unpack into /opt; the
    # layer's build copies costgate/ into python/), executable in git (SAM zips each file's own mode)
    relative = wrapper.removeprefix("/opt/python/")
    assert relative == "costgate/runtime/exec-wrapper"
    source = REPO_ROOT / "shared" / relative
    listed = subprocess.run(
        ["git", "ls-files", "-s", str(source.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listed.startswith("100755 ")
    makefile = (REPO_ROOT / "shared" / "Makefile").read_text(encoding="utf-8")
    assert 'cp -R costgate "$(ARTIFACTS_DIR)/python/"' in makefile
    # and it runs costgate's runtime loop with the interpreter Lambda hands it
    assert 'exec "$interpreter" -m costgate.runtime' in source.read_text(encoding="utf-8")


@pytest.mark.parametrize("scenario", sorted(p.stem for p in (EVENTS_DIR / "api").glob("*.json")))
def test_api_event_fixtures_hit_declared_routes(template: dict[str, Any], scenario: str) -> None:
    # Given an ApiFunction event fixture (the file `sam local invoke ApiFunction -e` uses)
    event = load_event("api", scenario)

    # When the routes ApiFunction declares are listed
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    routes = {(e["Properties"]["Path"], e["Properties"]["Method"].upper()) for e in events}

    # Then the fixture is a REST (v1) proxy event for one of them
    assert (event["resource"], event["httpMethod"]) in routes
    assert event["requestContext"]["resourcePath"] == event["resource"]
    assert "routeKey" not in event, "HTTP API (v2) event shape; the API is REST"


def test_runtime_is_python313_everywhere_and_handlers_exist(template: dict[str, Any]) -> None:
    # Given the functions and layers
    functions = _resources(template, "AWS::Serverless::Function")
    layers = _resources(template, "AWS::Serverless::LayerVersion")
    assert functions
    assert layers

    # Then each runs or builds for python3.13
    assert _global_function(template)["Runtime"] == RUNTIME
    for name, function in functions.items():
        assert function["Properties"].get("Runtime", RUNTIME) == RUNTIME, name
    for name, layer in layers.items():
        assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME], name
        # built by a Makefile target named after the layer, which compiles for python3.13
        assert layer["Metadata"]["BuildMethod"] == "makefile", name
        makefile = (REPO_ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text(encoding="utf-8")
        assert f"build-{name}:" in makefile, name
        assert "--invalidation-mode unchecked-hash" in makefile, name
        assert "PYTHON ?= python3.13" in makefile, name
    # and each function's handler module is in its CodeUri folder
    for name, function in functions.items():
        module, _, _ = function["Properties"]["Handler"].rpartition(".")
        handler = REPO_ROOT / function["Properties"]["CodeUri"] / f"{module.replace('.', '/')}.py"
        assert handler.is_file(), f"{name}: {handler.relative_to(REPO_ROOT)} is missing"


def test_table_create_args_build_the_table_in_moto(template: dict[str, Any]) -> None:
    # Given create_table arguments taken from the template
    args = table_create_args(template, "costgate-test")

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")

        # When DynamoDB (moto) creates the table and turns on its TTL
        client.create_table(**args)
        client.update_time_to_live(
            TableName="costgate-test",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table_ttl_attribute(template)},
        )
        described = client.describe_table(TableName="costgate-test")["Table"]
        ttl = client.describe_time_to_live(TableName="costgate-test")["TimeToLiveDescription"]

    # Then the table has the data-access layer's keys, on-demand billing and its TTL attribute
    keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
    assert keys == {"HASH": table.PARTITION_KEY, "RANGE": table.SORT_KEY}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": table.TTL_ATTRIBUTE}
    # and the stream AggregatorFunction reads, with both images (an ended row is told by its old one)
    assert described["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_load_template_turns_short_form_tags_into_long_form(tmp_path: Path) -> None:
    # Given a template written with short-form tags and an unquoted date
    path = tmp_path / "template.yaml"
    path.write_text(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n"
        "  Thing:\n"
        "    Type: AWS::SNS::Topic\n"
        "    Properties:\n"
        "      A: !Ref Other\n"
        "      B: !GetAtt Table.StreamArn\n"
        "      C: !Sub ['${X}-${AWS::Region}', {X: !Ref Other}]\n"
        "      D: !If [IsProd, !Not [!Equals [!Ref Stage, dev]], !Ref AWS::NoValue]\n"
        "      E: !Condition IsProd\n",
        encoding="utf-8",
    )

    # When it is loaded
    loaded = load_template(path)

    # Then the tags are CloudFormation's JSON intrinsics and the date is still the string CloudFormation reads
    assert loaded["AWSTemplateFormatVersion"] == "2010-09-09"
    assert loaded["Resources"]["Thing"]["Properties"] == {
        "A": {"Ref": "Other"},
        "B": {"Fn::GetAtt": ["Table", "StreamArn"]},
        "C": {"Fn::Sub": ["${X}-${AWS::Region}", {"X": {"Ref": "Other"}}]},
        "D": {
            "Fn::If": [
                "IsProd",
                {"Fn::Not": [{"Fn::Equals": [{"Ref": "Stage"}, "dev"]}]},
                {"Ref": "AWS::NoValue"},
            ]
        },
        "E": {"Condition": "IsProd"},
    }


def test_load_template_rejects_unknown_tags(tmp_path: Path) -> None:
    # Given a template with a misspelt intrinsic
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Thing:\n    Type: !Reff Other\n", encoding="utf-8")

    # When / Then loading it fails instead of passing the typo through
    with pytest.raises(yaml.YAMLError, match="unknown CloudFormation tag !Reff"):
        load_template(path)


def test_documents_bucket_is_private_encrypted_versioned_and_tls_only(template: dict[str, Any]) -> None:
    # Given the bucket batch documents and their summaries live in
    bucket = template["Resources"]["Bucket"]
    properties = bucket["Properties"]
    # Then it keeps versions (a re-upload is a new document), encrypts, blocks public access and is retained
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert bucket["DeletionPolicy"] == "Retain"
    # And its policy refuses plain HTTP
    statements = template["Resources"]["BucketTlsOnlyPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_local_bucket_gets_the_templates_settings(template: dict[str, Any]) -> None:
    # Given moto and the template's bucket settings

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="costgate-test-docs")
        # When every setup call derived from the template is applied
        for method, kwargs in bucket_setup_calls(template, "costgate-test-docs"):
            getattr(s3, method)(**kwargs)
        # Then S3 reports the same settings
        assert s3.get_bucket_versioning(Bucket="costgate-test-docs")["Status"] == "Enabled"
        rules = s3.get_bucket_encryption(Bucket="costgate-test-docs")["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        block = s3.get_public_access_block(Bucket="costgate-test-docs")["PublicAccessBlockConfiguration"]
        assert all(block.values())
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket="costgate-test-docs")["Rules"]
        assert lifecycle[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


# --- batch summarisation: IngestFunction, BatchFunction and the documents bucket ------------------------------

INGEST_PREFIX = "incoming/"
STACK_NAME = "costgate"  # samconfig.toml's stack_name


def _names_in(value: Any) -> set[str]:
    """Every resource or parameter name an intrinsic inside `value` refers to (pseudo parameters left out)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                found |= {m.group("name").split(".")[0] for m in SUB_VARIABLE.finditer(text)} - set(variables)
                found |= _names_in(variables)
            else:
                found |= _names_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _names_in(inner)
    return {name for name in found if not name.startswith("AWS::")}


# Event types SAM turns into an AWS::Lambda::EventSourceMapping: the source does not name the function.
_MAPPED_EVENTS = frozenset({"DynamoDB", "Kinesis", "SQS", "MSK", "MQ", "DocumentDB"})


def _dependency_cycle(template: dict[str, Any]) -> list[str] | None:
    """A cycle among the resources as CloudFormation will see them after the SAM transform, or None.

    A function's own properties make it depend on what they name; its event sources go the other way
    (SAM writes the function into the bucket's notification configuration, the API's integration, the
    rule's target), so a referenced event source depends on the function. A stream or queue source is
    the exception: SAM makes an event source mapping of its own, which depends on both.
    """
    resources = template["Resources"]
    edges: dict[str, set[str]] = {name: set() for name in resources}
    for name, resource in resources.items():
        properties = dict(resource.get("Properties", {}))
        events = properties.pop("Events", {}) if resource["Type"] == "AWS::Serverless::Function" else {}
        depends_on = resource.get("DependsOn", [])
        edges[name] |= (_names_in(properties) | set([depends_on] if isinstance(depends_on, str) else depends_on)) & set(
            resources
        )
        pushed = {key: event for key, event in events.items() if event.get("Type") not in _MAPPED_EVENTS}
        for source in _names_in(pushed) & set(resources):
            edges[source].add(name)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target] if target in path else [node, target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(resources):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def _bucket_name_sub(template: dict[str, Any]) -> str:
    sub: str = template["Resources"]["Bucket"]["Properties"]["BucketName"]["Fn::Sub"]
    return sub


def test_the_template_has_no_dependency_cycle(template: dict[str, Any]) -> None:
    # Given the resources, with SAM's reversed edges for event sources (bucket → IngestFunction)
    # When / Then CloudFormation can order them
    assert _dependency_cycle(template) is None


def test_naming_the_bucket_by_ref_in_ingest_would_be_a_cycle(template: dict[str, Any]) -> None:
    # Given the template with IngestFunction naming its bucket by !Ref, the obvious way
    changed = copy.deepcopy(template)
    changed["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]["COSTGATE_BUCKET"] = {
        "Ref": "Bucket"
    }

    # When / Then the check above sees the cycle CloudFormation would refuse (why the name is a !Sub)
    cycle = _dependency_cycle(changed)
    assert cycle is not None
    assert {"Bucket", "IngestFunction"} <= set(cycle)


def test_ingest_names_the_bucket_exactly_as_the_bucket_is_named(template: dict[str, Any]) -> None:
    # Given the bucket's name expression
    name = _bucket_name_sub(template)
    ingest = template["Resources"]["IngestFunction"]["Properties"]

    # Then IngestFunction's setting and its S3 policies use that same name, never the bucket resource
    assert ingest["Environment"]["Variables"]["COSTGATE_BUCKET"] == {"Fn::Sub": name}
    policies = ingest["Policies"]
    assert {"S3ReadPolicy": {"BucketName": {"Fn::Sub": name}}} in policies
    writes = [s for p in policies if "Statement" in p for s in p["Statement"] if s["Action"] == "s3:PutObject"]
    assert [s["Resource"] for s in writes] == [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{name}/results/*"}]
    assert "Bucket" not in _names_in({k: v for k, v in ingest.items() if k != "Events"})
    # and the name is one S3 accepts for the default stack, and unique per account and region
    resolved = _resolve_sub(template, [name, {"AWS::StackName": STACK_NAME}])
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", resolved), resolved
    assert {"${AWS::AccountId}", "${AWS::Region}"} <= set(re.findall(r"\$\{[^}]+\}", name))


def test_ingest_function_is_notified_of_uploads_and_keeps_what_it_fails_on(template: dict[str, Any]) -> None:
    # Given IngestFunction
    ingest = template["Resources"]["IngestFunction"]["Properties"]

    # Then the bucket invokes it for every object created under incoming/, and nothing else
    (event,) = ingest["Events"].values()
    assert event["Type"] == "S3"
    assert event["Properties"]["Bucket"] == {"Ref": "Bucket"}
    assert event["Properties"]["Events"] == "s3:ObjectCreated:*"
    assert event["Properties"]["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": INGEST_PREFIX}]
    # and an event it still fails on after two retries goes to a queue an alarm watches
    invoke = ingest["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
    }
    alarm = template["Resources"]["IngestDeadLetterAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    queue_name = {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert {"Ref": "AlertsTopic"} in alarm["AlarmActions"]
    # and it runs long enough for a 256 MB requests file, with the default batch tenant from the parameter
    assert (ingest["Timeout"], ingest["MemorySize"]) == (900, 1024)
    assert ingest["Environment"]["Variables"]["COSTGATE_BATCH_TENANT"] == {"Ref": "BatchTenant"}


def test_batch_function_runs_alone_on_the_schedule_parameter(template: dict[str, Any]) -> None:
    # Given BatchFunction
    batch = template["Resources"]["BatchFunction"]["Properties"]

    # Then one tick runs at a time, on the schedule the parameter sets, and a tick that cannot run is dropped
    assert batch["ReservedConcurrentExecutions"] == 1
    (event,) = batch["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "BatchScheduleRate"}
    assert batch["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    # and it has room to build a 256 MB request body on disk
    assert batch["EphemeralStorage"]["Size"] >= 4096
    assert (batch["Timeout"], batch["MemorySize"]) == (900, 2048)


def test_batch_function_reads_inputs_writes_results_and_reads_the_claude_key(template: dict[str, Any]) -> None:
    # Given BatchFunction's policy statements
    policies = template["Resources"]["BatchFunction"]["Properties"]["Policies"]
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]

    def resources(action: str) -> list[Any]:
        return [r for s in statements if action in _as_list(s["Action"]) for r in _as_list(s["Resource"])]

    # Then it reads incoming/ (and its own work/), writes results/ (and work/), never the whole bucket
    assert {"Fn::Sub": "${Bucket.Arn}/incoming/*"} in resources("s3:GetObject")
    assert {"Fn::Sub": "${Bucket.Arn}/results/*"} in resources("s3:PutObject")
    assert {"Fn::Sub": "${Bucket.Arn}/incoming/*"} not in resources("s3:PutObject")
    assert {"Fn::Sub": "${Bucket.Arn}/*"} not in resources("s3:GetObject") + resources("s3:PutObject")
    # and reads the same secret ApiFunction does
    api = template["Resources"]["ApiFunction"]["Properties"]["Policies"]
    api_statements = [s for p in api if "Statement" in p for s in p["Statement"]]
    api_secret = [s["Resource"] for s in api_statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert resources("secretsmanager:GetSecretValue") == api_secret
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "Table"}}} in policies


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("function", ["IngestFunction", "BatchFunction", "AggregatorFunction", "SweeperFunction"])
def test_batch_functions_do_not_carry_the_embedder(template: dict[str, Any], function: str) -> None:
    layers = template["Resources"][function]["Properties"]["Layers"]
    assert layers == [{"Ref": "SharedLayer"}, {"Ref": "DependenciesLayer"}]


@pytest.mark.parametrize(
    ("tenant", "valid"),
    [
        ("documents", True),
        ("team-a:batch/2026.q4_x", True),
        ("A", True),
        ("x" * 64, True),
        ("", False),
        ("-x", False),
        ("has space", False),
        ("x" * 65, False),
        ("émile", False),
    ],
)
def test_batch_tenant_parameter_allows_exactly_the_ledger_tags(
    template: dict[str, Any], tenant: str, valid: bool
) -> None:
    # Given the BatchTenant parameter's pattern (CloudFormation matches it against the whole value)
    parameter = template["Parameters"]["BatchTenant"]
    pattern = re.compile(parameter["AllowedPattern"])

    # Then it accepts what the ledger accepts as a tenant, and the default is one
    assert bool(pattern.fullmatch(tenant)) is valid
    try:
        validate_tag(tenant, "tenant")
        ledger_accepts = True
    except InvalidRequestError:
        ledger_accepts = False
    assert ledger_accepts is valid
    assert pattern.fullmatch(parameter["Default"])


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("rate(2 minutes)", True),
        ("rate(1 minute)", True),
        ("rate(10 minutes)", True),
        ("rate(1 hour)", True),
        ("cron(0/5 * * * ? *)", True),
        ("rate(1 minutes)", False),
        ("rate(0 minutes)", False),
        ("rate(2 minute)", False),
        ("every 2 minutes", False),
        ("rate(2 minutes) ", False),
    ],
)
def test_batch_schedule_parameter_takes_eventbridge_expressions(
    template: dict[str, Any], expression: str, valid: bool
) -> None:
    parameter = template["Parameters"]["BatchScheduleRate"]
    pattern = re.compile(parameter["AllowedPattern"])
    assert bool(pattern.fullmatch(expression)) is valid
    assert parameter["Default"] == "rate(2 minutes)"


def test_batch_documents_failed_alarm_fires_on_one_failure_in_five_minutes(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["BatchDocumentsFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (observability.NAMESPACE, MetricName.BATCH_DOCUMENTS_FAILED)
    assert alarm["Dimensions"] == [{"Name": SERVICE_DIMENSION, "Value": _service_name(template)}]
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"
    assert {"Ref": "AlertsTopic"} in alarm["AlarmActions"]


@pytest.mark.parametrize("scenario", sorted(p.stem for p in (EVENTS_DIR / "ingest").glob("*.json")))
def test_ingest_event_fixtures_are_events_the_bucket_sends(template: dict[str, Any], scenario: str) -> None:
    # Given an IngestFunction fixture and the notification the template declares
    (record,) = load_event("ingest", scenario)["Records"]
    (event,) = template["Resources"]["IngestFunction"]["Properties"]["Events"].values()

    # Then it is an event of that kind, under its prefix, from the bucket the default stack creates
    declared = event["Properties"]["Events"].removeprefix("s3:").removesuffix("*")
    assert record["eventName"].startswith(declared)
    assert record["s3"]["object"]["key"].startswith(INGEST_PREFIX)
    bucket = _resolve_sub(
        template, [_bucket_name_sub(template), {"AWS::StackName": STACK_NAME, "AWS::Region": record["awsRegion"]}]
    )
    assert record["s3"]["bucket"]["name"] == bucket


def test_batch_event_fixture_comes_from_an_eventbridge_rule(template: dict[str, Any]) -> None:
    event = load_event("batch", "scheduled")
    (declared,) = template["Resources"]["BatchFunction"]["Properties"]["Events"].values()
    assert declared["Type"] == "Schedule"  # an EventBridge rule: its events name the rule in resources
    assert event["detail-type"] == "Scheduled Event"
    assert ":rule/" in event["resources"][0]


# --- alarms, the spend watch and the dashboard -------------------------------------------------------------

ALERTS_TOPIC = {"Ref": "AlertsTopic"}
GRID_COLUMNS = 24


def test_metric_math_that_names_an_undefined_id_is_caught(template: dict[str, Any]) -> None:
    # Given the error-rate alarm and the answer-cache widget, each with a typo in one id of its expression
    changed = copy.deepcopy(template)
    alarm = changed["Resources"]["UpstreamErrorRateAlarm"]["Properties"]
    alarm["Metrics"][0]["Expression"] = "100 * FILL(error, 0) / calls"
    dashboard = changed["Resources"]["CostDashboard"]["Properties"]["DashboardBody"]
    dashboard["Fn::Sub"] = dashboard["Fn::Sub"].replace("FILL(semantic, 0) + FILL(miss, 0))", "FILL(semantc, 0))")

    # When / Then the collectors the metric test relies on refuse both, naming the id
    with pytest.raises(AssertionError, match=r"undefined ids \['error'\]"):
        _alarm_metrics(changed)
    with pytest.raises(AssertionError, match=r"undefined ids \['semantc'\]"):
        _dashboard_metrics(changed)


def test_an_alarm_on_an_aws_metric_not_in_the_allowed_list_is_caught(template: dict[str, Any]) -> None:
    # Given the dead-letter alarm moved to another AWS namespace, and the spend-watch one to another Lambda metric
    moved = copy.deepcopy(template)
    moved["Resources"]["IngestDeadLetterAlarm"]["Properties"]["Namespace"] = "AWS/Kinesis"
    renamed = copy.deepcopy(template)
    renamed["Resources"]["SpendWatchErrorsAlarm"]["Properties"]["MetricName"] = "Error"

    # When / Then the collector the metric test relies on refuses both, naming the alarm
    with pytest.raises(AssertionError, match="IngestDeadLetterAlarm: AWS/Kinesis ApproximateNumberOfMessagesVisible"):
        _alarm_metrics(moved)
    with pytest.raises(AssertionError, match="SpendWatchErrorsAlarm: AWS/Lambda Error is not"):
        _alarm_metrics(renamed)


def test_spend_watch_failing_or_not_running_pages_within_the_burn_rate_window(template: dict[str, Any]) -> None:
    # Given the two alarms on SpendWatchFunction, and the burn-rate alarm it feeds
    errors = template["Resources"]["SpendWatchErrorsAlarm"]["Properties"]
    not_running = template["Resources"]["SpendWatchNotRunningAlarm"]["Properties"]
    burn_rate = template["Resources"]["SpendBurnRateAlarm"]["Properties"]

    # Then both watch the spend function itself, by !Ref, over the burn-rate alarm's 15 minutes
    for alarm in (errors, not_running):
        assert alarm["Namespace"] == "AWS/Lambda"
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SpendWatchFunction"}}]
        assert (alarm["Statistic"], alarm["Period"]) == ("Sum", burn_rate["Period"])
        assert alarm["EvaluationPeriods"] == burn_rate["EvaluationPeriods"] == 3
    # and one failed run in that window pages (runs failing one in three never fail three in a row)
    assert errors["MetricName"] == "Errors"
    assert (errors["DatapointsToAlarm"], errors["Threshold"]) == (1, 1)
    assert errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert errors["TreatMissingData"] == "notBreaching"
    # and so does no run at all for the whole window: no Invocations data is what it looks for
    assert not_running["MetricName"] == "Invocations"
    assert (not_running["DatapointsToAlarm"], not_running["Threshold"]) == (3, 1)
    assert not_running["ComparisonOperator"] == "LessThanThreshold"
    assert not_running["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_alerts_topic_when_it_fires_and_when_it_clears(template: dict[str, Any]) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    assert {
        "DailySpendAlarm",
        "SpendBurnRateAlarm",
        "SpendWatchErrorsAlarm",
        "SpendWatchNotRunningAlarm",
        "UpstreamErrorRateAlarm",
    } <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [ALERTS_TOPIC], name
        assert alarm["Properties"]["OKActions"] == [ALERTS_TOPIC], name


def test_burn_rate_alarm_watches_the_projection_against_the_daily_limit(template: dict[str, Any]) -> None:
    # Given the burn-rate alarm
    alarm = template["Resources"]["SpendBurnRateAlarm"]["Properties"]

    # Then it reads SpendWatchFunction's projection, the latest per 5 minutes, three periods in a row
    assert (alarm["Namespace"], alarm["MetricName"]) == (observability.NAMESPACE, MetricName.PROJECTED_DAILY_SPEND_USD)
    assert alarm["Dimensions"] == [{"Name": SERVICE_DIMENSION, "Value": _service_name(template)}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 300)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    # against the same limit as the daily-spend alarm; a missed run is not spend
    assert alarm["Threshold"] == {"Ref": "DailySpendAlarmUsd"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_upstream_error_rate_alarm_divides_errors_by_calls_and_ignores_quiet_periods(template: dict[str, Any]) -> None:
    # Given the error-rate alarm's metric math, with the parameters at their defaults
    alarm = template["Resources"]["UpstreamErrorRateAlarm"]["Properties"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    parameters = template["Parameters"]

    # Then it returns only the rate: errors over calls in %, 0 below the minimum number of calls
    assert [q["Id"] for q in alarm["Metrics"] if q["ReturnData"]] == ["error_rate"]
    expression = _resolve_sub(template, queries["error_rate"]["Expression"]["Fn::Sub"])
    assert expression == "IF(calls >= 20, 100 * FILL(errors, 0) / calls, 0)"
    # over the service-only sums of UpstreamCalls and UpstreamErrors per 5 minutes
    for query_id, metric in (("calls", MetricName.UPSTREAM_CALLS), ("errors", MetricName.UPSTREAM_ERRORS)):
        stat = queries[query_id]["MetricStat"]
        assert (stat["Metric"]["MetricName"], stat["Stat"], stat["Period"]) == (metric, "Sum", 300)
        assert stat["Metric"]["Dimensions"] == [{"Name": SERVICE_DIMENSION, "Value": _service_name(template)}]
    # and pages only after three bad periods in a row, above the percentage parameter (5 by default)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert alarm["Threshold"] == {"Ref": "UpstreamErrorRatePercent"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert parameters["UpstreamErrorRatePercent"]["Default"] == 5
    # with the minimum such that one failed attempt alone never passes the default threshold
    assert (
        100 / parameters["UpstreamErrorAlarmMinCalls"]["Default"] <= parameters["UpstreamErrorRatePercent"]["Default"]
    )


def test_spend_watch_runs_every_five_minutes_reading_the_table_only(template: dict[str, Any]) -> None:
    # Given SpendWatchFunction
    function = template["Resources"]["SpendWatchFunction"]["Properties"]

    # Then an EventBridge schedule runs it every five minutes, the burn-rate alarm's period
    (event,) = function["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(5 minutes)"
    assert template["Resources"]["SpendBurnRateAlarm"]["Properties"]["Period"] == 5 * 60
    # and it may read the table and nothing more: no write policy, no secret, no bucket
    assert function["Policies"] == [{"DynamoDBReadPolicy": {"TableName": {"Ref": "Table"}}}]
    # with the code layers but not the embedder, small, and a failed run is left to the next one
    assert function["Layers"] == [{"Ref": "SharedLayer"}, {"Ref": "DependenciesLayer"}]
    assert function["MemorySize"] <= 512
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_spend_event_fixture_comes_from_an_eventbridge_rule(template: dict[str, Any]) -> None:
    event = load_event("spend_watch", "scheduled")
    (declared,) = template["Resources"]["SpendWatchFunction"]["Properties"]["Events"].values()
    assert declared["Type"] == "Schedule"
    assert event["detail-type"] == "Scheduled Event"
    assert ":rule/" in event["resources"][0]


def test_dashboard_widgets_fit_the_grid_without_overlapping(template: dict[str, Any]) -> None:
    # Given every widget's place on the dashboard
    widgets = _dashboard_widgets(template)
    cells: dict[tuple[int, int], str] = {}

    # Then each lies inside the 24 columns, and no grid cell belongs to two widgets
    for widget in widgets:
        title = widget["properties"].get("title", widget["type"])
        x, y, width, height = widget["x"], widget["y"], widget["width"], widget["height"]
        assert min(x, y) >= 0, title
        assert min(width, height) > 0, title
        assert x + width <= GRID_COLUMNS, title
        for column in range(x, x + width):
            for row in range(y, y + height):
                assert (column, row) not in cells, f"{title} overlaps {cells[(column, row)]}"
                cells[(column, row)] = title


def _widget(template: dict[str, Any], title_start: str) -> dict[str, Any]:
    (widget,) = [w for w in _dashboard_widgets(template) if w["properties"]["title"].startswith(title_start)]
    return widget


def test_dashboard_computes_both_cache_hit_rates_with_metric_math(template: dict[str, Any]) -> None:
    # Given the two hit-rate widgets
    prompt = _widget(template, "Prompt-cache hit rate")["properties"]["metrics"]
    answer = _widget(template, "Answer-cache hit rate")["properties"]["metrics"]

    # Then the prompt cache's is cache-read tokens over every prompt token category, in %
    ids = {row[1]: row[-1]["id"] for row in prompt if isinstance(row[0], str)}
    (rate,) = [row[0]["expression"] for row in prompt if "expression" in row[0]]
    read, input_, write_5m, write_1h = (
        ids[MetricName.CACHE_READ_TOKENS],
        ids[MetricName.INPUT_TOKENS],
        ids[MetricName.CACHE_WRITE_5M_TOKENS],
        ids[MetricName.CACHE_WRITE_1H_TOKENS],
    )
    assert rate == (
        f"100 * FILL({read}, 0) / (FILL({input_}, 0) + FILL({write_5m}, 0) + FILL({write_1h}, 0) + FILL({read}, 0))"
    )
    # and the answer cache's is exact + semantic hits over all lookups, each Result one hidden metric
    results = {row[5]: row[-1]["id"] for row in answer if isinstance(row[0], str)}
    assert all(row[1] == MetricName.ANSWER_CACHE_LOOKUPS for row in answer if isinstance(row[0], str))
    assert set(results) == {"exact-hit", "semantic-hit", "miss", "bypass"}
    hits = f"FILL({results['exact-hit']}, 0) + FILL({results['semantic-hit']}, 0)"
    every = f"{hits} + FILL({results['miss']}, 0) + FILL({results['bypass']}, 0)"
    assert answer[4][0]["expression"] == f"100 * ({hits}) / ({every})"


def test_dashboard_shows_spend_against_its_projection_and_the_limit(template: dict[str, Any]) -> None:
    widget = _widget(template, "Spend today")["properties"]
    drawn = [row[1] for row in widget["metrics"]]
    assert drawn == [MetricName.SPEND_TODAY_USD, MetricName.PROJECTED_DAILY_SPEND_USD]
    assert (widget["stat"], widget["period"]) == ("Maximum", 300)
    (limit,) = widget["annotations"]["horizontal"]
    assert limit["value"] == template["Parameters"]["DailySpendAlarmUsd"]["Default"]


def test_dashboard_draws_upstream_latency_percentiles_per_model_and_the_overhead(template: dict[str, Any]) -> None:
    for percentile in ("p50", "p90", "p99"):
        (row,) = _widget(template, f"Upstream latency {percentile} by model")["properties"]["metrics"]
        assert f"'{percentile}', 300)" in row[0]["expression"]
        assert _search_metrics(row[0]["expression"]) == [
            (observability.NAMESPACE, MetricName.UPSTREAM_LATENCY, {"Model": None, SERVICE_DIMENSION: "costgate"})
        ]
    overhead = _widget(template, "Gateway overhead")["properties"]["metrics"]
    assert [(row[1], row[-1]["stat"]) for row in overhead] == [
        (MetricName.GATEWAY_OVERHEAD, "p50"),
        (MetricName.GATEWAY_OVERHEAD, "p90"),
        (MetricName.GATEWAY_OVERHEAD, "p99"),
    ]


# --- the ledger's stream, the aggregator and the sweeper (docs/scale.md) ----------------------------------------


def test_aggregator_reads_the_tables_stream_one_ordered_batch_per_shard_and_loses_nothing(
    template: dict[str, Any],
) -> None:
    # Given AggregatorFunction's one event source
    (event,) = template["Resources"]["AggregatorFunction"]["Properties"]["Events"].values()
    source = event["Properties"]

    # Then it is the table's stream, read in order one batch at a time per shard (the per-shard marks need it),
    # with a tumbling window (the only events that name their shard), in batches of up to 1,000 or a second
    assert event["Type"] == "DynamoDB"
    assert source["Stream"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert source["ParallelizationFactor"] == 1
    assert source["TumblingWindowInSeconds"] > 0
    assert (source["BatchSize"], source["MaximumBatchingWindowInSeconds"]) == (1000, 1)
    # and a record is retried until it leaves the stream, the failing half first, then kept in a queue
    assert (source["MaximumRetryAttempts"], source["MaximumRecordAgeInSeconds"]) == (-1, -1)
    assert source["BisectBatchOnFunctionError"] is True
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AggregatorFailureQueue", "Arn"]}
    # and only ledger rows that just ended invoke it
    patterns = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]
    assert all(p["dynamodb"]["NewImage"]["entity"] == {"S": ["ledger"]} for p in patterns)


def test_aggregator_and_sweeper_failures_and_lag_page(template: dict[str, Any]) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    watched = {
        (a["Properties"].get("MetricName"), str(a["Properties"].get("Dimensions", [{}])[0].get("Value")))
        for a in alarms.values()
    }
    assert ("Errors", "{'Ref': 'AggregatorFunction'}") in watched
    assert ("IteratorAge", "{'Ref': 'AggregatorFunction'}") in watched
    assert ("Errors", "{'Ref': 'SweeperFunction'}") in watched
    assert ("ApproximateNumberOfMessagesVisible", "{'Fn::GetAtt': ['AggregatorFailureQueue', 'QueueName']}") in watched
    assert ("SweptRequests", "costgate") in watched
    assert ("AccountingErrors", "costgate") in watched
    lag = alarms["AggregatorLagAlarm"]["Properties"]
    assert lag["Statistic"] == "Maximum"
    assert lag["Threshold"] == {"Fn::Sub": "${AggregatorMaxLagSeconds}000"}  # IteratorAge is in milliseconds


def test_sweeper_runs_alone_every_minute(template: dict[str, Any]) -> None:
    sweeper = template["Resources"]["SweeperFunction"]["Properties"]
    (event,) = sweeper["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(1 minute)"
    assert sweeper["ReservedConcurrentExecutions"] == 1
    # and no invocation of ApiFunction outlives the sweeper's 16 minutes: a row it sweeps can no longer be settled
    from costgate.accounting.ledger import SWEEP_AFTER  # noqa: PLC0415

    assert template["Resources"]["ApiFunction"]["Properties"]["Timeout"] + 60 <= SWEEP_AFTER.total_seconds()


def test_api_concurrency_and_stage_throttle_are_parameters_with_documented_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["ApiReservedConcurrency"]["Default"] == -1
    assert parameters["ApiThrottleRateLimit"]["Default"] == 10000
    assert parameters["ApiThrottleBurstLimit"]["Default"] == 5000
    assert all(parameters[name]["Description"] for name in ("ApiReservedConcurrency", "ApiThrottleRateLimit"))
    api = template["Resources"]["ApiFunction"]["Properties"]
    assert api["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasApiReservedConcurrency", {"Ref": "ApiReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    (settings,) = template["Resources"]["CostgateApi"]["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (
        {"Ref": "ApiThrottleRateLimit"},
        {"Ref": "ApiThrottleBurstLimit"},
    )


def test_reconcile_runs_daily_and_alarms_on_any_drift(template: dict[str, Any]) -> None:
    # Given ReconcileFunction and its drift alarm
    function = template["Resources"]["ReconcileFunction"]["Properties"]
    alarm = template["Resources"]["ReconcileDriftAlarm"]["Properties"]

    # Then it runs once a day, reads the Admin key's secret only, and writes only its verdicts
    (event,) = function["Events"].values()
    assert event["Type"] == "Schedule"
    assert re.fullmatch(r"cron\(\d+ \d+ \* \* \? \*\)", event["Properties"]["Schedule"])
    statements = [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]
    assert {s["Action"] for s in statements} == {"dynamodb:PutItem", "secretsmanager:GetSecretValue"}
    (secret,) = [s["Resource"] for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert "${AdminApiKeySecretName}-??????" in secret["Fn::Sub"]
    # and a single drifting day, settled, pages (the metric counts such days per run)
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (MetricName.RECONCILE_DRIFT_DAYS, "Sum", 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert {"Ref": "AlertsTopic"} in alarm["AlarmActions"]
    # and the template's defaults are settings the function accepts
    defaults = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    env = {
        name: defaults[value["Ref"]] if isinstance(value, dict) and value.get("Ref") in defaults else "x"
        for name, value in function["Environment"]["Variables"].items()
    }
    settings = ReconcileSettings.from_env(env)
    assert (settings.key_ids, settings.settle.total_seconds(), settings.lookback) == ((), 6 * 3600, 7)
