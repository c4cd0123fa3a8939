"""IngestFunction's and BatchFunction's settings: read once from the environment the template sets."""

import pytest

from costgate.errors import ConfigurationError
from costgate.settings import BatchSettings, CliBucketSettings, IngestSettings


def _without(environ: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k != name}


INGEST_ENV = {
    "COSTGATE_TABLE": "costgate-Table-1",
    "COSTGATE_BUCKET": "costgate-documents-123456789012-eu-west-1",
    "COSTGATE_BATCH_TENANT": "documents",
}
BATCH_ENV = {
    "COSTGATE_TABLE": "costgate-Table-1",
    "COSTGATE_BUCKET": "costgate-documents-123456789012-eu-west-1",
    "COSTGATE_UPSTREAM_URL": "https://api.anthropic.com",
    "COSTGATE_CLAUDE_KEY_SECRET": "costgate/claude-api-key",
}


def test_ingest_settings_read_table_bucket_and_default_tenant() -> None:
    # Given IngestFunction's environment (with unrelated variables around it)
    environ = {**INGEST_ENV, "POWERTOOLS_SERVICE_NAME": "costgate", "PATH": "/usr/bin"}

    # When the settings are loaded
    settings = IngestSettings.from_env(environ)

    # Then each field holds its variable
    assert settings == IngestSettings(
        table_name="costgate-Table-1",
        bucket="costgate-documents-123456789012-eu-west-1",
        batch_tenant="documents",
    )
    assert IngestSettings.env_names() == set(INGEST_ENV)


def test_batch_settings_read_table_bucket_upstream_and_secret_name() -> None:
    # Given BatchFunction's environment
    # When the settings are loaded
    settings = BatchSettings.from_env(BATCH_ENV)

    # Then each field holds its variable
    assert settings == BatchSettings(
        table_name="costgate-Table-1",
        bucket="costgate-documents-123456789012-eu-west-1",
        upstream_url="https://api.anthropic.com",
        claude_key_secret="costgate/claude-api-key",
    )
    assert BatchSettings.env_names() == set(BATCH_ENV)


@pytest.mark.parametrize(
    ("model", "environ", "missing"),
    [
        (IngestSettings, _without(INGEST_ENV, "COSTGATE_BATCH_TENANT"), "COSTGATE_BATCH_TENANT"),
        (IngestSettings, {**INGEST_ENV, "COSTGATE_BUCKET": "  "}, "COSTGATE_BUCKET"),
        (BatchSettings, _without(BATCH_ENV, "COSTGATE_UPSTREAM_URL"), "COSTGATE_UPSTREAM_URL"),
        (BatchSettings, {}, "COSTGATE_BUCKET, COSTGATE_CLAUDE_KEY_SECRET, COSTGATE_TABLE, COSTGATE_UPSTREAM_URL"),
        (CliBucketSettings, {}, "COSTGATE_BUCKET"),
    ],
)
def test_a_missing_or_blank_variable_is_named(
    model: type[IngestSettings | BatchSettings | CliBucketSettings], environ: dict[str, str], missing: str
) -> None:
    # Given an environment without a required variable (or with it blank)
    # When / Then loading fails and names what is missing
    with pytest.raises(ConfigurationError, match=f"missing required setting\\(s\\): {missing}$"):
        model.from_env(environ)


@pytest.mark.parametrize("tenant", ["has space", "-leading-dash", "x" * 65, "émile"])
def test_an_invalid_default_tenant_is_a_configuration_error(tenant: str) -> None:
    # Given a default batch tenant that could not be a ledger tag
    environ = {**INGEST_ENV, "COSTGATE_BATCH_TENANT": tenant}

    # When / Then the settings refuse it as a deployment fault, naming the variable
    with pytest.raises(ConfigurationError, match="COSTGATE_BATCH_TENANT"):
        IngestSettings.from_env(environ)


def test_surrounding_whitespace_is_trimmed() -> None:
    # Given values padded with whitespace (as a copy-pasted parameter may be)
    environ = {name: f" {value}\n" for name, value in INGEST_ENV.items()}

    # When / Then the settings hold the trimmed values
    assert IngestSettings.from_env(environ).batch_tenant == "documents"
    assert CliBucketSettings.from_env(environ).bucket == "costgate-documents-123456789012-eu-west-1"
