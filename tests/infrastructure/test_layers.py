"""The Lambda layers against the code that runs on them: botocore's trimmed models, the guards' Kiwi files."""

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import botocore
import botocore.session

from costgate.cache import korean

REPO_ROOT = Path(__file__).resolve().parents[2]
# boto3.client("s3"), boto3.resource("dynamodb"), session.client(service_name="sts")
CLIENT_CALL = re.compile(r"""\.(?:client|resource)\(\s*(?:service_name=)?["']([a-z0-9-]+)["']""")


def _makefile_variable(path: Path, name: str) -> set[str]:
    match = re.search(rf"^{name} = (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path}: no {name}"
    return set(match.group(1).split())


def test_every_aws_service_the_functions_call_keeps_its_botocore_model() -> None:
    # Given the services whose API models the DependenciesLayer keeps
    kept = _makefile_variable(REPO_ROOT / "layers" / "dependencies" / "Makefile", "BOTOCORE_SERVICES")

    # When every client the deployed code creates is listed (pynamodb talks to DynamoDB, Powertools'
    # get_secret to Secrets Manager)
    called = {"dynamodb", "secretsmanager"}
    for folder in ("shared", "functions"):
        for source in (REPO_ROOT / folder).rglob("*.py"):
            called |= set(CLIENT_CALL.findall(source.read_text(encoding="utf-8")))

    # Then each has its model in the layer: any other client fails in Lambda with UnknownServiceError
    assert called <= kept, f"add {sorted(called - kept)} to BOTOCORE_SERVICES in layers/dependencies/Makefile"
    assert {"s3", "bedrock-runtime"} <= called  # the scan sees the code's clients


def test_the_guards_layer_ships_the_kiwi_version_and_files_the_code_loads() -> None:
    layer = REPO_ROOT / "layers" / "guards"
    wheels = (layer / "requirements.txt").read_text(encoding="utf-8")
    model = (layer / "model.txt").read_text(encoding="utf-8")
    makefile = (layer / "Makefile").read_text(encoding="utf-8")

    assert f"kiwipiepy=={korean.KIWI_VERSION} " in wheels
    assert f"kiwipiepy-model=={korean.KIWI_MODEL_VERSION} " in model
    # The files removed are the ones costgate's configuration does not read.
    assert korean.KIWI_OPTIONS["model_type"] == "cong"
    assert "cong.mdl" not in makefile
    assert korean.TOKENIZE_OPTIONS == {"oov_handling": "rule"}
    assert "nounchr.mdl" in makefile
    for option, removed in (
        ("load_default_dict", "default.dict"),
        ("load_typo_dict", "typo.dict"),
        ("load_multi_dict", "multi.dict"),
    ):
        assert korean.KIWI_OPTIONS[option] is False
        assert removed in makefile


def _trim_botocore() -> ModuleType:
    path = REPO_ROOT / "layers" / "dependencies" / "trim_botocore.py"
    spec = importlib.util.spec_from_file_location("trim_botocore", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _endpoints(data: Path | None, services: set[str]) -> dict[tuple[str, str], str]:
    """Each service's endpoint host in every region of every partition, resolved as a client resolves it."""
    session = botocore.session.Session()
    if data is not None:
        session.set_config_variable("data_path", str(data))  # searched before botocore's own data
    resolver = session._get_internal_component("endpoint_resolver")  # what create_client uses
    partitions = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_bytes())["partitions"]
    hosts = {}
    for partition in partitions:
        for region in partition["regions"]:
            for service in sorted(services):
                endpoint = resolver.construct_endpoint(service, region, partition_name=partition["partition"])
                hosts[(service, region)] = endpoint["hostname"] if endpoint else "unresolved"
    return hosts


def test_trimming_botocore_keeps_the_listed_services_and_resolves_their_endpoints_as_before(tmp_path: Path) -> None:
    # Given a copy of botocore's data with the listed services, one other service, and the full endpoints.json
    kept = _makefile_variable(REPO_ROOT / "layers" / "dependencies" / "Makefile", "BOTOCORE_SERVICES")
    original = Path(botocore.__file__).parent / "data"
    data = tmp_path / "data"
    data.mkdir()
    for name in (*kept, "ec2"):
        shutil.copytree(original / name, data / name)
    shutil.copy(original / "endpoints.json", data / "endpoints.json")

    # When the layer's build trims it
    _trim_botocore().trim(data, kept)

    # Then the other service's models are gone; endpoints.json is a fraction of its size, with every partition
    # as it was but for the services, which are the listed ones' entries exactly
    assert sorted(path.name for path in data.iterdir() if path.is_dir()) == sorted(kept)
    assert (data / "endpoints.json").stat().st_size < (original / "endpoints.json").stat().st_size / 20
    before = json.loads((original / "endpoints.json").read_bytes())
    after = json.loads((data / "endpoints.json").read_bytes())
    assert len(after["partitions"]) == len(before["partitions"]) > 1
    for full, trimmed_partition in zip(before["partitions"], after["partitions"], strict=True):
        services = full.pop("services")
        assert trimmed_partition.pop("services") == {name: services[name] for name in kept if name in services}
        assert trimmed_partition == full
    # and every listed service resolves to the same host in every region as with botocore's full data
    trimmed = _endpoints(data, kept)
    assert len(trimmed) > 30 * len(kept)
    assert trimmed == _endpoints(None, kept)
    assert trimmed[("dynamodb", "eu-west-1")] == "dynamodb.eu-west-1.amazonaws.com"
