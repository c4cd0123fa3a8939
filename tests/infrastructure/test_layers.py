"""The Lambda layers against the code that runs on them: botocore's trimmed models, the guards' Kiwi files."""

import re
from pathlib import Path

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
