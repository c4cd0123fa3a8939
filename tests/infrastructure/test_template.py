"""template.yaml against the code it deploys: metric names, settings, table keys, API shape, runtimes."""

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from costgate import observability
from costgate.dal import table
from costgate.observability import MetricDimension, MetricName
from costgate.settings import ApiSettings
from costgate_local.template import (
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
SUB_VARIABLE = re.compile(r"\$\{(?P<name>[^}!]+)\}")


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


def _dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    """Every (namespace, metric name, dimensions) a dashboard widget draws; None for a SEARCHed value."""
    found: list[tuple[str, str, dict[str, str | None]]] = []
    for dashboard in _resources(template, "AWS::CloudWatch::Dashboard").values():
        body = json.loads(_resolve_sub(template, dashboard["Properties"]["DashboardBody"]["Fn::Sub"]))
        for widget in body["widgets"]:
            if widget["type"] != "metric":
                continue
            previous: list[Any] = []
            for row in widget["properties"]["metrics"]:
                if isinstance(row[0], dict) and "expression" in row[0]:
                    found.extend(_search_metrics(row[0]["expression"]))
                    continue
                fields = [f for f in row if not isinstance(f, dict)]
                # "." repeats the value at the same position in the previous row.
                fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
                previous = fields
                namespace, name, *pairs = fields
                found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


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
    found: list[tuple[str, str, dict[str, str | None]]] = []
    for alarm in _resources(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else [q["MetricStat"]["Metric"] for q in props["Metrics"]]
        for metric in metrics:
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


def test_api_function_environment_is_exactly_its_settings(template: dict[str, Any]) -> None:
    # Given ApiFunction's effective environment (globals overlaid by its own variables)
    own = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    variables = _global_function(template)["Environment"]["Variables"] | own

    # When Powertools' own variables are set aside
    names = {name for name in variables if not name.startswith("POWERTOOLS_")}

    # Then the template sets every variable ApiSettings reads, and nothing it does not
    assert names == ApiSettings.env_names()


def test_table_matches_the_data_access_layer(template: dict[str, Any]) -> None:
    # Given the table resource
    properties = template["Resources"]["Table"]["Properties"]

    # When its keys and attribute types are read
    keys = {k["KeyType"]: k["AttributeName"] for k in properties["KeySchema"]}
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}

    # Then they are the pynamodb model's string keys, TTL attribute, with PITR and on-demand billing
    assert keys == {"HASH": table.PARTITION_KEY, "RANGE": table.SORT_KEY}
    assert types == {table.PARTITION_KEY: "S", table.SORT_KEY: "S"}
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
GATEWAY_KEY_ROUTES = {"/v1/messages", "/v1/messages/count_tokens"}


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
