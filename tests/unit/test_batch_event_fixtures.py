"""events/ingest, events/batch and events/spend_watch: real S3 notifications and EventBridge scheduled events,
as `sam local invoke -e` and the handler tests take them."""

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model

from costgate.dal.objects import ObjectCreated, parse_s3_event
from tests.events import EVENTS_DIR, load_event

INGEST_SCENARIOS = sorted(p.stem for p in (EVENTS_DIR / "ingest").glob("*.json"))
BATCH_SCENARIOS = sorted(p.stem for p in (EVENTS_DIR / "batch").glob("*.json"))
SPEND_SCENARIOS = sorted(p.stem for p in (EVENTS_DIR / "spend_watch").glob("*.json"))
# Every fixture of a function an EventBridge schedule runs (BatchFunction, SpendWatchFunction).
SCHEDULED = [("batch", s) for s in BATCH_SCENARIOS] + [("spend_watch", s) for s in SPEND_SCENARIOS]

# What each ingest fixture is about, decoded as the handler sees it.
EXPECTED_KEYS = {
    "text": "incoming/weekly-report/notes.txt",
    "encoded_key": "incoming/my job/café résumé.md",
    "requests_jsonl": "incoming/eval-run/requests.jsonl",
    "job_config": "incoming/weekly-report/_job.json",
}


def test_every_scenario_the_brief_names_has_a_fixture() -> None:
    assert sorted(EXPECTED_KEYS) == INGEST_SCENARIOS
    assert BATCH_SCENARIOS == ["scheduled"]
    assert SPEND_SCENARIOS == ["scheduled"]


@pytest.mark.parametrize("scenario", INGEST_SCENARIOS)
def test_ingest_fixture_is_an_s3_notification_the_handler_parses(scenario: str) -> None:
    # Given an IngestFunction fixture
    event = load_event("ingest", scenario)

    # When Powertools' model of an S3 notification validates it, and costgate parses it
    S3Model.model_validate(event)
    created = parse_s3_event(event)

    # Then it is one versioned ObjectCreated:Put record, with its key decoded
    (record,) = event["Records"]
    assert record["eventVersion"] == "2.1"
    assert record["eventName"] == "ObjectCreated:Put"
    obj = record["s3"]["object"]
    assert created == [
        ObjectCreated(
            bucket=record["s3"]["bucket"]["name"],
            key=EXPECTED_KEYS[scenario],
            version_id=obj["versionId"],
            size=obj["size"],
            sequencer=obj["sequencer"],
        )
    ]
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{record['s3']['bucket']['name']}"
    # S3 sequencers are hexadecimal
    int(obj["sequencer"], 16)


def test_ingest_fixtures_are_distinct_versions() -> None:
    versions = [parse_s3_event(load_event("ingest", s))[0].version_id for s in INGEST_SCENARIOS]
    assert len(set(versions)) == len(versions)


@pytest.mark.parametrize(("function", "scenario"), SCHEDULED)
def test_scheduled_fixture_is_an_eventbridge_scheduled_event(function: str, scenario: str) -> None:
    # Given a BatchFunction or SpendWatchFunction fixture
    event = load_event(function, scenario)

    # When Powertools' EventBridge model validates it
    parsed = EventBridgeModel.model_validate(event)

    # Then it is what an EventBridge schedule rule sends
    assert parsed.detail_type == "Scheduled Event"
    assert parsed.source == "aws.events"
    assert parsed.detail == {}
    assert parsed.resources[0].startswith(f"arn:aws:events:{parsed.region}:{parsed.account}:rule/")
