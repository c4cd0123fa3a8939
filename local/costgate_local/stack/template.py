"""Read template.yaml so the local stack and the tests build resources from it, not from a copy.

`load_template` returns the template as CloudFormation's JSON form: short-form tags become their
long form (`!Ref X` -> `{"Ref": "X"}`, `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`,
`!Sub s` -> `{"Fn::Sub": s}`) and scalars keep CloudFormation's types (a date stays a string).
"""

from pathlib import Path
from typing import Any

import yaml

# The repository the local stack runs from: template.yaml and the functions/ it points at.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
BUCKET_RESOURCE = "Bucket"
TABLE_RESOURCE = "Table"

# Short-form tags that map to `Fn::<Name>`; !Ref and !Condition map to their bare keys.
_FUNCTION_TAGS = frozenset(
    {
        "And",
        "Base64",
        "Cidr",
        "Equals",
        "FindInMap",
        "ForEach",
        "GetAtt",
        "GetAZs",
        "If",
        "ImportValue",
        "Join",
        "Length",
        "Not",
        "Or",
        "Select",
        "Split",
        "Sub",
        "ToJsonString",
        "Transform",
    }
)
_BARE_TAGS = frozenset({"Ref", "Condition"})

# boto3's create_table accepts these keys of an index; CloudFormation allows more
# (ContributorInsightsSpecification, WarmThroughput, ...), which boto3 rejects.
_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")


class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """A SafeLoader that knows CloudFormation's tags and, like CloudFormation, has no timestamps."""


_CloudFormationLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_intrinsic(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    if tag_suffix not in _FUNCTION_TAGS and tag_suffix not in _BARE_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown CloudFormation tag !{tag_suffix}", node.start_mark
        )
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            resource, _, attribute = value.partition(".")
            value = [resource, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    key = tag_suffix if tag_suffix in _BARE_TAGS else f"Fn::{tag_suffix}"
    return {key: value}


_CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template (default: the repository's template.yaml)."""
    text = (path or DEFAULT_TEMPLATE).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path or DEFAULT_TEMPLATE} is not a CloudFormation template (no Resources)")
    return template


def _properties(template: dict[str, Any], logical_id: str, resource_type: str) -> dict[str, Any]:
    resource = template["Resources"].get(logical_id)
    if resource is None or resource.get("Type") != resource_type:
        raise ValueError(f"the template has no {resource_type} named {logical_id!r}")
    properties: dict[str, Any] = resource["Properties"]
    return properties


def _table_properties(template: dict[str, Any]) -> dict[str, Any]:
    return _properties(template, TABLE_RESOURCE, "AWS::DynamoDB::Table")


def bucket_setup_calls(template: dict[str, Any], bucket_name: str) -> list[tuple[str, dict[str, Any]]]:
    """(boto3 S3 method, kwargs) pairs that recreate the template's bucket settings on an existing bucket."""
    properties = _properties(template, BUCKET_RESOURCE, "AWS::S3::Bucket")
    calls: list[tuple[str, dict[str, Any]]] = []
    if versioning := properties.get("VersioningConfiguration"):
        calls.append(("put_bucket_versioning", {"VersioningConfiguration": versioning}))
    if encryption := properties.get("BucketEncryption"):
        rules = [
            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        calls.append(("put_bucket_encryption", {"ServerSideEncryptionConfiguration": {"Rules": rules}}))
    if block := properties.get("PublicAccessBlockConfiguration"):
        calls.append(("put_public_access_block", {"PublicAccessBlockConfiguration": block}))
    if lifecycle := properties.get("LifecycleConfiguration"):
        calls.append(("put_bucket_lifecycle_configuration", {"LifecycleConfiguration": _lifecycle(lifecycle)}))
    return [(method, {"Bucket": bucket_name, **kwargs}) for method, kwargs in calls]


def s3_event_notification(template: dict[str, Any], function: str) -> dict[str, Any]:
    """The function's S3 event as an S3 notification configuration's `Events` and `Filter` (API shape)."""
    properties = _properties(template, function, "AWS::Serverless::Function")
    sources = [e["Properties"] for e in properties.get("Events", {}).values() if e.get("Type") == "S3"]
    if len(sources) != 1:
        raise ValueError(f"{function} has {len(sources)} S3 events; the local stack handles exactly one")
    (source,) = sources
    events = source["Events"]
    notification: dict[str, Any] = {"Events": events if isinstance(events, list) else [events]}
    if rules := source.get("Filter", {}).get("S3Key", {}).get("Rules"):
        notification["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
    return notification


def _lifecycle(lifecycle: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape → the S3 API's."""
    rules = []
    for rule in lifecycle["Rules"]:
        api_rule: dict[str, Any] = {
            "ID": rule["Id"],
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
        }
        if noncurrent := rule.get("NoncurrentVersionExpiration"):
            api_rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": noncurrent["NoncurrentDays"]}
        if abort := rule.get("AbortIncompleteMultipartUpload"):
            api_rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort["DaysAfterInitiation"]}
        rules.append(api_rule)
    return {"Rules": rules}


def table_create_args(template: dict[str, Any], table_name: str) -> dict[str, Any]:
    """Keyword arguments for boto3's `create_table` that recreate the template's table."""
    properties = _table_properties(template)
    args: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        args["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    if indexes := properties.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = [_pick(index, _GSI_KEYS) for index in indexes]
    if indexes := properties.get("LocalSecondaryIndexes"):
        args["LocalSecondaryIndexes"] = [_pick(index, _LSI_KEYS) for index in indexes]
    return args


def table_ttl_attribute(template: dict[str, Any]) -> str:
    """The attribute the template's table expires items on."""
    ttl = _table_properties(template).get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled") is not True or not ttl.get("AttributeName"):
        raise ValueError(f"the template's {TABLE_RESOURCE} has no enabled TimeToLiveSpecification")
    attribute: str = ttl["AttributeName"]
    return attribute


def _pick(index: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: index[key] for key in keys if key in index}
